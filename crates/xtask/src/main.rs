//! Project automation (the cargo-xtask convention): `cargo xtask test`, `cargo xtask demo`,
//! `cargo xtask bench`. Starts what the tests and the demo need (a real MLflow server in
//! a project-local virtualenv) and stops it afterwards. Never shipped.

mod bench;
mod bench_batch;
mod bench_canary;
mod bench_evaluator;
mod bench_explain;
mod bench_load;
mod bench_operator;
mod bench_request_path;
mod browser;
mod cluster;
mod connection;
mod demo;
mod gitops;
mod helm;
mod histogram;
mod mlflow_server;
mod server;
mod soak;
mod venv;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install the test virtualenv (reused when present), build, start MLflow, run every
    /// test, stop MLflow. Extra arguments go to `cargo test`.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cargo_args: Vec<String>,
    },
    /// The whole product locally: MLflow, kube-sim, the operator, a ForecastModel with 3
    /// pods, and an alias move rolled out in place. Leaves nothing running.
    Demo {
        /// `sim` (default): the embedded kube-sim; `real`: the control plane built from
        /// Kubernetes' sources, in its own network namespace.
        #[arg(long, value_enum, default_value = "sim")]
        cluster: demo::ClusterKind,
        /// Pause before the alias move (and before stopping) for a person to look: prints
        /// the predictor's `/ui` address and the `forecastctl dashboard` command to watch
        /// the rollout with, and waits for Enter.
        #[arg(long)]
        watch: bool,
    },
    /// Train the default model and serve it with the predictor from disk (no registry).
    Serve {
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Benchmark the predictor against `mlflow models serve` on the same forest.
    Bench(bench::BenchArgs),
    /// Benchmark the operator: rollout latency (polling, webhook) and 1,000 ForecastModels.
    BenchOperator(bench_operator::OperatorBenchArgs),
    /// The whole system under random faults for `--minutes` (default 10): rollouts, failed
    /// predictions and time to converge after each fault (see the README).
    Soak(soak::SoakArgs),
    /// A real Kubernetes control plane (built from source) in its own network namespace.
    Cluster {
        #[command(subcommand)]
        task: cluster::ClusterTask,
    },
    /// Only prepare the virtualenv (for CI caching and manual runs).
    Venv,
}

