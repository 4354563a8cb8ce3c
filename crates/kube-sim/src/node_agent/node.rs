//! The Node object: registration with capacity and addresses, the Ready condition, the
//! heartbeat (a Lease in `kube-node-lease` renewed every 10 s and the conditions'
//! `lastHeartbeatTime`), and the events the agent writes about pods.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Event, EventSource, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::{MANAGER, NodeAgentConfig};

const LEASE_SECONDS: i32 = 40;
const HEARTBEAT: Duration = Duration::from_secs(10);

/// The Kubernetes version the agent reports as its kubelet's.
const KUBELET_VERSION: &str = "v1.37.2";

/// Creates the Node (or adopts one of the same name) and marks it Ready.
pub async fn register_node(client: &Client, config: &NodeAgentConfig) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": config.node_name,
            "labels": {
                "kubernetes.io/hostname": config.node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
    }))
    .map_err(kube::Error::SerdeError)?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %config.node_name, "node registered"),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::info!(node = %config.node_name, "node exists; taking it over")
        }
        Err(e) => return Err(e),
    }
    write_status(&nodes, config).await?;
    renew_lease(client, config).await
}

/// Renews the Lease and the node's conditions until aborted.
pub async fn heartbeat(client: Client, config: Arc<NodeAgentConfig>) {
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        if let Err(e) = renew_lease(&client, &config).await {
            tracing::warn!(error = %e, "renewing the node lease");
        }
        if let Err(e) = write_status(&nodes, &config).await {
            tracing::warn!(error = %e, "writing the node status");
        }
    }
}

async fn write_status(nodes: &Api<Node>, config: &NodeAgentConfig) -> Result<(), kube::Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        })
    };
    let previous = nodes.get(&config.node_name).await?;
    // A condition keeps its lastTransitionTime while its status stays the same.
    let keep_transition = |mut c: serde_json::Value| {
        let kept = previous
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter()
                    .find(|x| c["type"] == x.type_.as_str() && c["status"] == x.status.as_str())
            })
            .and_then(|x| x.last_transition_time.clone());
        if let Some(t) = kept {
            c["lastTransitionTime"] = json!(t);
        }
        c
    };
    // 8 CPUs and 16 GiB per 110 pods (a common node's shape), so a node sized for
    // thousands of simulated pods has room for their requests too.
    let shares = config.max_pods.div_ceil(110).max(1);
    let resources = json!({
        "cpu": (8 * shares).to_string(),
        "memory": format!("{}Gi", 16 * shares),
        "pods": config.max_pods.to_string(),
        "ephemeral-storage": "50Gi",
    });
    let status = json!({
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [
                {"type": "InternalIP", "address": config.node_ip.to_string()},
                {"type": "Hostname", "address": config.node_name},
            ],
            "conditions": [
                keep_transition(condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available")),
                keep_transition(condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure")),
                keep_transition(condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available")),
                keep_transition(condition("Ready", "True", "KubeletReady", "forecast node agent is posting ready status")),
            ],
            "nodeInfo": {
                "machineID": config.node_name, "systemUUID": config.node_name, "bootID": config.node_name,
                "kernelVersion": "", "osImage": "forecast node agent",
                "containerRuntimeVersion": "process://local", "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
        }
    });
    nodes
        .patch_status(
            &config.node_name,
            &PatchParams::apply(MANAGER),
            &Patch::Strategic(&status),
        )
        .await?;
    Ok(())
}

async fn renew_lease(client: &Client, config: &NodeAgentConfig) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let spec = LeaseSpec {
        holder_identity: Some(config.node_name.clone()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        ..LeaseSpec::default()
    };
    match leases.get_opt(&config.node_name).await? {
        Some(mut lease) => {
            lease.spec = Some(spec);
            leases
                .replace(&config.node_name, &PostParams::default(), &lease)
                .await?;
        }
        None => {
            let nodes: Api<Node> = Api::all(client.clone());
            let owner = nodes.get(&config.node_name).await?;
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.node_name.clone()),
                    owner_references: Some(vec![
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: config.node_name.clone(),
                            uid: owner.uid().unwrap_or_default(),
                            ..Default::default()
                        },
                    ]),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            leases.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

/// A core/v1 Event about a pod, from the `kubelet` component as the kubelet writes them.
pub async fn event(
    client: &Client,
    pod: &Pod,
    type_: &str,
    reason: &str,
    message: &str,
    node_name: &str,
) {
    let namespace = pod.namespace().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", pod.name_any())),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name_any()),
            namespace: Some(namespace.clone()),
            uid: pod.uid(),
            field_path: Some("spec.containers{0}".into()),
            ..ObjectReference::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(node_name.into()),
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node_name.into()),
        ..Event::default()
    };
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    if let Err(e) = events.create(&PostParams::default(), &event).await {
        tracing::warn!(pod = %pod.name_any(), error = %e, "writing an event");
    }
}
