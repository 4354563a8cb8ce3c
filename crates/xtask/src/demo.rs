//! `cargo xtask demo`: the whole product on one machine. Starts MLflow, kube-sim (pods of
//! the predictor image run the built predictor binary) and the operator; trains and
//! registers `archive-forecast-rf` v1 as `champion`; applies a ForecastModel with 3
//! replicas; shows it and a prediction through the Service; registers v2, moves the
//! alias and shows every pod on v2 with the same pod uids and process ids. Everything it
//! started is stopped at the end.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::mlflow_server::{MlflowServer, free_port};
use crate::{install_crd, kubectl, root, run, venv, wait_for};

/// A child process stopped (SIGTERM, then SIGKILL) when dropped.
struct Guard {
    child: Child,
    name: &'static str,
}

impl Guard {
    fn new(child: Child, name: &'static str) -> Self {
        crate::mlflow_server::register_group(child.id());
        Guard { child, name }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                eprintln!("xtask: stopped {}", self.name);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pods_table(kubeconfig: &Path) -> anyhow::Result<String> {
    kubectl(
        kubeconfig,
        &[
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/instance=archive-forecast",
            "-o",
            "custom-columns=POD:.metadata.name,UID:.metadata.uid,IP:.status.podIP,PROCESS:.status.containerStatuses[0].containerID,RESTARTS:.status.containerStatuses[0].restartCount",
        ],
    )
}

fn identities(table: &str) -> Vec<String> {
    let mut rows: Vec<String> = table
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            format!(
                "{} {}",
                cols.get(1).unwrap_or(&""),
                cols.get(3).unwrap_or(&"")
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Where a demo or benchmark's Kubernetes comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterKind {
    /// The embedded simulator (fast on a fresh machine).
    Sim,
    /// The control plane built from Kubernetes' sources (`cargo xtask cluster`).
    Real,
}

pub fn run_demo(cluster: ClusterKind, watch: bool) -> anyhow::Result<()> {
    crate::require_kubectl()?;
    let python = venv::ensure()?;
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root())
            .args(["build", "--bins"]),
    )?;
    let bin = root().join("target").join("debug");
    let work = root().join("target").join("demo");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    // On the real control plane this thread moves into the cluster's network namespace
    // first, so MLflow, the operator and the pods all meet there.
    let (kubeconfig, sim) = match cluster {
        ClusterKind::Real => {
            let state = crate::cluster::up(&bin)?;
            (state.kubeconfig, None)
        }
        ClusterKind::Sim => {
            let kubeconfig = work.join("kubeconfig");
            let sim_log = std::fs::File::create(work.join("kube-sim.log"))?;
            let sim = Guard::new(
                Command::new(bin.join("kube-sim"))
                    .args(["--listen", "127.0.0.1:0", "--kubeconfig"])
                    .arg(&kubeconfig)
                    .arg("--run")
                    .arg(format!(
                        "forecast-predictor={}",
                        bin.join("forecast-predictor").display()
                    ))
                    .arg("--workdir")
                    .arg(work.join("kube-sim"))
                    .stdout(Stdio::null())
                    .stderr(sim_log)
                    .process_group(0)
                    .spawn()
                    .context("starting kube-sim")?,
                "kube-sim and its pods",
            );
            wait_for("kube-sim", Duration::from_secs(20), || kubeconfig.is_file())?;
            eprintln!(
                "xtask: kube-sim is serving (KUBECONFIG={})",
                kubeconfig.display()
            );
            (kubeconfig, Some(sim))
        }
    };
    let watch = watch.then_some(cluster);
    let result = story(&python, &bin, &work, &kubeconfig, watch);
    drop(sim);
    if cluster == ClusterKind::Real {
        crate::cluster::down()?;
    }
    result
}

fn story(
    python: &Path,
    bin: &Path,
    work: &Path,
    kubeconfig: &Path,
    watch: Option<ClusterKind>,
) -> anyhow::Result<()> {
    let kubeconfig = kubeconfig.to_path_buf();
    let mlflow = MlflowServer::start(python)?;
    eprintln!("xtask: MLflow at {}", mlflow.uri());
    install_crd(&kubeconfig)?;
    kubectl(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Established",
            "crd/forecastmodels.forecast.dev",
            "--timeout=20s",
        ],
    )?;

    let operator_log = std::fs::File::create(work.join("operator.log"))?;
    let _operator = Guard::new(
        Command::new(bin.join("forecast-operator"))
            .env("KUBECONFIG", &kubeconfig)
            .env(
                "OPERATOR_METRICS_ADDR",
                format!("127.0.0.1:{}", free_port()?),
            )
            .env(
                "OPERATOR_WEBHOOK_ADDR",
                format!("127.0.0.1:{}", free_port()?),
            )
            .env("LOG_FORMAT", "text")
            .stdout(operator_log.try_clone()?)
            .stderr(operator_log)
            .process_group(0)
            .spawn()
            .context("starting forecast-operator")?,
        "forecast-operator",
    );

