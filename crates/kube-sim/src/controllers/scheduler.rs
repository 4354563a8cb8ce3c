//! The scheduler: binds every pod without `spec.nodeName` to a Ready, schedulable node
//! (the first by name), as kube-scheduler does through `pods/binding`, and records the
//! `Scheduled` event it writes. The node is the node agent's (`kube_sim::node_agent`),
//! which then runs the pod; with no Ready node a pod stays unscheduled (`Pending`).

use serde_json::{Value, json};

use super::{is_deleting, str_of};
use crate::store::{Store, Subresource, WriteOptions, now_rfc3339};

const MANAGER: &str = "kube-scheduler";

fn node_is_ready(node: &Value) -> bool {
    node["spec"]["unschedulable"] != true
        && node["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn unscheduled(pod: &Value) -> bool {
    !is_deleting(pod) && pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
}

/// One pass: every unscheduled pod bound to the node.
pub fn schedule(store: &mut Store) {
    let (Some(nodes_rt), Some(pods_rt), Some(events_rt)) = (
        store.resolve("", "v1", "nodes").cloned(),
        store.resolve("", "v1", "pods").cloned(),
        store.resolve("", "v1", "events").cloned(),
    ) else {
        return;
    };
    let pending = store.select(&pods_rt, unscheduled);
    if pending.is_empty() {
        return;
    }
    let mut nodes: Vec<String> = store
        .select(&nodes_rt, node_is_ready)
        .iter()
        .map(|n| str_of(n, "name").to_owned())
        .collect();
    nodes.sort();
    let Some(node) = nodes.first() else {
        return;
    };
    let opts = WriteOptions {
        manager: MANAGER.into(),
        ..WriteOptions::default()
    };
    for mut pod in pending {
        let (ns, name) = (
            str_of(&pod, "namespace").to_owned(),
            str_of(&pod, "name").to_owned(),
        );
        pod["spec"]["nodeName"] = json!(node);
        if store
            .write(&pods_rt, &ns, &name, pod.clone(), Subresource::Main, &opts)
            .is_err()
        {
            continue;
        }
        let now = now_rfc3339();
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": format!("{name}."), "namespace": ns},
            "involvedObject": {
                "apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns,
                "uid": pod["metadata"]["uid"],
            },
            "reason": "Scheduled",
            "message": format!("Successfully assigned {ns}/{name} to {node}"),
            "type": "Normal",
            "source": {"component": "default-scheduler"},
            "reportingComponent": "default-scheduler",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        let _ = store.create(&events_rt, &ns, event, &opts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_pod() -> Store {
        let mut store = Store::new(100);
        let pods = store.resolve("", "v1", "pods").cloned().expect("pods");
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "x"}]}});
        store
            .create(&pods, "default", pod, &WriteOptions::default())
            .expect("pod");
        store
    }

    fn add_node(store: &mut Store, name: &str, ready: &str) {
        let nodes = store.resolve("", "v1", "nodes").cloned().expect("nodes");
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}});
        store
            .create(&nodes, "", node, &WriteOptions::default())
            .expect("node");
    }

    fn node_of(store: &Store) -> Value {
        let pods = store.resolve("", "v1", "pods").cloned().expect("pods");
        store.get(&pods, "default", "p").expect("pod")["spec"]["nodeName"].clone()
    }

    fn scheduled_events(store: &Store) -> usize {
        let events = store.resolve("", "v1", "events").cloned().expect("events");
        store
            .select(&events, |e| {
                e["reason"] == "Scheduled" && e["involvedObject"]["name"] == "p"
            })
            .len()
    }

    #[test]
    fn a_pod_waits_for_a_ready_node_then_is_bound_to_it_once() {
        let mut store = store_with_pod();
        schedule(&mut store);
        assert_eq!(node_of(&store), Value::Null, "no node yet");
        add_node(&mut store, "a-not-ready", "False");
        schedule(&mut store);
        assert_eq!(node_of(&store), Value::Null, "the only node is not Ready");
        add_node(&mut store, "b-ready", "True");
        schedule(&mut store);
        assert_eq!(node_of(&store), json!("b-ready"));
        assert_eq!(scheduled_events(&store), 1);
        schedule(&mut store);
        assert_eq!(scheduled_events(&store), 1, "a bound pod is left alone");
    }
}
