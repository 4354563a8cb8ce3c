//! `cargo xtask soak [--minutes 10]`: the whole system under faults. MLflow (behind a
//! relay that can answer 503), kube-sim running real predictor processes, two operator
//! replicas, one ForecastModel with 3 pods, and a client predicting through the Service the
//! whole time. Every `--fault-every` seconds one random fault: a new version and an alias
//! move, a corrupt version, a pod killed, the leader killed, MLflow restarted, MLflow
//! answering 503 for a while. After each fault the time until every pod serves the
//! expected version again is measured. The report (also `target/soak/report.json`):
//! rollouts, faults, failed predictions (and how many fell in moments with no ready pod
//! at all), time to converge after each kind of fault, and versions ever marked failed that
//! were not corrupt.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::connection::Connection;
use crate::server::Server;

mod traffic;
use crate::bench_operator::{Cluster, build_system, start_cluster, start_operator};
use crate::mlflow_server::{MlflowServer, free_port};
use crate::{kubectl, root, venv};
use traffic::{Traffic, predict, relay, sample_ready_pods};

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// How long the faults go on.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Seconds between the end of one fault's convergence and the next fault.
    #[arg(long, default_value_t = 5)]
    fault_every: u64,
    /// Seed of the fault sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const FM: &str = "soak";
const MODEL: &str = "soak-forecast";
const REPLICAS: u64 = 3;
/// Longest wait for convergence after a fault before it counts as not converged.
const CONVERGE_LIMIT: Duration = Duration::from_secs(120);
const FAULTS: [&str; 6] = [
    "new-version",
    "corrupt-version",
    "pod-killed",
    "leader-killed",
    "mlflow-restarted",
    "mlflow-503",
];

/// A small deterministic generator for the fault sequence (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One operator replica.
struct Replica {
    server: Server,
    metrics: u16,
    name: String,
}

