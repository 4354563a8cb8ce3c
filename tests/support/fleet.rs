//! What operator tests share: a ForecastModel spec as a platform team writes it, the
//! data scientist's alias move, and waits on what a user would check (pod versions,
//! conditions, the operator's metrics).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use kube::ResourceExt;
use serde_json::{Value, json};

use crate::cluster::{Operator, TestCluster, predict_through_service, wait_until};
use crate::*;

pub const POLL: &str = "2s";

pub fn spec(
    model: &str,
    selector: Value,
    replicas: i32,
    fallback: &std::path::Path,
    extra: Value,
) -> Value {
    let mut s = json!({
        "registry": {"trackingUri": tracking_uri()},
        "model": selector,
        "pollInterval": POLL,
        "predictor": {
            "image": "forecast-predictor",
            "replicas": replicas,
            "env": [{"name": "MODEL_FALLBACK_DIR", "value": fallback.display().to_string()}, {"name": "LOG_FORMAT", "value": "text"}]
        },
    });
    s["model"]["name"] = json!(model);
    if let (Some(s), Some(e)) = (s.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    s
}

/// What a data scientist does: points the `champion` alias at `version`.
pub fn move_champion(model: &str, version: &str) {
    forecastctl(&[
        "promote",
        "--name",
        model,
        "--version",
        version,
        "--alias",
        "champion",
    ])
    .unwrap();
}

pub async fn all_on(cluster: &TestCluster, fm: &str, version: &str, replicas: usize) -> bool {
    let v = cluster.pod_versions(fm).await;
    v.len() == replicas && v.iter().all(|(_, pv)| pv.as_deref() == Some(version))
}

/// Pod uid → container id (`process://<pid>` from the node agent).
pub async fn identities(cluster: &TestCluster, fm: &str) -> BTreeMap<String, String> {
    cluster
        .pods(fm)
        .await
        .iter()
        .map(|p| {
            let id = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .and_then(|c| c.container_id.clone())
                .unwrap_or_default();
            (p.uid().unwrap_or_default(), id)
        })
        .collect()
}

pub async fn ready_on(cluster: &TestCluster, fm: &str, version: &str, replicas: usize) {
    wait_until(
        &format!("{fm}: {replicas} pods on version {version}, Ready=True"),
        Duration::from_secs(60),
        || async {
            all_on(cluster, fm, version, replicas).await
                && cluster
                    .condition(fm, "Ready")
                    .await
                    .is_some_and(|(s, _)| s == "True")
                && cluster.status(fm).await["servedVersion"] == version
        },
    )
    .await;
}

/// The usual start of a test: a model with v1 under the alias `champion`, a cluster, and
/// the operator (with `operator_env`).
/// The value of one sample in the operator's `/metrics` (0 when absent).
pub async fn operator_metric(operator: &Operator, sample: &str) -> f64 {
    let text = get_text(&format!("{}/metrics", operator.metrics_url))
        .await
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `fm` reports `Degraded=True` with `reason`.
pub async fn degraded_with(cluster: &TestCluster, fm: &str, reason: &str, timeout: Duration) {
    wait_until(
        &format!("{fm}: Degraded=True with reason {reason}"),
        timeout,
        || async {
            cluster
                .condition(fm, "Degraded")
                .await
                .is_some_and(|(s, r)| s == "True" && r == reason)
        },
    )
    .await;
}

/// Waits until the operator has finished `n` more reconciles than it had when called: the
/// observable event after which "nothing happened" can be asserted.
pub async fn after_reconciles(operator: &Operator, n: u32) {
    const OK: &str = "forecast_operator_reconciles_total{result=\"ok\"}";
    let start = operator_metric(operator, OK).await;
    wait_until(
        &format!("{n} more reconciles"),
        Duration::from_secs(60),
        || async { operator_metric(operator, OK).await >= start + f64::from(n) },
    )
    .await;
}

pub struct Setup {
    pub model: String,
    pub v1: String,
    pub cluster: TestCluster,
    pub operator: Operator,
    pub fallback: tempfile::TempDir,
}

pub async fn set_up(prefix: &str, seed: u64, operator_env: &[(&str, &str)]) -> Setup {
    let model = unique_name(prefix);
    let v1 = train_and_register(&model, seed, &["--alias", "champion"]).unwrap();
    let cluster = TestCluster::start().await;
    let operator = Operator::start(&cluster, operator_env);
    let fallback = tempfile::tempdir().unwrap();
    Setup {
        model,
        v1,
        cluster,
        operator,
        fallback,
    }
}

/// [`set_up`], then the ForecastModel `daily` (`extra` merged into its spec) with
/// `replicas` pods serving v1.
pub async fn daily_serving_v1(
    prefix: &str,
    seed: u64,
    replicas: i32,
    extra: Value,
    operator_env: &[(&str, &str)],
) -> Setup {
    let setup = set_up(prefix, seed, operator_env).await;
    setup
        .cluster
        .apply_fm(
            "daily",
            spec(
                &setup.model,
                json!({"alias": "champion"}),
                replicas,
                setup.fallback.path(),
                extra,
            ),
        )
        .await;
    ready_on(
        &setup.cluster,
        "daily",
        &setup.v1,
        usize::try_from(replicas).unwrap(),
    )
    .await;
    setup
}

/// A client predicting through the Service until stopped, counting answers and failures.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// What a [`Traffic`] client saw.
pub struct Answered {
    pub ok: usize,
    pub failed: usize,
}

impl Traffic {
    pub fn start(cluster: &TestCluster, fm: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (client, ns, fm) = (
            cluster.client.clone(),
            cluster.namespace.clone(),
            fm.to_owned(),
        );
        let task = {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let mut day = 0;
                while !stop.load(Ordering::Relaxed) {
                    day += 1;
                    match predict_through_service(&client, &ns, &fm, &json!([archive_row(day)]))
                        .await
                    {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("prediction failed: {e}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        };
        Traffic {
            stop,
            ok,
            failed,
            task,
        }
    }

    /// Stops the client; how many predictions were answered and how many failed (at
    /// least one must have been answered).
    pub async fn stop(self) -> Answered {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let ok = self.ok.load(Ordering::Relaxed);
        assert!(ok > 0, "no prediction was answered");
        Answered {
            ok,
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}
