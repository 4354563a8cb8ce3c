//! kube-sim: a Kubernetes API simulator for tests, faithful to kube-apiserver's
//! documented behaviour for what the operator and kubectl use — discovery, CRDs,
//! list/watch with resume and 410 Gone, selectors, merge/JSON/strategic patches,
//! server-side apply, the status and scale subresources, finalizers, garbage collection,
//! Deployment and ReplicaSet controllers, a scheduler, and the node agent (the same
//! kubelet that runs pods on a real control plane) whose pods can be real processes.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let sim = kube_sim::start(kube_sim::SimConfig::default()).await?;
//! println!("KUBECONFIG={}", sim.kubeconfig.display());
//! sim.stop().await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod controllers;
pub mod list_maps;
pub mod managed_fields;
pub mod node_agent;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod schema;
pub mod selectors;
pub mod sim;
pub mod status;
pub mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::Context;

pub use sim::Sim;

/// Installs rustls' ring provider once (the simulator's HTTP client uses rustls).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Where to write the kubeconfig (default: in `workdir`).
    pub kubeconfig: Option<PathBuf>,
    /// Container image → local binary for the process runner.
    pub images: HashMap<String, PathBuf>,
    /// Watch history kept for resuming watches (older resourceVersions get 410 Gone).
    pub history_limit: usize,
    /// Pods' working directories and logs (default: a new temporary directory).
    pub workdir: Option<PathBuf>,
    /// Period of the controllers' and kubelet's resync.
    pub resync: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            kubeconfig: None,
            images: HashMap::new(),
            history_limit: 20_000,
            workdir: None,
            resync: Duration::from_millis(250),
        }
    }
}

/// A running simulator.
pub struct RunningSim {
    pub address: SocketAddr,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub kubeconfig: PathBuf,
    pub sim: Arc<Sim>,
    server: actix_web::dev::ServerHandle,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _tempdir: Option<tempdir::TempDirGuard>,
}

mod tempdir {
    /// Removes the simulator's temporary work directory on drop.
    pub struct TempDirGuard(pub std::path::PathBuf);
    impl Drop for TempDirGuard {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A kubeconfig for a plain-HTTP API server.
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {url}\n\
         users:\n- name: kube-sim\n  user:\n    token: kube-sim\n\
         contexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: kube-sim\n    namespace: default\n\
         current-context: kube-sim\npreferences: {{}}\n"
    )
}

/// Starts the simulator in this process (on the caller's tokio runtime).
pub async fn start(config: SimConfig) -> anyhow::Result<RunningSim> {
    install_crypto_provider();
    let (workdir, guard) = match &config.workdir {
        Some(d) => (d.clone(), None),
        None => {
            let d = std::env::temp_dir().join(format!(
                "kube-sim-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            (d.clone(), Some(tempdir::TempDirGuard(d)))
        }
    };
    std::fs::create_dir_all(&workdir).with_context(|| format!("creating {}", workdir.display()))?;
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let url = format!("http://{address}");
    let sim = Arc::new(Sim::new(
        store::Store::new(config.history_limit),
        address.to_string(),
        config.images.clone(),
        workdir.clone(),
    ));

    let data = web::Data::new(sim.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::default().limit(64 * 1024 * 1024))
            .configure(api::configure)
    })
    .workers(2)
    // Clients pool connections for long (kube-rs: 90 s); closing idle ones sooner makes
    // them send on a connection the server is closing. kube-apiserver keeps them too.
    .keep_alive(Duration::from_secs(600))
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    let mut tasks = vec![tokio::spawn(async move {
        let _ = server.await;
    })];
    tasks.push(tokio::spawn(run_controllers(
        sim.clone(),
        config.resync,
        rx.clone(),
    )));
    tasks.push(tokio::spawn(run_node_agent(
        url.clone(),
        config.images.clone(),
        workdir.clone(),
        config.resync,
        rx,
    )));

    let kubeconfig = config
        .kubeconfig
        .clone()
        .unwrap_or_else(|| workdir.join("kubeconfig"));
    std::fs::write(&kubeconfig, kubeconfig_yaml(&url))
        .with_context(|| format!("writing {}", kubeconfig.display()))?;
    tracing::info!(%url, kubeconfig = %kubeconfig.display(), "kube-sim serving");
    Ok(RunningSim {
        address,
        url,
        kubeconfig,
        sim,
        server: handle,
        shutdown,
        tasks,
        _tempdir: guard,
    })
}

