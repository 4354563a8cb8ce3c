//! The pod status the agent reports: phase, addresses, conditions (each keeping its
//! `lastTransitionTime` while unchanged) and the container's status with its state, last
//! state and `restartCount`.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::NodeAgentConfig;
use super::process::Container;

pub fn build(pod: &Pod, c: &Container, config: &NodeAgentConfig) -> Value {
    let spec = pod.spec.as_ref().and_then(|s| s.containers.first());
    let running = c.pid.is_some() || c.simulated;
    let phase = match (&c.finished, running, c.restart_count) {
        (Some(t), _, _) if t.exit_code == 0 => "Succeeded",
        (Some(_), _, _) => "Failed",
        (None, true, _) | (None, false, 1..) => "Running",
        (None, false, _) => "Pending",
    };
    let previous = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    let condition = |type_: &str, ok: bool| {
        let status = if ok { "True" } else { "False" };
        let since = previous
            .and_then(|cs| cs.iter().find(|x| x.type_ == type_ && x.status == status))
            .and_then(|x| x.last_transition_time.clone())
            .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
        json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": since})
    };
    let state = match (&c.finished, &c.waiting, &c.started_at) {
        (Some(t), _, _) => json!({"terminated": {
            "exitCode": t.exit_code, "reason": t.reason, "finishedAt": t.finished_at,
        }}),
        (None, Some(w), _) => {
            let mut waiting = json!({"reason": w.reason});
            if !w.message.is_empty() {
                waiting["message"] = json!(w.message);
            }
            json!({ "waiting": waiting })
        }
        (None, None, Some(at)) => json!({"running": {"startedAt": at}}),
        (None, None, None) => json!({"waiting": {"reason": "ContainerCreating"}}),
    };
    let last_state = match &c.last_terminated {
        Some(t) => json!({"terminated": {
            "exitCode": t.exit_code, "reason": t.reason, "finishedAt": t.finished_at,
        }}),
        None => json!({}),
    };
    let container_status = json!({
        "name": spec.map(|s| s.name.clone()).unwrap_or_default(),
        "image": spec.and_then(|s| s.image.clone()).unwrap_or_default(),
        "imageID": "",
        "containerID": match c.pid {
            Some(pid) => Some(format!("process://{pid}")),
            None if c.simulated => Some("simulated://".to_owned()),
            None => None,
        },
        "ready": c.ready,
        "started": running,
        "restartCount": c.restart_count,
        "state": state,
        "lastState": last_state,
    });
    let ip = c.ip.to_string();
    let host = config.node_ip.to_string();
    json!({
        "phase": phase,
        "hostIP": host,
        "hostIPs": [{"ip": host}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": c.pod_started_at,
        "conditions": [
            condition("PodReadyToStartContainers", c.binary.is_some() || c.simulated),
            condition("Initialized", true),
            condition("ContainersReady", c.ready),
            condition("Ready", c.ready),
            condition("PodScheduled", true),
        ],
        "containerStatuses": [container_status],
    })
}
