//! The node agent: a kubelet for tests that talks to any Kubernetes API server through
//! kube-rs. It registers a Node (Ready, capacity, a Lease in `kube-node-lease` renewed),
//! waits for the scheduler to bind pods to it, and runs the containers whose image maps to
//! a local binary as real processes on pod addresses of their own (10.244.0.0/16 inside
//! the network namespace `cargo xtask cluster up` made): environment resolved as the
//! kubelet resolves it, readiness and liveness probes, restarts per `restartPolicy`, pod
//! status written through `pods/status`, and on deletion SIGTERM, the grace period, a kill,
//! then the delete with grace 0 that lets the API server forget the pod. A pod whose image
//! maps to nothing stays `Pending` with `ErrImagePull` and a Warning event, as an image
//! that cannot be pulled does.

mod env;
mod node;
mod pod_status;
mod probe;
mod process;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::Notify;

pub use node::register_node;
use process::Container;

/// How often every pod is looked at, changed or not.
const FULL_PASS: Duration = Duration::from_secs(30);

/// Field manager of everything the agent writes.
pub const MANAGER: &str = "forecast-node-agent";

#[derive(Debug, thiserror::Error)]
pub enum NodeAgentError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the pod watch ended")]
    WatchEnded,
}

#[derive(Debug, Clone)]
pub struct NodeAgentConfig {
    pub node_name: String,
    /// The node's InternalIP (the pods' `hostIP`).
    pub node_ip: Ipv4Addr,
    /// The first pod address; each pod gets the next one (never reused within a run).
    pub first_pod_ip: Ipv4Addr,
    /// Container image (exactly, or by name without registry and tag) → local binary.
    pub images: HashMap<String, PathBuf>,
    /// Pods' working directories and container logs.
    pub workdir: PathBuf,
    /// Period of the probes and the status resync.
    pub resync: Duration,
    /// The node's pod capacity (`status.capacity.pods`).
    pub max_pods: u32,
    /// What a pod whose image maps to no binary becomes.
    pub unknown_images: UnknownImages,
}

/// What the agent does with a pod whose image maps to no local binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownImages {
    /// The pod stays `Pending` with `ErrImagePull` and a Warning event, as an image that
    /// cannot be pulled does (the node agent on a real control plane).
    PullFails,
    /// A simulated container: running and ready at once, no process (kube-sim's fast tier
    /// and benchmarks of thousands of pods).
    Simulated,
}

/// Runs until `shutdown` resolves; then stops every container it started (the pods stay,
/// as they do when a kubelet stops).
pub async fn run(
    client: Client,
    config: NodeAgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeAgentError> {
    let config = Arc::new(config);
    register_node(&client, &config).await?;
    let heartbeat = tokio::spawn(node::heartbeat(client.clone(), config.clone()));

    let pods: Api<Pod> = Api::all(client.clone());
    let (store, writer) = reflector::store();
    let changed = Arc::new(Notify::new());
    // Uids of the pods that changed since the last pass.
    let touched: Arc<Mutex<HashSet<String>>> = Arc::default();
    let watch = {
        let (changed, touched) = (changed.clone(), touched.clone());
        let stream = reflector(
            writer,
            watcher(
                pods,
                watcher::Config::default().fields(&format!("spec.nodeName={}", config.node_name)),
            ),
        )
        .default_backoff()
        .touched_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(pod) => {
                        if let Some(uid) = pod.uid() {
                            touched
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(uid);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "pod watch"),
                }
                changed.notify_one();
            }
        })
    };

    let mut agent = Agent::new(client, config.clone());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_full_pass: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = changed.notified() => {}
            _ = tokio::time::sleep(config.resync) => {}
        }
        if store.wait_until_ready().await.is_err() {
            break;
        }
        let dirty = std::mem::take(&mut *touched.lock().unwrap_or_else(|p| p.into_inner()));
        // Every pod now and then; otherwise the changed ones and those with a process.
        let full = last_full_pass.is_none_or(|t| t.elapsed() >= FULL_PASS);
        if full {
            last_full_pass = Some(std::time::Instant::now());
        }
        agent.sync(&store.state(), (!full).then_some(&dirty)).await;
    }
    watch.abort();
    heartbeat.abort();
    agent.stop_all().await;
    Ok(())
}

struct Agent {
    client: Client,
    config: Arc<NodeAgentConfig>,
    /// Containers by pod uid.
    containers: HashMap<String, Container>,
    /// Pods being stopped (their deletion runs in its own task).
    terminating: HashSet<String>,
    next_ip: u32,
}

impl Agent {
    fn new(client: Client, config: Arc<NodeAgentConfig>) -> Self {
        Agent {
            client,
            config,
            containers: HashMap::new(),
            terminating: HashSet::new(),
            next_ip: 0,
        }
    }

