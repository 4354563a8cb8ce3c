//! The cluster under test for the operator's end-to-end tests: an in-process kube-sim
//! whose pods run the real predictor binary, or — when `KUBECONFIG` is set — a real
//! cluster (the operator then runs in it, deployed from `deploy/`; see the README).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::forecast_model::ForecastModel;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::bin;

pub struct TestCluster {
    pub client: kube::Client,
    pub namespace: String,
    pub kubeconfig: PathBuf,
    sim: Option<kube_sim::RunningSim>,
}

/// True when the tests run against a real cluster (KUBECONFIG set).
pub fn real_cluster() -> bool {
    std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty())
}

impl TestCluster {
    /// A cluster whose predictor pods run the real predictor binary.
    pub async fn start() -> Self {
        Self::start_with(true, true).await
    }

    /// A cluster whose predictor pods never run (kube-sim has no binary for the image):
    /// for tests of the operator's paths that need no pods.
    pub async fn start_without_pods() -> Self {
        Self::start_with(false, true).await
    }

    /// A cluster without pods in which the tests have installed nothing (not even the CRD).
    pub async fn start_bare() -> Self {
        Self::start_with(false, false).await
    }

    async fn start_with(run_pods: bool, install_crd: bool) -> Self {
        mlflow::install_crypto_provider();
        let (client, kubeconfig, sim, namespace) = if real_cluster() {
            let kubeconfig = PathBuf::from(std::env::var_os("KUBECONFIG").unwrap_or_default());
            let client = kube::Client::try_default()
                .await
                .expect("KUBECONFIG cluster");
            let ns = crate::unique_name("fm-e2e");
            let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
            namespaces
                .patch(
                    &ns,
                    &PatchParams::apply("e2e"),
                    &Patch::Apply(
                        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                    ),
                )
                .await
                .expect("namespace");
            (client, kubeconfig, None, ns)
        } else {
            let images = if run_pods {
                std::collections::HashMap::from([(
                    "forecast-predictor".to_string(),
                    bin("forecast-predictor"),
                )])
            } else {
                Default::default()
            };
            let sim = kube_sim::start(kube_sim::SimConfig {
                images,
                ..Default::default()
            })
            .await
            .expect("kube-sim starts");
            let client = kube::Client::try_from(kube::Config::new(sim.url.parse().expect("url")))
                .expect("client");
            (
                client,
                sim.kubeconfig.clone(),
                Some(sim),
                "default".to_string(),
            )
        };
        if install_crd {
            let crd: CustomResourceDefinition = serde_yaml_crd();
            Api::<CustomResourceDefinition>::all(client.clone())
                .patch(
                    "forecastmodels.forecast.dev",
                    &PatchParams::apply("e2e").force(),
                    &Patch::Apply(&crd),
                )
                .await
                .expect("install the CRD");
        }
        TestCluster {
            client,
            namespace,
            kubeconfig,
            sim,
        }
    }

    pub fn simulated(&self) -> bool {
        self.sim.is_some()
    }

    pub fn fms(&self) -> Api<ForecastModel> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn pods_api(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub async fn stop(self) {
        if let Some(sim) = self.sim {
            sim.stop().await;
        }
    }

    /// Ready, non-terminating pods of a ForecastModel, by name.
    pub async fn pods(&self, fm: &str) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self
            .pods_api()
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={fm}")))
            .await
            .expect("list pods")
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        pods.sort_by_key(|p| p.name_any());
        pods
    }

    /// What a pod's own `/model/info` says, through the API server's pod proxy.
    pub async fn pod_info(&self, pod: &str) -> Option<Value> {
        let req = http::Request::get(format!(
            "/api/v1/namespaces/{}/pods/{pod}:8080/proxy/model/info",
            self.namespace
        ))
        .body(vec![])
        .ok()?;
        let text = self.client.request_text(req).await.ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The served version of every ready pod (None for a pod that does not answer).
    pub async fn pod_versions(&self, fm: &str) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        for p in self.pods(fm).await {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let v = if ready {
                self.pod_info(&p.name_any())
                    .await
                    .and_then(|i| i["model_version"].as_str().map(str::to_owned))
            } else {
                None
            };
            out.push((p.name_any(), v));
        }
        out
    }

    /// A prediction through the ForecastModel's Service (API server service proxy).
    pub async fn predict_via_service(&self, fm: &str, rows: &Value) -> Result<Value, String> {
        predict_through_service(&self.client, &self.namespace, fm, rows).await
    }