/// The workspace root (xtask lives in crates/xtask).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs kubectl against `kubeconfig`; its stdout, or an error with its stderr.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .context("running kubectl")?;
    if !out.status.success() {
        bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs the ForecastModel CRD (`crds/forecastmodel.yaml`) into the cluster.
pub fn install_crd(kubeconfig: &Path) -> anyhow::Result<()> {
    let crd = root().join("crds/forecastmodel.yaml");
    kubectl(
        kubeconfig,
        &["apply", "--server-side", "-f", &crd.to_string_lossy()],
    )?;
    // A real API server serves the kind only once the CRD is Established.
    kubectl(
        kubeconfig,
        &[
            "wait",
            "--for=condition=Established",
            "crd/forecastmodels.forecast.dev",
            "--timeout=60s",
        ],
    )
    .map(|_| ())
}

/// Polls `check` every 200 ms until it holds or `timeout` passes.
pub fn wait_for(
    what: &str,
    timeout: std::time::Duration,
    mut check: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// kubectl drives kube-sim in the conformance and packaging tests and in the demo.
fn require_kubectl() -> anyhow::Result<()> {
    match Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!(
            "kubectl is required (it is part of this machine image; elsewhere install kubectl \
             1.27 or newer, e.g. from the Kubernetes apt repository)"
        ),
    }
}

/// The admin password of the tests' authenticated MLflow (a throwaway local server).
const TEST_AUTH_PASSWORD: &str = "forecast-e2e-admin-password";

fn test(cargo_args: &[String]) -> anyhow::Result<()> {
    require_kubectl()?;
    let python = venv::ensure()?;
    let helm = helm::ensure()?;
    // The page tests find them at their Debian paths.
    browser::ensure()?;
    eprintln!("xtask: building binaries and tests");
    run(cargo().args(["build", "--workspace", "--bins"]))?;
    // Everything is compiled before the run moves into the cluster's network namespace,
    // where no registry can be reached.
    run(cargo().args(["test", "--workspace", "--no-run"]))?;
    gitops::build()?;
    let bin_dir = root().join("target").join("debug");
    // The real control plane; from here on this thread and all it starts (MLflow, the
    // tests, their operators and pods) live in the cluster's network namespace.
    mlflow_server::stop_groups_on_signal();
    let cluster = cluster::up(&bin_dir)?;
    let result = run_tests(cargo_args, &python, &helm, &bin_dir, &cluster.kubeconfig);
    if std::env::var_os("XTASK_KEEP_CLUSTER").is_some() {
        eprintln!(
            "xtask: XTASK_KEEP_CLUSTER is set: the cluster stays up (`cargo xtask cluster down`)"
        );
    } else if let Err(e) = cluster::down() {
        eprintln!("xtask: stopping the cluster: {e:#}");
    }
    result
}

fn run_tests(
    cargo_args: &[String],
    python: &Path,
    helm: &Path,
    bin_dir: &Path,
    kubeconfig: &Path,
) -> anyhow::Result<()> {
    // The plain server and one with MLflow's basic auth (credentialsSecret tests), started
    // side by side.
    let auth_python = python.to_path_buf();
    let authenticated = std::thread::spawn(move || {
        mlflow_server::MlflowServer::start_authenticated(&auth_python, TEST_AUTH_PASSWORD)
    });
    let server = mlflow_server::MlflowServer::start(python)?;
    let auth_server = authenticated
        .join()
        .map_err(|_| anyhow::anyhow!("starting the authenticated MLflow panicked"))??;
    eprintln!(
        "xtask: MLflow {} is up at {} (and with basic auth at {})",
        venv::MLFLOW_VERSION,
        server.uri(),
        auth_server.uri()
    );
    let fixtures = gitops::fixtures_dir()?;
    let status = cargo()
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(cargo_args)
        .env("FORECAST_GITOPS_FIXTURES", &fixtures)
        .env("MLFLOW_TRACKING_URI", server.uri())
        .env("MLFLOW_AUTH_TRACKING_URI", auth_server.uri())
        .env("MLFLOW_AUTH_USERNAME", mlflow_server::AUTH_ADMIN)
        .env("MLFLOW_AUTH_PASSWORD", TEST_AUTH_PASSWORD)
        .env("FORECAST_TEST_PYTHON", python)
        .env("FORECAST_BIN_DIR", bin_dir)
        .env("FORECAST_HELM", helm)
        .env("FORECAST_CLUSTER_KUBECONFIG", kubeconfig)
        .status()
        .context("cannot run cargo test")?;
    drop(auth_server);
    drop(server);
    if !status.success() {
        bail!("tests failed ({status})");
    }
    // Only a whole run captures every moment the GitOps tests read.
    if cargo_args.is_empty() {
        gitops::run(&fixtures)?;
    }
    Ok(())
}

fn serve(port: u16) -> anyhow::Result<()> {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "forecast-cli",
        "-p",
        "forecast-predictor",
    ]))?;
    let bin = root().join("target").join("release");
    let model_dir = root().join("target").join("demo").join("fallback");
    if !model_dir.join("MLmodel").is_file() {
        run(Command::new(bin.join("forecastctl"))
            .args(["train", "--out"])
            .arg(&model_dir))?;
    }
    eprintln!(
        "\nxtask: serving the bundled model from {} on http://127.0.0.1:{port} (Ctrl-C stops)\n\
         try:\n  curl -s localhost:{port}/model/info\n  curl -s localhost:{port}/predict -H 'content-type: application/json' \\\n\
         \x20   -d '{{\"instances\": [[1, 15, 6, 0, 0, 950.0, 940.0, 900.0]]}}'\n",
        model_dir.display()
    );
    run(Command::new(bin.join("forecast-predictor"))
        .env("MODEL_FALLBACK_DIR", &model_dir)
        .env("PORT", port.to_string())
        .env("LOG_FORMAT", "text")
        .env_remove("MLFLOW_TRACKING_URI"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Test { cargo_args } => test(&cargo_args),
        Task::Demo { cluster, watch } => demo::run_demo(cluster, watch),
        Task::Serve { port } => serve(port),
        Task::Bench(args) => bench::run(&args),
        Task::BenchOperator(args) => bench_operator::run(&args),
        Task::Soak(args) => soak::run(&args),
        Task::Cluster { task } => cluster::run(&task),
        Task::Venv => venv::ensure().map(|p| eprintln!("xtask: python at {}", p.display())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
