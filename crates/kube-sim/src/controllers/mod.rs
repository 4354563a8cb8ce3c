//! The built-in controllers the simulator runs: Deployments (which make ReplicaSets, as
//! kube-controller-manager's does), ReplicaSets (which make pods), garbage collection and
//! the scheduler (which binds pods to the node agent's node).
//! Each is a synchronous pass over the store, run on every change and on a timer.

pub mod deployment;
pub mod gc;
pub mod replicaset;
pub mod scheduler;

use serde_json::Value;

/// The uid of the object's controller (its ownerReference with `controller: true`).
pub fn controller_uid(o: &Value) -> Option<&str> {
    o["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)?["uid"]
        .as_str()
}

pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// When a ready pod became ready (its Ready condition's lastTransitionTime).
pub fn ready_since(pod: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    let ready = pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")?;
    chrono::DateTime::parse_from_rfc3339(ready["lastTransitionTime"].as_str()?)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Available, as the Deployment and ReplicaSet controllers count it: ready for at least
/// `min_ready_seconds`.
pub fn is_available(pod: &Value, min_ready_seconds: i64) -> bool {
    is_ready(pod)
        && (min_ready_seconds <= 0
            || ready_since(pod).is_some_and(|t| {
                chrono::Utc::now() - t >= chrono::TimeDelta::seconds(min_ready_seconds)
            }))
}

pub fn min_ready_seconds(o: &Value) -> i64 {
    o["spec"]["minReadySeconds"].as_i64().unwrap_or(0)
}

pub fn is_deleting(o: &Value) -> bool {
    !o["metadata"]["deletionTimestamp"].is_null()
}

fn str_of<'a>(o: &'a Value, field: &str) -> &'a str {
    o["metadata"][field].as_str().unwrap_or_default()
}