impl RunningSim {
    /// Stops the API server, the controllers and every pod process.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.server.stop(true).await;
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// What woke a controller loop.
enum Round {
    /// These changes happened (possibly none: the resync timer fired).
    Changes(Vec<Arc<store::WatchEvent>>, bool),
    Shutdown,
}

/// Waits for changes or the resync period; a burst of changes becomes one round.
async fn next_round(
    events: &mut tokio::sync::broadcast::Receiver<Arc<store::WatchEvent>>,
    resync: Duration,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Round {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    tokio::select! {
        first = events.recv() => {
            let mut batch = Vec::new();
            let mut lagged = false;
            match first {
                Ok(e) => batch.push(e),
                Err(RecvError::Lagged(_)) => lagged = true,
                Err(RecvError::Closed) => return Round::Shutdown,
            }
            loop {
                match events.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(TryRecvError::Lagged(_)) => lagged = true,
                    Err(_) => break,
                }
            }
            // Missed events: treat the round as a full resync.
            Round::Changes(batch, lagged)
        }
        _ = tokio::time::sleep(resync) => Round::Changes(Vec::new(), true),
        _ = shutdown.changed() => Round::Shutdown,
    }
}

fn controller_uid(o: &serde_json::Value) -> Option<String> {
    controllers::controller_uid(o).map(str::to_owned)
}

async fn run_controllers(
    sim: Arc<Sim>,
    resync: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut events = sim.store().subscribe();
    let mut last_gc = std::time::Instant::now();
    let mut gc_revision = 0;
    // None: every Deployment and ReplicaSet; Some: only those whose object, ReplicaSets or
    // pods changed (by uid).
    let mut dirty: Option<std::collections::HashSet<String>> = None;
    let mut last_full = std::time::Instant::now();
    loop {
        {
            let mut store = sim.store();
            // Garbage collection scans everything: only after writes, at most twice a second.
            if store.revision() != gc_revision && last_gc.elapsed() >= Duration::from_millis(500) {
                controllers::gc::collect(&mut store);
                gc_revision = store.revision();
                last_gc = std::time::Instant::now();
            }
            controllers::deployment::reconcile(&mut store, dirty.as_ref());
            controllers::replicaset::reconcile(&mut store, dirty.as_ref());
            controllers::scheduler::schedule(&mut store);
        }
        // Leave the API server room between passes under a stream of changes.
        tokio::time::sleep(Duration::from_millis(20)).await;
        match next_round(&mut events, resync, &mut shutdown).await {
            Round::Shutdown => return,
            Round::Changes(batch, full) => {
                if full || last_full.elapsed() > Duration::from_secs(5) {
                    dirty = None;
                    last_full = std::time::Instant::now();
                } else {
                    let mut set = std::collections::HashSet::new();
                    for e in batch {
                        match (e.resource.0.as_str(), e.resource.1.as_str()) {
                            ("apps", "deployments") => {
                                if let Some(uid) = e.object["metadata"]["uid"].as_str() {
                                    set.insert(uid.to_owned());
                                }
                            }
                            ("apps", "replicasets") => {
                                set.extend(e.object["metadata"]["uid"].as_str().map(str::to_owned));
                                set.extend(controller_uid(&e.object));
                            }
                            ("", "pods") => {
                                set.extend(controller_uid(&e.object));
                                set.extend(e.old.as_ref().and_then(controller_uid));
                            }
                            _ => {}
                        }
                    }
                    dirty = Some(set);
                }
            }
        }
    }
}

/// The node agent (`node_agent`) as kube-sim's kubelet: the same code that runs pods on
/// a real control plane, talking to this simulator over HTTP. Pods whose image maps to no
/// binary are simulated (running and ready, no process).
async fn run_node_agent(
    url: String,
    images: HashMap<String, PathBuf>,
    workdir: PathBuf,
    resync: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let config = match url.parse() {
        Ok(uri) => kube::Config::new(uri),
        Err(e) => {
            tracing::error!(%url, error = %e, "the node agent cannot address the simulator");
            return;
        }
    };
    let client = match kube::Client::try_from(config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the node agent's client");
            return;
        }
    };
    let config = node_agent::NodeAgentConfig {
        node_name: NODE_NAME.to_owned(),
        node_ip: std::net::Ipv4Addr::LOCALHOST,
        first_pod_ip: first_pod_ip(),
        images,
        workdir,
        resync,
        max_pods: 1_000_000,
        unknown_images: node_agent::UnknownImages::Simulated,
    };
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    if let Err(e) = node_agent::run(client, config, stop).await {
        tracing::error!(error = %e, "the node agent stopped");
    }
}

/// The simulator's one node (the node agent's).
pub const NODE_NAME: &str = "kube-sim";

/// Pods get loopback addresses: each simulator starts at a random /24 of 127.0.0.0/8,
/// so simulators running side by side (parallel tests) do not hand out the same ones.
fn first_pod_ip() -> std::net::Ipv4Addr {
    use rand::Rng;
    let block: u32 = rand::rng().random_range(0..254 * 256u32);
    std::net::Ipv4Addr::new(127, 1 + (block / 256) as u8, (block % 256) as u8, 2)
}
