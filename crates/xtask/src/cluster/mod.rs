//! `cargo xtask cluster up|down|env|exec`: a real Kubernetes control plane built from
//! Kubernetes' own sources (see `build`), started inside a network namespace of its own
//! (see `netns`): etcd, kube-apiserver (TLS, `Node,RBAC`, service-account tokens),
//! kube-controller-manager, kube-scheduler and the node agent that runs the predictor
//! image's pods as real processes on 10.244.x.y addresses. State and logs live under
//! `target/cluster/`; the processes outlive the command until `down`.

pub mod build;
mod netns;
mod pki;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};

use crate::{kubectl, root};

pub use netns::enter;

#[derive(Debug, Subcommand)]
pub enum ClusterTask {
    /// Build (once) and start the control plane and a node; returns when it is ready.
    Up,
    /// Stop everything `up` started and remove the network namespace.
    Down,
    /// Print the shell lines to use the cluster.
    Env,
    /// Run a command inside the cluster's network namespace with KUBECONFIG set.
    Exec {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
}

pub const NODE_NAME: &str = "node-1";
const API_PORT: u16 = 6443;

/// What `up` leaves behind for `down`, `env` and `exec`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterState {
    pub netns: String,
    pub kubeconfig: PathBuf,
    pub pki: PathBuf,
    pub logs: PathBuf,
    pub pids: Vec<(String, u32)>,
}

fn state_dir() -> PathBuf {
    root().join("target").join("cluster")
}

fn state_file() -> PathBuf {
    state_dir().join("state.json")
}

/// One namespace per checkout, so two clones on one machine do not meet.
fn netns_name() -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(root().to_string_lossy().as_bytes());
    format!("forecast-{}", &hex::encode(digest)[..8])
}

pub fn read_state() -> anyhow::Result<ClusterState> {
    let text = std::fs::read_to_string(state_file())
        .context("no cluster is up (run `cargo xtask cluster up`)")?;
    Ok(serde_json::from_str(&text)?)
}

pub fn run(task: &ClusterTask) -> anyhow::Result<()> {
    match task {
        ClusterTask::Up => {
            let bin = crate::root().join("target").join("debug");
            crate::run(crate::cargo().args([
                "build",
                "-p",
                "kube-sim",
                "-p",
                "forecast-predictor",
                "--bins",
            ]))?;
            let state = up(&bin)?;
            print_env(&state);
            Ok(())
        }
        ClusterTask::Down => down(),
        ClusterTask::Env => {
            print_env(&read_state()?);
            Ok(())
        }
        ClusterTask::Exec { command } => {
            let state = read_state()?;
            enter(&state.netns)?;
            let err = Command::new(&command[0])
                .args(&command[1..])
                .env("KUBECONFIG", &state.kubeconfig)
                .exec();
            bail!("cannot run {:?}: {err}", command[0])
        }
    }
}

fn print_env(state: &ClusterState) {
    println!("export KUBECONFIG={}", state.kubeconfig.display());
    println!("export FORECAST_CLUSTER_NETNS={}", state.netns);
    println!(
        "# The API server and the pods exist only inside the network namespace {}:",
        state.netns
    );
    println!("#   cargo xtask cluster exec -- kubectl get pods -A");
    println!("#   ip netns exec {} kubectl get pods -A", state.netns);
    println!("# logs: {}", state.logs.display());
}

/// Is the API server of `state` answering? (From inside its namespace.)
fn ready(kubeconfig: &Path) -> bool {
    kubectl(kubeconfig, &["get", "--raw", "/readyz"]).is_ok_and(|o| o.trim() == "ok")
}

/// How the node runs pods beyond the predictor's.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpOptions {
    /// Pods whose image maps to no binary run as simulated containers (running and ready,
    /// no process) and the node takes up to 20,000 pods: for `bench-operator --cluster
    /// real`. Otherwise they stay Pending with ErrImagePull, as on a real node.
    pub simulate_unknown_images: bool,
}

/// Starts the cluster (after stopping a previous one), with pods of the predictor image
/// running `bin_dir/forecast-predictor`. Moves the calling thread into the cluster's
/// network namespace, so whatever it starts afterwards can reach the cluster.
pub fn up(bin_dir: &Path) -> anyhow::Result<ClusterState> {
    up_with(bin_dir, UpOptions::default())
}