    let forecastctl = |args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new(bin.join("forecastctl"))
            .args(args)
            .env("MLFLOW_TRACKING_URI", mlflow.uri())
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            bail!("forecastctl {args:?} failed");
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let v1_dir = work.join("model-v1");
    forecastctl(&["train", "--out", &v1_dir.to_string_lossy()])?;
    let v1 = forecastctl(&[
        "register",
        "--model-dir",
        &v1_dir.to_string_lossy(),
        "--alias",
        "champion",
    ])?;
    eprintln!("xtask: registered archive-forecast-rf version {v1} as champion");

    let fallback = work.join("fallback");
    std::fs::create_dir_all(&fallback)?;
    let manifest = work.join("forecastmodel.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: forecast.dev/v1alpha1\nkind: ForecastModel\nmetadata:\n  name: archive-forecast\nspec:\n  registry:\n    trackingUri: {}\n  model:\n    name: archive-forecast-rf\n    alias: champion\n  pollInterval: 3s\n  predictor:\n    image: ghcr.io/forecast-operator/forecast-predictor:0.1.0\n    replicas: 3\n    env:\n    - {{name: MODEL_FALLBACK_DIR, value: {}}}\n  rollout:\n    maxConcurrent: 1\n    smokeInput: [1, 15, 6, 0, 0, 950.0, 940.0, 900.0]\n",
            mlflow.uri(),
            fallback.display()
        ),
    )?;
    kubectl(
        &kubeconfig,
        &["apply", "--server-side", "-f", &manifest.to_string_lossy()],
    )?;
    let ready = |version: &str| {
        kubectl(&kubeconfig, &["get", "fm", "archive-forecast", "-o", "jsonpath={.status.servedVersion}/{.status.updatedReplicas}/{.status.conditions[?(@.type==\"Ready\")].status}"])
            .map(|s| s == format!("{version}/3/True"))
            .unwrap_or(false)
    };
    wait_for("3 pods serving version 1", Duration::from_secs(120), || {
        ready(&v1)
    })?;
    println!(
        "\n$ kubectl get fm\n{}",
        kubectl(&kubeconfig, &["get", "fm"])?
    );
    let before = pods_table(&kubeconfig)?;
    println!("$ kubectl get pods (uid, process)\n{before}");
    let body = work.join("predict.json");
    std::fs::write(
        &body,
        r#"{"instances": [[1, 15, 6, 0, 0, 950.0, 940.0, 900.0]]}"#,
    )?;
    let prediction = kubectl(
        &kubeconfig,
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/services/archive-forecast-predictor:http/proxy/predict",
            "-f",
            &body.to_string_lossy(),
        ],
    )?;
    println!("$ POST /predict through the Service\n{prediction}\n");

    if let Some(cluster) = watch {
        let ip = kubectl(
            &kubeconfig,
            &[
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/instance=archive-forecast",
                "-o",
                "jsonpath={.items[0].status.podIP}",
            ],
        )?;
        let dashboard = format!(
            "env KUBECONFIG={} {} dashboard --namespace default --open",
            kubeconfig.display(),
            bin.join("forecastctl").display()
        );
        match cluster {
            ClusterKind::Sim => println!(
                "The predictor's page (one of the pods): http://{ip}:8080/ui\n\
                 Watch the rollout live, in another terminal:\n  {dashboard}\n"
            ),
            // The pods and the API server live in the cluster's network namespace.
            ClusterKind::Real => println!(
                "Inside the cluster's network namespace (`cargo xtask cluster exec -- ...`):\n  \
                 the predictor's page: http://{ip}:8080/ui\n  the dashboard: {dashboard}\n"
            ),
        }
        pause("Press Enter to register version 2 and move the alias")?;
    }
    let v2_dir = work.join("model-v2");
    forecastctl(&["train", "--out", &v2_dir.to_string_lossy(), "--seed", "7"])?;
    let v2 = forecastctl(&["register", "--model-dir", &v2_dir.to_string_lossy()])?;
    let moved = Instant::now();
    forecastctl(&["promote", "--version", &v2, "--alias", "champion"])?;
    eprintln!("xtask: registered version {v2} and moved champion to it");
    wait_for("every pod on version 2", Duration::from_secs(60), || {
        ready(&v2)
    })?;
    println!(
        "every pod serves version {v2} {:.1} s after the alias moved\n",
        moved.elapsed().as_secs_f64()
    );
    println!(
        "$ kubectl get fm\n{}",
        kubectl(&kubeconfig, &["get", "fm"])?
    );
    let after = pods_table(&kubeconfig)?;
    println!("$ kubectl get pods (uid, process)\n{after}");
    let same = identities(&before) == identities(&after);
    println!(
        "same pod uids and process ids as before the rollout: {}",
        if same { "yes" } else { "NO" }
    );
    println!(
        "\n$ kubectl get events\n{}",
        kubectl(&kubeconfig, &["get", "events"])?
    );
    if !same {
        bail!("pods were restarted during the rollout");
    }
    if watch.is_some() {
        pause("Press Enter to stop everything")?;
    }
    eprintln!(
        "xtask: demo done; stopping everything (logs in {})",
        work.display()
    );
    drop(_operator);
    drop(mlflow);
    Ok(())
}

/// Waits for Enter (for `--watch`).
fn pause(prompt: &str) -> anyhow::Result<()> {
    use std::io::Write;
    print!("{prompt}… ");
    std::io::stdout().flush()?;
    std::io::stdin().read_line(&mut String::new())?;
    Ok(())
}
