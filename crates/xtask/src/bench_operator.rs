//! `cargo xtask bench-operator`: how fast an alias move reaches every pod (by polling
//! and by webhook, median over N rollouts of 3 pods), and the operator's memory and
//! reconcile latency with 1,000 (`--models`) ForecastModels of simulated pods, on kube-sim
//! or (`--cluster real`) on the control plane built from Kubernetes' sources, whose node
//! agent then runs the simulated pods.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::connection::Connection;
use crate::demo::ClusterKind;
use crate::histogram::{histogram, histogram_window, quantile, quantiles_by_label};
use crate::mlflow_server::{MlflowServer, free_port};
use crate::server::{Server, spawn};
use crate::{install_crd, kubectl, root, venv, wait_for};

#[derive(Debug, clap::Args)]
pub struct OperatorBenchArgs {
    /// Rollouts measured per mode.
    #[arg(long, default_value_t = 10)]
    rollouts: usize,
    /// ForecastModels for the scale measurement.
    #[arg(long, default_value_t = 1000)]
    models: usize,
    /// Skip the rollout-latency part (the canary part too).
    #[arg(long)]
    skip_rollouts: bool,
    /// Canary rollouts measured (`bake: 10s`, 3 pods, a client predicting throughout).
    #[arg(long, default_value_t = 3)]
    canary_rollouts: usize,
    /// Seconds the operator runs with all of them before it is measured.
    #[arg(long, default_value_t = 60)]
    settle_seconds: u64,
    /// The Kubernetes to measure on.
    #[arg(long, value_enum, default_value = "sim")]
    cluster: ClusterKind,
}

/// Release builds of everything a whole-system run needs: operator, kube-sim, predictor
/// and forecastctl.
pub fn build_system() -> anyhow::Result<()> {
    crate::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root())
            .args(["build", "--release"])
            .args(["-p", "forecast-operator", "-p", "kube-sim"])
            .args(["-p", "forecast-predictor", "-p", "forecast-cli"]),
    )
}

pub struct Cluster {
    /// kube-sim's process; `None` on the real control plane (`cluster::up`).
    _sim: Option<Server>,
    pub kubeconfig: std::path::PathBuf,
}