pub fn run(args: &SoakArgs) -> anyhow::Result<()> {
    let python = venv::ensure()?;
    build_system()?;
    let work = root().join("target/soak");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let mut mlflow = MlflowServer::start(&python)?;
    let unavailable = Arc::new(AtomicBool::new(false));
    let relay_port = free_port()?;
    runtime.spawn(relay(relay_port, mlflow.port(), unavailable.clone()));
    let relay_uri = format!("http://127.0.0.1:{relay_port}");
    // Registrations go straight to MLflow (the same port across restarts).
    let mlflow_uri = mlflow.uri();
    let forecastctl = |a: &[&str]| -> anyhow::Result<String> {
        let out = Command::new(root().join("target/release/forecastctl"))
            .args(a)
            .env("MLFLOW_TRACKING_URI", &mlflow_uri)
            .output()?;
        if !out.status.success() {
            bail!(
                "forecastctl {a:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let models: Vec<PathBuf> = (1..=2).map(|i| work.join(format!("model-{i}"))).collect();
    for (i, dir) in models.iter().enumerate() {
        let seed = (i + 1).to_string();
        forecastctl(&[
            "train",
            "--out",
            &dir.to_string_lossy(),
            "--seed",
            &seed,
            "--trees",
            "40",
        ])?;
    }
    let register = |dir: &Path| -> anyhow::Result<String> {
        forecastctl(&[
            "register",
            "--model-dir",
            &dir.to_string_lossy(),
            "--name",
            MODEL,
            "--alias",
            "champion",
        ])
    };
    let mut expected = register(&models[0])?;

    let cluster = start_cluster(&work, "soak", true)?;
    let lease = [
        ("LEADER_ELECTION_LEASE_SECONDS", "6"),
        ("RUST_LOG", "info,kube=warn"),
    ];
    let mut replicas = Vec::new();
    let mut started = 0;
    let mut start_replica = |replicas: &mut Vec<Replica>| -> anyhow::Result<()> {
        started += 1;
        let name = format!("replica-{started}");
        let mut env = lease.to_vec();
        env.push(("POD_NAME", name.as_str()));
        let (server, metrics, _) = start_operator(&work, &name, &cluster, &env)?;
        replicas.push(Replica {
            server,
            metrics,
            name,
        });
        Ok(())
    };
    start_replica(&mut replicas)?;
    start_replica(&mut replicas)?;
    let fallback = work.join("fallback");
    std::fs::create_dir_all(&fallback)?;
    let manifest = work.join("soak.yaml");
    std::fs::write(&manifest, fm_yaml(&relay_uri, &fallback))?;
    kubectl(
        &cluster.kubeconfig,
        &["apply", "-f", &manifest.to_string_lossy()],
    )?;
    let first = wait_converged(&cluster, &expected, Duration::from_secs(180))
        .context("the ForecastModel never served its first version")?;
    eprintln!("xtask: soak: {REPLICAS} pods serve version {expected} after {first:?}");

    let traffic = Arc::new(Traffic::default());
    let stop = Arc::new(AtomicBool::new(false));
    let api = api_address(&cluster.kubeconfig)?;
    runtime.spawn(sample_ready_pods(api, traffic.clone(), stop.clone()));
    runtime.spawn(predict(api, traffic.clone(), stop.clone()));

    let mut rng = Rng(args.seed.max(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut corrupt = BTreeSet::new();
    let mut ever_failed = BTreeSet::new();
    let mut converge: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut not_converged: Vec<String> = Vec::new();
    let mut rollouts = 0;
    let mut next_model = 1;
    let deadline = Instant::now() + Duration::from_secs(args.minutes * 60);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(args.fault_every));
        let fault = FAULTS[rng.below(FAULTS.len())];
        // A corrupt version has converged once it is marked failed as well.
        let mut marked_failed: Option<String> = None;
        // When the fault was done (the leader: when it was killed, so the takeover counts).
        let mut fault_at: Option<Instant> = None;
        eprintln!("xtask: soak: fault {fault}");
        match fault {
            "new-version" => {
                expected = register(&models[next_model % models.len()])?;
                next_model += 1;
                rollouts += 1;
            }
            "corrupt-version" => {
                let out = Command::new(&python)
                    .arg(root().join("tests/python/register_corrupt.py"))
                    .args(["--tracking-uri", &mlflow_uri, "--name", MODEL])
                    .arg("--model-dir")
                    .arg(&models[0])
                    .output()?;
                if !out.status.success() {
                    bail!(
                        "register_corrupt.py: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                // MLflow's client prints run links first; the version is the last line.
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                let version = stdout
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                marked_failed = Some(version.clone());
                corrupt.insert(version);
            }
            "pod-killed" => {
                let names = kubectl(
                    &cluster.kubeconfig,
                    &[
                        "get",
                        "pods",
                        "-l",
                        &format!("app.kubernetes.io/instance={FM}"),
                        "-o",
                        "jsonpath={.items[*].metadata.name}",
                    ],
                )?;
                let names: Vec<&str> = names.split_whitespace().collect();
                if !names.is_empty() {
                    let victim = names[rng.below(names.len())];
                    kubectl(
                        &cluster.kubeconfig,
                        &["delete", "pod", victim, "--wait=false"],
                    )?;
                }
            }
            "leader-killed" => {
                // SIGKILL: the lease is not released; the standby takes over when it lapses.
                if let Some(i) = runtime.block_on(leader_index(&replicas)) {
                    let mut killed = replicas.remove(i);
                    killed.server.kill_hard();
                    fault_at = Some(Instant::now());
                    eprintln!("xtask: soak: killed the leader {}", killed.name);
                    start_replica(&mut replicas)?;
                }
                // Converged includes a leader again.
                let limit = Instant::now() + CONVERGE_LIMIT;
                while runtime.block_on(leader_index(&replicas)).is_none() && Instant::now() < limit
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            "mlflow-restarted" => mlflow.restart()?,
            "mlflow-503" => {
                unavailable.store(true, Ordering::Relaxed);
                std::thread::sleep(Duration::from_secs(10));
                unavailable.store(false, Ordering::Relaxed);
            }
            _ => unreachable!("every fault is handled"),
        }
        let fault_at = fault_at.unwrap_or_else(Instant::now);
        let took = wait_converged(&cluster, &expected, CONVERGE_LIMIT).and_then(|_| {
            if let Some(v) = &marked_failed {
                wait_marked_failed(&cluster, v, CONVERGE_LIMIT)?;
            }
            Ok(fault_at.elapsed())
        });
        if let Ok(status) = fm_status(&cluster) {
            for v in status["failedVersions"].as_array().into_iter().flatten() {
                if let Some(v) = v.as_str() {
                    ever_failed.insert(v.to_owned());
                }
            }
        }
        match took {
            Ok(d) => converge.entry(fault).or_default().push(d),
            Err(e) => {
                eprintln!("xtask: soak: {fault}: {e}");
                not_converged.push(format!("{fault}: {e}"));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));

    let wrongly_failed: Vec<&String> = ever_failed.difference(&corrupt).collect();
    let ok = traffic.ok.load(Ordering::Relaxed);
    let failed = traffic.failed.load(Ordering::Relaxed);
    let excused = traffic.failed_without_ready_pod.load(Ordering::Relaxed);
    let per_fault: BTreeMap<&str, Value> = converge
        .iter()
        .map(|(k, v)| {
            let mut sorted = v.clone();
            sorted.sort();
            let secs = |d: Duration| (d.as_secs_f64() * 10.0).round() / 10.0;
            (*k, json!({"count": v.len(), "p50_s": secs(sorted[sorted.len() / 2]), "max_s": secs(sorted[sorted.len() - 1])}))
        })
        .collect();
    let report = json!({
        "minutes": args.minutes,
        "seed": args.seed,
        "rollouts": rollouts,
        "faults": per_fault,
        "not_converged": not_converged,
        "predictions": {"ok": ok, "failed": failed, "failed_with_no_ready_pod": excused,
                        "failed_with_a_ready_pod": failed - excused},
        "first_failures": traffic.failures.lock().map(|f| f.clone()).unwrap_or_default(),
        "corrupt_versions": corrupt,
        "failed_versions_not_corrupt": wrongly_failed,
    });
    std::fs::write(
        work.join("report.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !not_converged.is_empty() || !wrongly_failed.is_empty() || failed > excused {
        bail!(
            "the soak found problems; see {}",
            work.join("report.json").display()
        );
    }
    Ok(())
}

fn fm_yaml(tracking: &str, fallback: &Path) -> String {
    format!(
        "apiVersion: forecast.dev/v1alpha1\nkind: ForecastModel\nmetadata:\n  name: {FM}\nspec:\n  registry: {{trackingUri: \"{tracking}\"}}\n  model: {{name: {MODEL}, alias: champion}}\n  pollInterval: 2s\n  predictor:\n    image: forecast-predictor\n    replicas: {REPLICAS}\n    env: [{{name: MODEL_FALLBACK_DIR, value: \"{}\"}}, {{name: PREDICTOR_RETRY_SECONDS, value: \"2\"}}]\n  rollout: {{maxConcurrent: 1, verifyTimeout: 30s}}\n",
        fallback.display()
    )
}

fn fm_status(cluster: &Cluster) -> anyhow::Result<Value> {
    let text = kubectl(
        &cluster.kubeconfig,
        &["get", "forecastmodel", FM, "-o", "json"],
    )?;
    let fm: Value = serde_json::from_str(&text)?;
    Ok(fm["status"].clone())
}

/// Waits until every pod serves `version` and the ForecastModel is Ready.
fn wait_converged(cluster: &Cluster, version: &str, limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut last = Value::Null;
    while started.elapsed() < limit {
        if let Ok(status) = fm_status(cluster) {
            let ready = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            if ready
                && status["servedVersion"] == version
                && status["updatedReplicas"] == REPLICAS
                && status["replicas"] == REPLICAS
            {
                return Ok(started.elapsed());
            }
            last = status;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("not converged on version {version} after {limit:?}; status: {last}")
}

/// Waits until `version` is in `status.failedVersions`.
fn wait_marked_failed(cluster: &Cluster, version: &str, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(status) = fm_status(cluster)
            && status["failedVersions"]
                .as_array()
                .is_some_and(|f| f.iter().any(|v| v == version))
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("version {version} was never marked failed")
}

/// The kube-sim address from the kubeconfig (`server: http://127.0.0.1:PORT`).
fn api_address(kubeconfig: &Path) -> anyhow::Result<SocketAddr> {
    let text = std::fs::read_to_string(kubeconfig)?;
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .context("no server in the kubeconfig")?;
    let hostport = server
        .trim()
        .trim_matches('"')
        .trim_start_matches("http://");
    hostport
        .parse()
        .with_context(|| format!("server {hostport}"))
}

/// The replica whose metrics say it leads.
async fn leader_index(replicas: &[Replica]) -> Option<usize> {
    for (i, r) in replicas.iter().enumerate() {
        let addr: SocketAddr = ([127, 0, 0, 1], r.metrics).into();
        if let Ok(mut c) = Connection::open(addr).await
            && let Ok((200, body)) = c.get("/metrics").await
            && String::from_utf8_lossy(&body)
                .lines()
                .any(|l| l.trim() == "forecast_operator_leader 1")
        {
            return Some(i);
        }
    }
    None
}