    pub async fn status(&self, fm: &str) -> Value {
        let fm = self.fms().get(fm).await.expect("ForecastModel");
        serde_json::to_value(fm.status.unwrap_or_default()).unwrap_or(Value::Null)
    }

    pub async fn condition(&self, fm: &str, kind: &str) -> Option<(String, String)> {
        let status = self.status(fm).await;
        status["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == kind)
            .map(|c| {
                (
                    c["status"].as_str().unwrap_or_default().to_owned(),
                    c["reason"].as_str().unwrap_or_default().to_owned(),
                )
            })
    }

    /// Applies a ForecastModel.
    pub async fn apply_fm(&self, name: &str, spec: Value) {
        let body = json!({"apiVersion": "forecast.dev/v1alpha1", "kind": "ForecastModel", "metadata": {"name": name, "namespace": self.namespace}, "spec": spec});
        self.fms()
            .patch(
                name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&body),
            )
            .await
            .expect("apply ForecastModel");
    }

    /// The events with `reason`.
    async fn events_with(&self, reason: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.namespace);
        events
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect()
    }

    /// The notes of the events with `reason`.
    pub async fn event_notes(&self, reason: &str) -> Vec<String> {
        self.events_with(reason)
            .await
            .into_iter()
            .filter_map(|e| e.note)
            .collect()
    }

    /// How many times an event with `reason` was emitted (a series counts each time).
    pub async fn events(&self, reason: &str) -> usize {
        self.events_with(reason)
            .await
            .iter()
            .map(|e| {
                e.series
                    .as_ref()
                    .map(|s| s.count.max(1) as usize)
                    .unwrap_or(1)
            })
            .sum()
    }
}

/// A prediction through a ForecastModel's Service, via the API server's service proxy
/// (usable from a spawned task: it needs only a client).
pub async fn predict_through_service(
    client: &kube::Client,
    namespace: &str,
    fm: &str,
    rows: &Value,
) -> Result<Value, String> {
    let req = http::Request::post(format!(
        "/api/v1/namespaces/{namespace}/services/{fm}-predictor:http/proxy/predict"
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&json!({"instances": rows})).map_err(|e| e.to_string())?)
    .map_err(|e| e.to_string())?;
    let text = client.request_text(req).await.map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    if v["predictions"]
        .as_array()
        .is_some_and(|p| !p.is_empty() && p.iter().all(|x| x.as_f64().is_some_and(f64::is_finite)))
    {
        Ok(v)
    } else {
        Err(format!("not a prediction: {text}"))
    }
}

fn serde_yaml_crd() -> CustomResourceDefinition {
    let text = include_str!("../../crds/forecastmodel.yaml");
    let value: Value = serde_json::to_value(serde_yaml_from_str(text)).expect("CRD YAML");
    serde_json::from_value(value).expect("CRD")
}

fn serde_yaml_from_str(text: &str) -> Value {
    // The CRD file is YAML; kube re-exports no YAML parser, so parse with the one the
    // workspace uses.
    serde_yaml::from_str(text).expect("crds/forecastmodel.yaml is YAML")
}

/// Waits for `check` to hold, polling every 100 ms.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// A `forecast-operator` process pointed at the cluster.
pub struct Operator {
    child: Option<Child>,
    pub metrics_url: String,
    pub webhook_url: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Operator {
    pub fn start(cluster: &TestCluster, extra_env: &[(&str, &str)]) -> Operator {
        let metrics_port = crate::closed_port();
        let webhook_port = crate::closed_port();
        let mut cmd = Command::new(bin("forecast-operator"));
        cmd.env("KUBECONFIG", &cluster.kubeconfig)
            .env("OPERATOR_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
            .env("OPERATOR_WEBHOOK_ADDR", format!("127.0.0.1:{webhook_port}"))
            .env("POD_NAMESPACE", &cluster.namespace)
            .env("LEADER_ELECTION_LEASE_SECONDS", "3")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info,kube=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start forecast-operator");
        let logs = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Ok(mut l) = logs.lock() {
                        l.push(line);
                    }
                }
            });
        }
        Operator {
            child: Some(child),
            metrics_url: format!("http://127.0.0.1:{metrics_port}"),
            webhook_url: format!("http://127.0.0.1:{webhook_port}"),
            logs,
        }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// SIGKILL: no graceful shutdown, no lease release.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (graceful shutdown).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        c.wait().ok()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        // A failing test shows what the operator said.
        if std::thread::panicking() {
            eprintln!(
                "--- forecast-operator log ---\n{}\n--- end ---",
                self.logs()
            );
        }
        self.kill();
    }
}