pub fn start_cluster(work: &Path, name: &str, run_predictor: bool) -> anyhow::Result<Cluster> {
    let bin = root().join("target/release");
    let kubeconfig = work.join(format!("{name}.kubeconfig"));
    let mut cmd = Command::new(bin.join("kube-sim"));
    cmd.args(["--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()),
        );
    if run_predictor {
        cmd.arg("--run").arg(format!(
            "forecast-predictor={}",
            bin.join("forecast-predictor").display()
        ));
    }
    let sim = spawn(
        "kube-sim",
        &mut cmd,
        &work.join(format!("{name}-kube-sim.log")),
    )?;
    wait_for("kube-sim", Duration::from_secs(20), || kubeconfig.is_file())?;
    install_crd(&kubeconfig)?;
    Ok(Cluster {
        _sim: Some(sim),
        kubeconfig,
    })
}

pub fn start_operator(
    work: &Path,
    name: &str,
    cluster: &Cluster,
    env: &[(&str, &str)],
) -> anyhow::Result<(Server, u16, u16)> {
    let (metrics, webhook) = (free_port()?, free_port()?);
    let mut cmd = Command::new(root().join("target/release/forecast-operator"));
    cmd.env("KUBECONFIG", &cluster.kubeconfig)
        .env("OPERATOR_METRICS_ADDR", format!("127.0.0.1:{metrics}"))
        .env("OPERATOR_WEBHOOK_ADDR", format!("127.0.0.1:{webhook}"))
        .env(
            "RUST_LOG",
            std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()),
        );
    for (k, v) in env {
        cmd.env(k, v);
    }
    let server = spawn(
        "forecast-operator",
        &mut cmd,
        &work.join(format!("{name}-operator.log")),
    )?;
    Ok((server, metrics, webhook))
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Versions reported by the pods' own /model/info.
pub async fn pod_versions(ips: &[String]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for ip in ips {
        let addr: Result<SocketAddr, _> = format!("{ip}:8080").parse();
        let v = match addr {
            Ok(a) => match Connection::open(a).await {
                Ok(mut c) => c
                    .get("/model/info")
                    .await
                    .ok()
                    .and_then(|(_, b)| serde_json::from_slice::<Value>(&b).ok())
                    .and_then(|v| v["model_version"].as_str().map(str::to_owned)),
                Err(_) => None,
            },
            Err(_) => None,
        };
        out.push(v);
    }
    out
}

pub fn pod_ips(cluster: &Cluster, fm: &str) -> anyhow::Result<Vec<String>> {
    let out = kubectl(
        &cluster.kubeconfig,
        &[
            "get",
            "pods",
            "-l",
            &format!("app.kubernetes.io/instance={fm}"),
            "-o",
            "jsonpath={.items[*].status.podIP}",
        ],
    )?;
    Ok(out.split_whitespace().map(str::to_owned).collect())
}

fn fm_yaml(
    name: &str,
    model: &str,
    tracking: &str,
    poll: &str,
    replicas: u32,
    image: &str,
    fallback: &Path,
) -> String {
    format!(
        "apiVersion: forecast.dev/v1alpha1\nkind: ForecastModel\nmetadata:\n  name: {name}\nspec:\n  registry: {{trackingUri: \"{tracking}\"}}\n  model: {{name: {model}, alias: champion}}\n  pollInterval: {poll}\n  predictor:\n    image: {image}\n    replicas: {replicas}\n    env: [{{name: MODEL_FALLBACK_DIR, value: \"{}\"}}]\n",
        fallback.display()
    )
}

pub fn run(args: &OperatorBenchArgs) -> anyhow::Result<()> {
    let python = venv::ensure()?;
    build_system()?;
    let work = root().join("target/bench/operator");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    // On the real control plane this thread moves into the cluster's network namespace
    // first, so MLflow, the operator and the pods meet there. One cluster serves both
    // parts (a second `up` would leave MLflow behind in the old namespace).
    let real = match args.cluster {
        ClusterKind::Real => {
            let state = crate::cluster::up_with(
                &root().join("target/release"),
                crate::cluster::UpOptions {
                    simulate_unknown_images: true,
                },
            )?;
            install_crd(&state.kubeconfig)?;
            Some(state.kubeconfig)
        }
        ClusterKind::Sim => None,
    };
    let result = measure(args, &python, &work, real.as_deref());
    if real.is_some()
        && let Err(e) = crate::cluster::down()
    {
        eprintln!("xtask: stopping the cluster: {e:#}");
    }
    result
}

/// How many pods have the Ready condition True.
fn ready_pods(kubeconfig: &Path) -> usize {
    kubectl(
        kubeconfig,
        &[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ],
    )
    .map(|o| o.lines().filter(|l| *l == "True").count())
    .unwrap_or(0)
}

/// On `real` (the admin kubeconfig of the running control plane), or on kube-sim.
fn cluster_for(
    work: &Path,
    name: &str,
    run_predictor: bool,
    real: Option<&Path>,
) -> anyhow::Result<Cluster> {
    match real {
        Some(kubeconfig) => Ok(Cluster {
            _sim: None,
            kubeconfig: kubeconfig.to_path_buf(),
        }),
        None => start_cluster(work, name, run_predictor),
    }
}

fn measure(
    args: &OperatorBenchArgs,
    python: &Path,
    work: &Path,
    real: Option<&Path>,
) -> anyhow::Result<()> {
    let work = work.to_path_buf();
    let mlflow = MlflowServer::start(python)?;
    let forecastctl = |a: &[&str]| -> anyhow::Result<String> {
        let out = Command::new(root().join("target/release/forecastctl"))
            .args(a)
            .env("MLFLOW_TRACKING_URI", mlflow.uri())
            .output()?;
        if !out.status.success() {
            bail!(
                "forecastctl {a:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let models = [work.join("m-a"), work.join("m-b")];
    forecastctl(&[
        "train",
        "--out",
        &models[0].to_string_lossy(),
        "--seed",
        "1",
    ])?;
    forecastctl(&[
        "train",
        "--out",
        &models[1].to_string_lossy(),
        "--seed",
        "2",
    ])?;

    // Rollout latency, by polling (2 s) and by webhook (poll 10 m).
    let cluster = cluster_for(&work, "rollouts", true, real)?;
    let (_operator, _metrics, webhook_port) =
        start_operator(&work, "rollouts", &cluster, &[("WEBHOOK_SECRET", "bench")])?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let fallback = work.join("fallback");
    std::fs::create_dir_all(&fallback)?;
    let mut results = Vec::new();
    let modes = [
        ("polling (pollInterval 2s)", "bench-poll", "2s"),
        ("webhook (pollInterval 10m)", "bench-hook", "10m"),
    ];
    for (mode, model, poll) in modes.into_iter().filter(|_| !args.skip_rollouts) {
        let v = forecastctl(&[
            "register",
            "--model-dir",
            &models[0].to_string_lossy(),
            "--name",
            model,
            "--alias",
            "champion",
        ])?;
        if poll == "10m" {
            let body = json!({"name": "bench", "url": format!("http://127.0.0.1:{webhook_port}/webhooks/mlflow"),
                "events": [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}], "secret": "bench", "status": "ACTIVE"});
            let addr: SocketAddr = mlflow.uri().trim_start_matches("http://").parse()?;
            runtime.block_on(async {
                let mut c = Connection::open(addr).await?;
                let (status, text) = c
                    .post("/api/2.0/mlflow/webhooks", body.to_string().as_bytes())
                    .await?;
                if status != 200 {
                    bail!(
                        "creating the MLflow webhook: {}",
                        String::from_utf8_lossy(&text)
                    );
                }
                anyhow::Ok(())
            })?;
            std::thread::sleep(Duration::from_secs(2));
        }
        let manifest = work.join(format!("{model}.yaml"));
        std::fs::write(
            &manifest,
            fm_yaml(
                model,
                model,
                &mlflow.uri(),
                poll,
                3,
                "forecast-predictor",
                &fallback,
            ),
        )?;
        kubectl(
            &cluster.kubeconfig,
            &["apply", "--server-side", "-f", &manifest.to_string_lossy()],
        )?;
        wait_for("3 pods ready", Duration::from_secs(120), || {
            pod_ips(&cluster, model)
                .map(|ips| ips.len() == 3)
                .unwrap_or(false)
                && runtime
                    .block_on(pod_versions(&pod_ips(&cluster, model).unwrap_or_default()))
                    .iter()
                    .all(|x| x.as_deref() == Some(v.as_str()))
        })?;
        let ips = pod_ips(&cluster, model)?;
        let mut times = Vec::new();
        for i in 0..args.rollouts {
            let next = forecastctl(&[
                "register",
                "--model-dir",
                &models[(i + 1) % 2].to_string_lossy(),
                "--name",
                model,
            ])?;
            let moved = Instant::now();
            forecastctl(&[
                "promote",
                "--name",
                model,
                "--version",
                &next,
                "--alias",
                "champion",
            ])?;
            runtime.block_on(async {
                let deadline = Instant::now() + Duration::from_secs(60);
                while Instant::now() < deadline {
                    if pod_versions(&ips)
                        .await
                        .iter()
                        .all(|x| x.as_deref() == Some(next.as_str()))
                    {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                bail!("rollout to {next} did not finish")
            })?;
            // The promote call itself is part of "after the alias moves": measure from before it.
            times.push(moved.elapsed());
        }
        let m = median(times.clone());
        eprintln!("xtask: {mode}: median {m:?} over {}", times.len());
        results.push((mode, m, times));
    }
    let mut canary = None;
    if !args.skip_rollouts && args.canary_rollouts > 0 {
        let name = "bench-canary";
        let fleet = crate::bench_canary::Fleet {
            runtime: &runtime,
            cluster: &cluster,
            name,
            tracking: &mlflow.uri(),
            fallback: &fallback,
        };
        let (times, failed) = crate::bench_canary::measure(
            &fleet,
            args.canary_rollouts,
            |i| {
                forecastctl(&[
                    "register",
                    "--model-dir",
                    &models[i % 2].to_string_lossy(),
                    "--name",
                    name,
                ])
            },
            |version| {
                forecastctl(&[
                    "promote",
                    "--name",
                    name,
                    "--version",
                    version,
                    "--alias",
                    "champion",
                ])
                .map(|_| ())
            },
        )?;
        canary = Some((times, failed));
    }
    if real.is_some() {
        // One cluster for both parts: the rollouts' models go while their operator runs.
        kubectl(
            &cluster.kubeconfig,
            &["delete", "fm", "--all", "--wait=true", "--timeout=180s"],
        )?;
    }
    drop(_operator);
    drop(cluster);

    // Scale: N ForecastModels, simulated pods.
    let cluster = cluster_for(&work, "scale", false, real)?;
    forecastctl(&[
        "register",
        "--model-dir",
        &models[0].to_string_lossy(),
        "--name",
        "archive-forecast-rf",
        "--alias",
        "champion",
    ])?;
    let (mut operator, metrics_port, _) = start_operator(&work, "scale", &cluster, &[])?;
    let mut docs = String::new();
    for i in 0..args.models {
        docs.push_str("---\n");
        docs.push_str(&fm_yaml(
            &format!("fm-{i:04}"),
            "archive-forecast-rf",
            &mlflow.uri(),
            "30s",
            1,
            "simulated/predictor:1",
            &fallback,
        ));
    }
    let manifest = work.join("many.yaml");
    std::fs::write(&manifest, docs)?;
    let started = Instant::now();
    kubectl(
        &cluster.kubeconfig,
        &["apply", "--server-side", "-f", &manifest.to_string_lossy()],
    )?;
    // Listing 1,000 objects is itself load on the simulator: look every 2 s.
    let patience = Duration::from_secs(900.max(args.models as u64 / 4));
    let deadline = Instant::now() + patience;
    loop {
        let done = kubectl(
            &cluster.kubeconfig,
            &[
                "get",
                "fm",
                "-o",
                "jsonpath={range .items[*]}{.status.servedVersion}{\"\\n\"}{end}",
            ],
        )
        .map(|o| o.lines().filter(|l| !l.is_empty()).count())
        .unwrap_or(0);
        // The steady state is one of ready pods (a pod that is not ready has the
        // operator re-read its admin token on every reconcile).
        let ready = match done >= args.models {
            true => ready_pods(&cluster.kubeconfig),
            false => 0,
        };
        if done >= args.models && ready >= args.models {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{done} of {} ForecastModels got a status and {ready} of their pods are ready after {patience:?}",
                args.models
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let first_pass = started.elapsed();
    let metrics_addr: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    let scrape = || {
        runtime.block_on(async {
            let mut c = Connection::open(metrics_addr).await?;
            let (_, body) = c.get("/metrics").await?;
            anyhow::Ok(String::from_utf8_lossy(&body).into_owned())
        })
    };
    // Steady state: the reconciles of the settle window, after the initial burst.
    let before_text = scrape()?;
    let before = histogram(&before_text, "forecast_operator_reconcile_duration_seconds");
    std::thread::sleep(Duration::from_secs(args.settle_seconds));
    let rss_mb = operator.rss_kib() as f64 / 1024.0;
    let peak_rss_mb = operator.peak_rss_kib() as f64 / 1024.0;
    let text = scrape()?;
    // An operator that loses its lease steps down and exits: still running and still the
    // leader at the end means leadership was never lost.
    let kept_leadership = !operator.exited()
        && text
            .lines()
            .any(|l| l.trim() == "forecast_operator_leader 1");
    let window = histogram_window(
        &before_text,
        &text,
        "forecast_operator_reconcile_duration_seconds",
    );
    let (p99, count) = quantile(&window, 0.99).context("reconcile histogram")?;
    let registry_p99 = quantile(
        &histogram_window(
            &before_text,
            &text,
            "forecast_operator_registry_poll_duration_seconds",
        ),
        0.99,
    )
    .map(|(p, _)| p)
    .unwrap_or(f64::NAN);
    let reconcile_p50 = quantile(&window, 0.5).map(|(p, _)| p).unwrap_or(f64::NAN);
    // The creation burst (every model new at once), for comparison.
    let (burst_p99, burst_count) = quantile(&before, 0.99).unwrap_or((f64::NAN, 0));
    let answers = |result: &str| {
        let line = format!("forecast_operator_registry_answers_total{{result=\"{result}\"}} ");
        let count = |t: &str| {
            t.lines()
                .find_map(|l| l.strip_prefix(&line))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        count(&text) - count(&before_text)
    };
    let (fetched, shared, previous) = (answers("fetched"), answers("shared"), answers("previous"));
    let steps = quantiles_by_label(
        &before_text,
        &text,
        "forecast_operator_reconcile_step_duration_seconds",
        "step",
    );
    std::fs::write(work.join("scale-metrics-before.txt"), &before_text)?;
    std::fs::write(work.join("scale-metrics-after.txt"), &text)?;
    drop(operator);
    drop(cluster);
    drop(mlflow);
    let where_ = match real {
        Some(_) => "the real control plane (Kubernetes v1.37.2, the node agent's pods)",
        None => "kube-sim",
    };

    println!(
        "\nalias move -> every pod (3) serving the new version, {} rollouts each\n",
        args.rollouts
    );
    println!("| mode | median | min | max |\n|---|---:|---:|---:|");
    for (mode, m, times) in &results {
        let (min, max) = (
            times.iter().min().copied().unwrap_or_default(),
            times.iter().max().copied().unwrap_or_default(),
        );
        println!(
            "| {mode} | {:.3} s | {:.3} s | {:.3} s |",
            m.as_secs_f64(),
            min.as_secs_f64(),
            max.as_secs_f64()
        );
    }
    println!(
        "\n{} ForecastModels on {where_} (simulated pods): first status on all and every pod ready in {:.1} s; after {} s more: operator RSS {rss_mb:.1} MB (peak {peak_rss_mb:.1} MB), leadership kept throughout: {}, steady-state reconcile p50 <= {:.0} ms, p99 <= {:.0} ms over the {count} reconciles of that window; MLflow asked {fetched} times, {shared} answers shared, {previous} previous answers served while one was asked again (registry poll p99 <= {:.0} ms). Creation burst: reconcile p99 <= {:.0} ms over {burst_count} reconciles",
        args.models,
        first_pass.as_secs_f64(),
        args.settle_seconds,
        if kept_leadership { "yes" } else { "NO" },
        reconcile_p50 * 1000.0,
        p99 * 1000.0,
        registry_p99 * 1000.0,
        burst_p99 * 1000.0
    );
    for (step, p50, p99, n) in &steps {
        println!(
            "  step {step}: p50 <= {:.0} ms, p99 <= {:.0} ms over {n}",
            p50 * 1000.0,
            p99 * 1000.0
        );
    }
    let canary = canary.map(|(times, failed)| crate::bench_canary::Measured { times, failed });
    if let Some(c) = &canary {
        c.print();
    }
    let report = json!({
        "canary": canary.as_ref().map(crate::bench_canary::Measured::json),
        "rollouts": results.iter().map(|(m, med, t)| json!({"mode": m, "median_s": med.as_secs_f64(), "all_s": t.iter().map(Duration::as_secs_f64).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "cluster": where_,
        "scale": {"models": args.models, "first_status_s": first_pass.as_secs_f64(), "rss_mb": rss_mb, "peak_rss_mb": peak_rss_mb, "kept_leadership": kept_leadership, "reconcile_p50_le_s": reconcile_p50, "reconcile_p99_le_s": p99, "registry_poll_p99_le_s": registry_p99, "reconciles": count, "registry_fetches": fetched, "registry_answers_shared": shared, "registry_answers_previous": previous, "burst_reconcile_p99_le_s": burst_p99, "burst_reconciles": burst_count, "steps": steps.iter().map(|(s, p50, p99, n)| json!({"step": s, "p50_le_s": p50, "p99_le_s": p99, "count": n})).collect::<Vec<_>>()},
    });
    std::fs::write(
        root().join(match real {
            Some(_) => "target/bench/operator-real.json",
            None => "target/bench/operator.json",
        }),
        serde_json::to_vec_pretty(&report)?,
    )?;
    Ok(())
}
