//! `cargo xtask bench-operator`'s canary part: how long an alias move takes to reach its
//! verdict and every pod with `bake: 10s` on 3 pods, while a client predicts on every pod.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::bench_operator::{Cluster, median, pod_ips, pod_versions};
use crate::connection::Connection;
use crate::{kubectl, wait_for};

/// The bake every measured rollout waits. The versions are equally good; the latency
/// limit is wide because this measures the time to a verdict, and on 2 shared cores (3
/// pods, the operator, kube-sim, MLflow and the client) a pod's p99 over a few hundred
/// sub-millisecond predictions is scheduling noise.
pub const BAKE: Duration = Duration::from_secs(10);

fn canary_yaml(name: &str, tracking: &str, fallback: &Path) -> String {
    format!(
        "apiVersion: forecast.dev/v1alpha1\nkind: ForecastModel\nmetadata:\n  name: {name}\nspec:\n  registry: {{trackingUri: \"{tracking}\"}}\n  model: {{name: {name}, alias: champion}}\n  pollInterval: 1s\n  predictor:\n    image: forecast-predictor\n    replicas: 3\n    env: [{{name: MODEL_FALLBACK_DIR, value: \"{}\"}}]\n  rollout:\n    canary: {{pods: 1, bake: {}s, minRequests: 20, maxBake: 60s, analysis: {{maxLatencyRatio: 10}}}}\n",
        fallback.display(),
        BAKE.as_secs()
    )
}

/// A client predicting on every pod in turn until stopped; counts failures.
fn traffic(
    runtime: &tokio::runtime::Runtime,
    ips: Vec<String>,
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<u64> {
    runtime.spawn(async move {
        let body =
            json!({"instances": [[1.0, 15.0, 6.0, 0.0, 0.0, 950.0, 940.0, 900.0]]}).to_string();
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for ip in &ips {
                let Ok(addr) = format!("{ip}:8080").parse::<SocketAddr>() else {
                    continue;
                };
                let ok = match Connection::open(addr).await {
                    Ok(mut c) => matches!(c.post("/predict", body.as_bytes()).await, Ok((200, _))),
                    Err(_) => false,
                };
                sent += 1;
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sent
    })
}

/// What the canary part measured: each rollout's time, and the predictions that failed.
pub struct Measured {
    pub times: Vec<Duration>,
    pub failed: u64,
}

impl Measured {
    pub fn print(&self) {
        let m = median(self.times.clone());
        let (min, max) = (
            self.times.iter().min().copied().unwrap_or_default(),
            self.times.iter().max().copied().unwrap_or_default(),
        );
        println!(
            "\ncanary (pods 1 of 3, bake {} s, a client predicting on every pod): alias move -> verdict -> every pod on the new version, median {:.3} s (min {:.3}, max {:.3}) over {} rollouts = bake + {:.3} s; {} predictions failed",
            BAKE.as_secs(),
            m.as_secs_f64(),
            min.as_secs_f64(),
            max.as_secs_f64(),
            self.times.len(),
            m.saturating_sub(BAKE).as_secs_f64(),
            self.failed
        );
    }

    pub fn json(&self) -> serde_json::Value {
        json!({"bake_s": BAKE.as_secs(), "median_s": median(self.times.clone()).as_secs_f64(),
            "all_s": self.times.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "failed_predictions": self.failed})
    }
}

/// Where the canary fleet runs.
#[derive(Clone, Copy)]
pub struct Fleet<'a> {
    pub runtime: &'a tokio::runtime::Runtime,
    pub cluster: &'a Cluster,
    /// The ForecastModel's and the registered model's name.
    pub name: &'a str,
    pub tracking: &'a str,
    pub fallback: &'a Path,
}

/// Waits until the operator reports `version` served on 3 ready pods and `Ready=True`:
/// only a move from a served version on enough ready pods is canaried (before that the
/// operator rolls directly and says why), and on a real control plane the pods' readiness
/// reaches the operator after their `/model/info` already answers.
fn settled(cluster: &Cluster, name: &str, version: &str) -> anyhow::Result<()> {
    let want = format!("{version} 3 True");
    wait_for(
        "the operator to report the canary fleet settled",
        Duration::from_secs(120),
        || {
            kubectl(
                &cluster.kubeconfig,
                &[
                    "get",
                    "forecastmodel",
                    name,
                    "-o",
                    "jsonpath={.status.servedVersion} {.status.updatedReplicas} \
                     {.status.conditions[?(@.type==\"Ready\")].status}",
                ],
            )
            .is_ok_and(|out| out.trim() == want)
        },
    )
}

/// Times `rollouts` canary rollouts of `name` (alias move → every pod on the new version,
/// the verdict included); `register` registers the next version and `promote` moves the
/// alias. Returns the times and the predictions that failed meanwhile.
pub fn measure(
    fleet: &Fleet,
    rollouts: usize,
    mut register: impl FnMut(usize) -> anyhow::Result<String>,
    mut promote: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<(Vec<Duration>, u64)> {
    let Fleet {
        runtime,
        cluster,
        name,
        tracking,
        fallback,
    } = *fleet;
    let first = register(0)?;
    promote(&first)?;
    let manifest = cluster.kubeconfig.with_file_name(format!("{name}.yaml"));
    std::fs::write(&manifest, canary_yaml(name, tracking, fallback))?;
    kubectl(
        &cluster.kubeconfig,
        &["apply", "--server-side", "-f", &manifest.to_string_lossy()],
    )?;
    wait_for(
        "3 canary-fleet pods ready",
        Duration::from_secs(120),
        || {
            let ips = pod_ips(cluster, name).unwrap_or_default();
            ips.len() == 3
                && runtime
                    .block_on(pod_versions(&ips))
                    .iter()
                    .all(|v| v.as_deref() == Some(first.as_str()))
        },
    )?;
    settled(cluster, name, &first)?;
    let ips = pod_ips(cluster, name)?;
    let (stop, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let client = traffic(runtime, ips.clone(), stop.clone(), failed.clone());
    let mut times = Vec::new();
    for i in 1..=rollouts {
        let next = register(i)?;
        let moved = Instant::now();
        promote(&next)?;
        runtime.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(90);
            while Instant::now() < deadline {
                if pod_versions(&ips)
                    .await
                    .iter()
                    .all(|v| v.as_deref() == Some(next.as_str()))
                {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            bail!("the canary rollout to {next} did not finish")
        })?;
        times.push(moved.elapsed());
        eprintln!("xtask: canary rollout {i}: {:?}", moved.elapsed());
        settled(cluster, name, &next)?;
    }
    stop.store(true, Ordering::Relaxed);
    let sent = runtime.block_on(client)?;
    eprintln!("xtask: canary traffic: {sent} predictions");
    Ok((times, failed.load(Ordering::Relaxed)))
}
