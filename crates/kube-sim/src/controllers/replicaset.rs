//! The ReplicaSet controller: keeps `spec.replicas` pods from the template, each
//! controlled by the ReplicaSet, deleting not-ready pods first and then the newest, and
//! keeps `status` true.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::{controller_uid, is_available, is_deleting, is_ready, min_ready_seconds, str_of};
use crate::resources::ResourceType;
use crate::selectors::LabelSelector;
use crate::store::{DeleteOptions, Store, Subresource, WriteOptions};

const MANAGER: &str = "replicaset-controller";

/// Reconciles every ReplicaSet, or only those in `only` (by uid).
pub fn reconcile(store: &mut Store, only: Option<&HashSet<String>>) {
    let Some(rs_rt) = store.resolve("apps", "v1", "replicasets").cloned() else {
        return;
    };
    let Some(pods_rt) = store.resolve("", "v1", "pods").cloned() else {
        return;
    };
    let wanted = |uid: &str| only.is_none_or(|set| set.contains(uid));
    let mut pods_by_owner: HashMap<String, Vec<Value>> = HashMap::new();
    for p in store.select(&pods_rt, |p| controller_uid(p).is_some_and(wanted)) {
        if let Some(uid) = controller_uid(&p).map(str::to_owned) {
            pods_by_owner.entry(uid).or_default().push(p);
        }
    }
    let none = Vec::new();
    for rs in store.select(&rs_rt, |r| wanted(str_of(r, "uid"))) {
        if is_deleting(&rs) {
            continue;
        }
        let pods = pods_by_owner.get(str_of(&rs, "uid")).unwrap_or(&none);
        reconcile_one(store, &rs_rt, &pods_rt, &rs, pods);
    }
}

fn reconcile_one(
    store: &mut Store,
    rt: &ResourceType,
    pods_rt: &ResourceType,
    rs: &Value,
    pods: &[Value],
) {
    let ns = str_of(rs, "namespace").to_owned();
    let name = str_of(rs, "name").to_owned();
    let desired = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    let Ok(selector) = LabelSelector::from_object(&rs["spec"]["selector"]) else {
        return;
    };
    let mut mine: Vec<&Value> = pods
        .iter()
        .filter(|p| str_of(p, "namespace") == ns && selector.matches(p) && !is_deleting(p))
        .collect();
    let mut changed = false;
    for _ in mine.len()..desired {
        changed |= create_pod(store, pods_rt, rs).is_some();
    }
    if mine.len() > desired {
        // Not-ready pods first, then the newest.
        mine.sort_by_key(|p| {
            (
                is_ready(p),
                std::cmp::Reverse(str_of(p, "creationTimestamp").to_owned()),
            )
        });
        for p in mine.iter().take(mine.len() - desired) {
            let _ = store.delete(pods_rt, &ns, str_of(p, "name"), &DeleteOptions::default());
        }
        changed = true;
    }
    let uid = str_of(rs, "uid").to_owned();
    let now: Vec<Value> = if changed {
        store.select(pods_rt, |p| {
            str_of(p, "namespace") == ns
                && controller_uid(p) == Some(uid.as_str())
                && !is_deleting(p)
        })
    } else {
        mine.into_iter().cloned().collect()
    };
    let ready = now.iter().filter(|p| is_ready(p)).count();
    let min_ready = min_ready_seconds(rs);
    let available = now.iter().filter(|p| is_available(p, min_ready)).count();
    let status = json!({
        "observedGeneration": rs["metadata"]["generation"].as_i64().unwrap_or(1),
        "replicas": now.len(),
        "fullyLabeledReplicas": now.len(),
        "readyReplicas": ready,
        "availableReplicas": available,
    });
    let Ok(current) = store.get(rt, &ns, &name) else {
        return;
    };
    if current["status"] != status {
        let mut updated = current;
        updated["status"] = status;
        let opts = WriteOptions {
            manager: MANAGER.into(),
            ..WriteOptions::default()
        };
        let _ = store.write(rt, &ns, &name, updated, Subresource::Status, &opts);
    }
}

fn create_pod(store: &mut Store, pods_rt: &ResourceType, rs: &Value) -> Option<Value> {
    let name = str_of(rs, "name");
    let ns = str_of(rs, "namespace");
    let template = &rs["spec"]["template"];
    let mut metadata = json!({
        "generateName": format!("{name}-"),
        "namespace": ns,
        "labels": template["metadata"]["labels"].clone(),
        "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name,
            "uid": rs["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
        }],
    });
    if template["metadata"]["annotations"].is_object() {
        metadata["annotations"] = template["metadata"]["annotations"].clone();
    }
    let spec = template["spec"].clone();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
    let opts = WriteOptions {
        manager: MANAGER.into(),
        ..WriteOptions::default()
    };
    store.create(pods_rt, ns, pod, &opts).ok()
}