/// `up`, with `options`.
pub fn up_with(bin_dir: &Path, options: UpOptions) -> anyhow::Result<ClusterState> {
    let binaries = build::ensure()?;
    let node_agent = bin_dir.join("node-agent");
    let predictor = bin_dir.join("forecast-predictor");
    for b in [&node_agent, &predictor] {
        if !b.is_file() {
            bail!("{} is missing (cargo build first)", b.display());
        }
    }
    if state_file().is_file() {
        down()?;
    }
    let dir = state_dir();
    let _ = std::fs::remove_dir_all(&dir);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let name = netns_name();
    netns::create(&name)?;
    enter(&name)?;
    let started = Instant::now();

    let pki = pki::Pki::create(
        &dir.join("pki"),
        &[
            pki::Identity {
                stem: "admin",
                user: "kubernetes-admin".into(),
                group: Some("system:masters"),
            },
            pki::Identity {
                stem: "controller-manager",
                user: "system:kube-controller-manager".into(),
                group: None,
            },
            pki::Identity {
                stem: "scheduler",
                user: "system:kube-scheduler".into(),
                group: None,
            },
            pki::Identity {
                stem: "node",
                user: format!("system:node:{NODE_NAME}"),
                group: Some("system:nodes"),
            },
        ],
        &["127.0.0.1", netns::NODE_IP, "10.96.0.1"],
    )?;
    let server = format!("https://127.0.0.1:{API_PORT}");
    let admin = pki.kubeconfig("admin", &server)?;
    let kcm = pki.kubeconfig("controller-manager", &server)?;
    let scheduler = pki.kubeconfig("scheduler", &server)?;
    let node = pki.kubeconfig("node", &server)?;
    let p = |f: &str| pki.file(f).to_string_lossy().into_owned();

    let mut state = ClusterState {
        netns: name,
        kubeconfig: admin.clone(),
        pki: pki.dir.clone(),
        logs: logs.clone(),
        pids: Vec::new(),
    };
    let mut start = |label: &str, cmd: &mut Command| -> anyhow::Result<()> {
        let log = std::fs::File::create(logs.join(format!("{label}.log")))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {label}"))?;
        state.pids.push((label.to_owned(), child.id()));
        std::fs::write(state_file(), serde_json::to_string_pretty(&state)?)?;
        Ok(())
    };

    let etcd_data = dir.join("etcd");
    start(
        "etcd",
        Command::new(binaries.join("etcd"))
            .arg("--data-dir")
            .arg(&etcd_data)
            .args([
                "--listen-client-urls=http://127.0.0.1:2379",
                "--advertise-client-urls=http://127.0.0.1:2379",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=default=http://127.0.0.1:2380",
                "--listen-metrics-urls=http://127.0.0.1:2381",
                // A test cluster: durability is not what is tested.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ]),
    )?;
    start(
        "kube-apiserver",
        Command::new(binaries.join("kube-apiserver")).args([
            "--etcd-servers=http://127.0.0.1:2379".to_owned(),
            "--bind-address=0.0.0.0".to_owned(),
            format!("--secure-port={API_PORT}"),
            format!("--advertise-address={}", netns::NODE_IP),
            // The only address is the namespace's own; no lease reconciler to fight over it.
            "--endpoint-reconciler-type=none".to_owned(),
            "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            "--authorization-mode=Node,RBAC".to_owned(),
            "--enable-admission-plugins=NodeRestriction".to_owned(),
            "--allow-privileged=true".to_owned(),
            "--profiling=false".to_owned(),
            "--v=1".to_owned(),
        ]),
    )?;
    wait(
        "the API server to be ready",
        Duration::from_secs(120),
        || ready(&admin),
    )?;
    let controllers = [
        "deployment-controller",
        "replicaset-controller",
        "garbage-collector-controller",
        "namespace-controller",
        "serviceaccount-controller",
        "serviceaccount-token-controller",
        "endpoints-controller",
        "endpointslice-controller",
        "root-ca-certificate-publisher-controller",
        "clusterrole-aggregation-controller",
        "node-lifecycle-controller",
        "taint-eviction-controller",
        "pod-garbage-collector-controller",
        "ttl-controller",
    ]
    .join(",");
    start(
        "kube-controller-manager",
        Command::new(binaries.join("kube-controller-manager")).args([
            format!("--kubeconfig={}", kcm.display()),
            format!("--authentication-kubeconfig={}", kcm.display()),
            format!("--authorization-kubeconfig={}", kcm.display()),
            "--bind-address=127.0.0.1".to_owned(),
            "--secure-port=10257".to_owned(),
            "--leader-elect=false".to_owned(),
            "--use-service-account-credentials=true".to_owned(),
            format!("--service-account-private-key-file={}", p("sa.key")),
            format!("--root-ca-file={}", p("ca.crt")),
            format!("--controllers={controllers}"),
            // The default 20 requests/s makes 10,000 Deployments' pods a half-hour's work.
            "--kube-api-qps=200".to_owned(),
            "--kube-api-burst=400".to_owned(),
            "--v=1".to_owned(),
        ]),
    )?;
    start(
        "kube-scheduler",
        Command::new(binaries.join("kube-scheduler")).args([
            format!("--kubeconfig={}", scheduler.display()),
            format!("--authentication-kubeconfig={}", scheduler.display()),
            format!("--authorization-kubeconfig={}", scheduler.display()),
            "--bind-address=127.0.0.1".to_owned(),
            "--secure-port=10259".to_owned(),
            "--leader-elect=false".to_owned(),
            "--v=1".to_owned(),
        ]),
    )?;
    let workdir = dir.join("node");
    let mut agent = Command::new(&node_agent);
    if options.simulate_unknown_images {
        agent.args(["--simulate-unknown-images", "--max-pods", "20000"]);
    }
    start(
        "node-agent",
        agent
            .env("KUBECONFIG", &node)
            .args(["--node-name", NODE_NAME, "--node-ip", netns::NODE_IP])
            .args(["--first-pod-ip", netns::FIRST_POD_IP, "--workdir"])
            .arg(&workdir)
            .arg("--run")
            .arg(format!("forecast-predictor={}", predictor.display()))
            // kube-sim's conformance suite runs its pods from `registry.local/shell:1`.
            .args(["--run", "shell=/bin/sh"]),
    )?;
    wait(
        "the node to be Ready and schedulable",
        Duration::from_secs(120),
        || {
            kubectl(
                &admin,
                &[
                    "get",
                    "node",
                    NODE_NAME,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.spec.taints}",
                ],
            )
            .is_ok_and(|o| o.trim() == "True")
        },
    )?;
    wait(
        "the default ServiceAccount",
        Duration::from_secs(60),
        || {
            kubectl(
                &admin,
                &["get", "serviceaccount", "default", "-n", "default"],
            )
            .is_ok()
        },
    )?;
    eprintln!(
        "xtask: Kubernetes {} is up in network namespace {} ({:.1} s)",
        build::KUBE_VERSION,
        state.netns,
        started.elapsed().as_secs_f64()
    );
    Ok(state)
}

fn wait(what: &str, timeout: Duration, check: impl FnMut() -> bool) -> anyhow::Result<()> {
    crate::wait_for(what, timeout, check).with_context(|| {
        format!(
            "the cluster did not come up; logs in {}",
            state_dir().join("logs").display()
        )
    })
}

/// Stops every process of the cluster (pods included) and removes its namespace.
pub fn down() -> anyhow::Result<()> {
    let state = match read_state() {
        Ok(s) => s,
        Err(_) => {
            netns::delete(&netns_name());
            return Ok(());
        }
    };
    // The node agent first (it stops its pods), then the control plane, newest first.
    for (label, pid) in state.pids.iter().rev() {
        let group = format!("-{pid}");
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
            if std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            }) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        eprintln!("xtask: stopped {label}");
    }
    netns::delete(&state.netns);
    std::fs::remove_file(state_file())?;
    eprintln!(
        "xtask: cluster down (logs kept in {})",
        state.logs.display()
    );
    Ok(())
}
