//! The cluster under test for the operator's end-to-end tests: the real control plane
//! `cargo xtask test` started (`FORECAST_CLUSTER_KUBECONFIG`, or any cluster named by
//! `KUBECONFIG`), each test in a namespace of its own with the operator on its own
//! ServiceAccount holding exactly the namespaced RBAC of `deploy/overlays/namespaced`; or,
//! without one, an in-process kube-sim whose pods run the real predictor binary.

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
    /// The tests' own (admin) identity.
    pub kubeconfig: PathBuf,
    /// The identity the operator runs with: its ServiceAccount on a real cluster.
    pub operator_kubeconfig: PathBuf,
    sim: Option<kube_sim::RunningSim>,
    _operator_identity: Option<tempfile::TempDir>,
}

/// The real cluster's admin kubeconfig, when the tests run against one.
fn real_kubeconfig() -> Option<PathBuf> {
    ["FORECAST_CLUSTER_KUBECONFIG", "KUBECONFIG"]
        .iter()
        .filter_map(std::env::var_os)
        .find(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// True when the tests run against a real cluster.
pub fn real_cluster() -> bool {
    real_kubeconfig().is_some()
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

    /// Always kube-sim, without pods (the reconcile tier: the fast tier).
    pub async fn start_simulated_without_pods() -> Self {
        Self::start_with_sim(false, true, true).await
    }

    async fn start_with(run_pods: bool, install_crd: bool) -> Self {
        Self::start_with_sim(run_pods, install_crd, false).await
    }

    async fn start_with_sim(run_pods: bool, install_crd: bool, force_sim: bool) -> Self {
        mlflow::install_crypto_provider();
        let real = if force_sim { None } else { real_kubeconfig() };
        let (client, kubeconfig, sim, namespace) = if let Some(kubeconfig) = real {
            let options = kube::config::KubeConfigOptions::default();
            let config = kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig"),
                &options,
            )
            .await
            .expect("kubeconfig");
            let client = kube::Client::try_from(config).expect("real cluster client");
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
        let (operator_kubeconfig, identity) = if sim.is_some() {
            (kubeconfig.clone(), None)
        } else {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = operator_identity(&kubeconfig, &namespace, dir.path());
            (path, Some(dir))
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
            // A real API server serves the kind only once the CRD is Established.
            let crds = Api::<CustomResourceDefinition>::all(client.clone());
            wait_until(
                "the CRD is Established",
                Duration::from_secs(30),
                || async {
                    crds.get("forecastmodels.forecast.dev")
                        .await
                        .ok()
                        .and_then(|c| c.status)
                        .and_then(|s| s.conditions)
                        .is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c.type_ == "Established" && c.status == "True")
                        })
                },
            )
            .await;
        }
        TestCluster {
            client,
            namespace,
            kubeconfig,
            operator_kubeconfig,
            sim,
            _operator_identity: identity,
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
        } else {
            // The namespace controller removes what the test made; the node stops its pods.
            let namespaces: Api<k8s_openapi::api::core::v1::Namespace> =
                Api::all(self.client.clone());
            let _ = namespaces
                .delete(&self.namespace, &kube::api::DeleteParams::default())
                .await;
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

    /// Writes the ForecastModel as the API server holds it now to
    /// `$FORECAST_GITOPS_FIXTURES/<moment>.json` (when set, as `cargo xtask test` sets it):
    /// the fixtures the GitOps health tests (`tests/gitops`, kstatus and the Argo CD check)
    /// read, captured from the operator's own writes rather than written by hand.
    pub async fn capture_fixture(&self, fm: &str, moment: &str) {
        let Some(dir) = std::env::var_os("FORECAST_GITOPS_FIXTURES") else {
            return;
        };
        let object = self.fms().get(fm).await.expect("ForecastModel");
        let mut value = serde_json::to_value(object).expect("ForecastModel as JSON");
        if let Some(metadata) = value["metadata"].as_object_mut() {
            metadata.remove("managedFields");
        }
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("fixtures directory");
        let text = serde_json::to_vec_pretty(&value).expect("JSON");
        std::fs::write(dir.join(format!("{moment}.json")), text).expect("fixture written");
    }

    /// `forecastctl wait --name fm --timeout <timeout>` in the test namespace: its exit
    /// code and stdout.
    pub fn forecastctl_wait(&self, fm: &str, timeout: &str) -> (i32, String) {
        let out = std::process::Command::new(crate::bin("forecastctl"))
            .args(["wait", "--name", fm, "--namespace", &self.namespace])
            .args(["--timeout", timeout])
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("forecastctl runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    /// `kubectl wait --for=<condition> fm/<fm>` in the test namespace: whether it succeeded,
    /// and what it said.
    pub fn kubectl_wait(&self, fm: &str, condition: &str) -> (bool, String) {
        let out = std::process::Command::new("kubectl")
            .args(["wait", "-n", &self.namespace, "--timeout=30s"])
            .arg(format!("--for=condition={condition}"))
            .arg(format!("forecastmodel/{fm}"))
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("kubectl runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
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

    /// Waits until an event with `reason` was emitted `at_least` times, and answers how many
    /// times. The operator publishes events after it writes the status, so a test that
    /// waited for a status waits for the event too rather than asserting it at once.
    pub async fn wait_for_events(&self, reason: &str, at_least: usize) -> usize {
        wait_until(
            &format!("{at_least} {reason} event(s)"),
            Duration::from_secs(30),
            || async { self.events(reason).await >= at_least },
        )
        .await;
        self.events(reason).await
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

/// The operator's identity on a real cluster: the ServiceAccount `forecast-operator` in
/// the test's namespace with exactly the Role and RoleBinding `deploy/overlays/namespaced`
/// grants (rendered by kustomize, moved to this namespace), and a kubeconfig holding a
/// token for it from the TokenRequest API. Any call the manifests do not allow fails.
/// Runs kubectl as the admin identity `admin` (with `stdin` when given); panics with its
/// stderr when it fails.
pub fn kubectl_as(admin: &std::path::Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new("kubectl");
    cmd.args(args)
        .env("KUBECONFIG", admin)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl");
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        input.write_all(text.as_bytes()).expect("kubectl stdin");
    }
    let out = child.wait_with_output().expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn operator_identity(admin: &std::path::Path, namespace: &str, dir: &std::path::Path) -> PathBuf {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let kubectl = |args: &[&str], stdin: Option<&str>| kubectl_as(admin, args, stdin);
    let rendered = kubectl(
        &["kustomize", &format!("{root}/deploy/overlays/namespaced")],
        None,
    );
    let mut documents: Vec<String> = rendered
        .split("\n---\n")
        .filter(|d| {
            d.lines().any(|l| {
                l == "kind: Role" || l == "kind: RoleBinding" || l == "kind: ServiceAccount"
            })
        })
        .map(|d| {
            d.replace(
                "namespace: forecast-apps",
                &format!("namespace: {namespace}"),
            )
            .replace(
                "namespace: forecast-system",
                &format!("namespace: {namespace}"),
            )
        })
        .collect();
    assert!(
        documents.len() >= 5,
        "RBAC missing from the namespaced overlay:\n{rendered}"
    );
    documents.retain(|d| !d.is_empty());
    kubectl(
        &["apply", "--server-side", "--field-manager=e2e", "-f", "-"],
        Some(&documents.join("\n---\n")),
    );
    service_account_kubeconfig(admin, namespace, "forecast-operator", dir)
}

/// A kubeconfig acting as ServiceAccount `account` of `namespace` (a token from the
/// TokenRequest API), written into `dir`.
pub fn service_account_kubeconfig(
    admin: &std::path::Path,
    namespace: &str,
    account: &str,
    dir: &std::path::Path,
) -> PathBuf {
    let kubectl = |args: &[&str], stdin: Option<&str>| kubectl_as(admin, args, stdin);
    let token = kubectl(
        &["create", "token", account, "-n", namespace, "--duration=3h"],
        None,
    );
    let server = kubectl(
        &[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
        None,
    );
    let ca = kubectl(
        &[
            "config",
            "view",
            "--minify",
            "--raw",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority}",
        ],
        None,
    );
    let path = dir.join(format!("{account}.kubeconfig"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
             users:\n- name: {account}\n  user:\n    token: {token}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: {account}\n    namespace: {namespace}\n\
             current-context: c\n",
            token = token.trim()
        ),
    )
    .expect("write the ServiceAccount's kubeconfig");
    path
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
        let metrics_port = crate::free_port();
        let webhook_port = crate::free_port();
        let mut cmd = Command::new(bin("forecast-operator"));
        cmd.env("KUBECONFIG", &cluster.operator_kubeconfig)
            .env("OPERATOR_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
            .env("OPERATOR_WEBHOOK_ADDR", format!("127.0.0.1:{webhook_port}"))
            .env("POD_NAMESPACE", &cluster.namespace)
            .env("LEADER_ELECTION_LEASE_SECONDS", "3")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info,kube=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if !cluster.simulated() {
            // One operator per test namespace on a shared cluster, with namespaced rights.
            cmd.env("WATCH_NAMESPACE", &cluster.namespace);
        }
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