    /// One pass over the pods in `dirty` (all when `None`), those running a process
    /// (probes and exits need a look every round) and those whose status is not written.
    async fn sync(&mut self, pods: &[Arc<Pod>], dirty: Option<&HashSet<String>>) {
        let present: HashSet<String> = pods.iter().filter_map(|p| p.uid()).collect();
        for pod in pods {
            let Some(uid) = pod.uid() else { continue };
            let needs_look = dirty.is_none_or(|d| d.contains(&uid))
                || self
                    .containers
                    .get(&uid)
                    .is_none_or(|c| c.binary.is_some() || c.last_status.is_none());
            if !needs_look {
                continue;
            }
            if pod.metadata.deletion_timestamp.is_some() {
                if self.terminating.insert(uid.clone()) {
                    let container = self.containers.remove(&uid);
                    tokio::spawn(terminate(self.client.clone(), pod.clone(), container));
                }
                continue;
            }
            if matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            ) && !self.containers.contains_key(&uid)
            {
                continue;
            }
            self.sync_pod(&uid, pod).await;
        }
        // Pods deleted outright (grace 0 by someone else): stop what still runs.
        let gone: Vec<String> = self
            .containers
            .keys()
            .filter(|u| !present.contains(*u))
            .cloned()
            .collect();
        for uid in gone {
            if let Some(c) = self.containers.remove(&uid) {
                c.stop(Duration::from_secs(2)).await;
            }
        }
        self.terminating.retain(|u| present.contains(u));
    }

    async fn sync_pod(&mut self, uid: &str, pod: &Pod) {
        if !self.containers.contains_key(uid) {
            let ip = self.pod_ip(pod);
            let container = Container::new(pod, ip, &self.config);
            if container.binary.is_none() && !container.simulated {
                image_not_found_event(&self.client, pod, &self.config).await;
            }
            self.containers.insert(uid.to_owned(), container);
        }
        let Some(container) = self.containers.get_mut(uid) else {
            return;
        };
        container.step(&self.client, pod, &self.config).await;
        let status = pod_status::build(pod, container, &self.config);
        if container.last_status.as_ref() != Some(&status) {
            let pods: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let patch = serde_json::json!({"status": status});
            match pods
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::apply(MANAGER),
                    &Patch::Strategic(&patch),
                )
                .await
            {
                Ok(_) => container.last_status = Some(status),
                Err(e) => tracing::warn!(pod = %pod.name_any(), error = %e, "writing pod status"),
            }
        }
    }

    /// The pod's address: the one it already has (an agent restarted), else the next one.
    fn pod_ip(&mut self, pod: &Pod) -> Ipv4Addr {
        if let Some(ip) = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        {
            return ip;
        }
        let ip = nth_address(self.config.first_pod_ip, self.next_ip);
        self.next_ip += 1;
        ip
    }

    async fn stop_all(&mut self) {
        for (_, c) in self.containers.drain() {
            c.stop(Duration::from_secs(5)).await;
        }
    }
}

/// Where a pod's container output goes (its working directory is the file's directory).
pub fn container_log(workdir: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    workdir
        .join("pods")
        .join(format!("{namespace}_{name}_{uid}"))
        .join("container.log")
}

/// `first` + n, skipping addresses ending in .0 and .255.
fn nth_address(first: Ipv4Addr, n: u32) -> Ipv4Addr {
    let mut addr = u32::from(first);
    let mut left = n;
    loop {
        let last = addr & 0xff;
        if last != 0 && last != 255 {
            if left == 0 {
                return Ipv4Addr::from(addr);
            }
            left -= 1;
        }
        addr = addr.wrapping_add(1);
    }
}

/// SIGTERM, the pod's grace period, a kill, then the delete with grace 0 that ends the pod.
async fn terminate(client: Client, pod: Arc<Pod>, container: Option<Container>) {
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .clamp(0, 300) as u64;
    if let Some(c) = container {
        c.stop(Duration::from_secs(grace)).await;
    }
    let pods: Api<Pod> = Api::namespaced(client, &pod.namespace().unwrap_or_default());
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(&pod.name_any(), &params).await {
        Ok(_) => tracing::info!(pod = %pod.name_any(), "pod deleted"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(pod = %pod.name_any(), error = %e, "deleting pod"),
    }
}

/// A Warning event as the kubelet writes when an image cannot be pulled.
async fn image_not_found_event(client: &Client, pod: &Pod, config: &NodeAgentConfig) {
    let image = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let mut known: Vec<&str> = config.images.keys().map(String::as_str).collect();
    known.sort_unstable();
    let message = format!(
        "Failed to pull image \"{image}\": this node agent runs only the images {known:?} (as local binaries)"
    );
    node::event(
        client,
        pod,
        "Warning",
        "Failed",
        &message,
        &config.node_name,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses_skip_network_and_broadcast_octets() {
        let first = Ipv4Addr::new(10, 244, 1, 2);
        assert_eq!(nth_address(first, 0), Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(nth_address(first, 252), Ipv4Addr::new(10, 244, 1, 254));
        assert_eq!(nth_address(first, 253), Ipv4Addr::new(10, 244, 2, 1));
        let all: HashSet<Ipv4Addr> = (0..2000).map(|n| nth_address(first, n)).collect();
        assert_eq!(all.len(), 2000);
    }
}
