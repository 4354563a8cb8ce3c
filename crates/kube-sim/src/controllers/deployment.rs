//! The Deployment controller, as kube-controller-manager's: a ReplicaSet per pod template
//! (`<name>-<pod-template-hash>`, labelled and selected by the hash, controlled by the
//! Deployment), scaled so that only a template change rolls pods (maxSurge 25 % rounded
//! up, maxUnavailable 25 % rounded down, the defaults), and `status` kept true from the
//! pods of its ReplicaSets. The ReplicaSet controller makes the pods.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use serde_json::{Value, json};

use super::{controller_uid, is_available, is_deleting, is_ready, min_ready_seconds, str_of};
use crate::resources::ResourceType;
use crate::store::{Store, Subresource, WriteOptions, now_rfc3339};

const MANAGER: &str = "deployment-controller";

pub fn template_hash(template: &Value) -> String {
    let mut h = DefaultHasher::new();
    template.to_string().hash(&mut h);
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = h.finish();
    (0..10)
        .map(|_| {
            let c = alphabet[(n % alphabet.len() as u64) as usize] as char;
            n /= alphabet.len() as u64;
            c
        })
        .collect()
}

/// One of a Deployment's ReplicaSets and what its pods are doing.
struct Owned {
    rs: Value,
    replicas: usize,
    pods: usize,
    ready: usize,
    /// Ready for the Deployment's `minReadySeconds`.
    available: usize,
}

impl Owned {
    fn hash(&self) -> &str {
        self.rs["metadata"]["labels"]["pod-template-hash"]
            .as_str()
            .unwrap_or_default()
    }
}

/// Reconciles every Deployment, or only those in `only`: a uid there names a Deployment,
/// or one of its ReplicaSets.
pub fn reconcile(store: &mut Store, only: Option<&HashSet<String>>) {
    let (Some(rt), Some(rs_rt), Some(pods_rt)) = (
        store.resolve("apps", "v1", "deployments").cloned(),
        store.resolve("apps", "v1", "replicasets").cloned(),
        store.resolve("", "v1", "pods").cloned(),
    ) else {
        return;
    };
    // ReplicaSets by controlling Deployment; with `only`, the Deployments of the
    // ReplicaSets named there are reconciled too.
    let mut by_owner: HashMap<String, Vec<Value>> = HashMap::new();
    for rs in store.select(&rs_rt, |r| controller_uid(r).is_some()) {
        if let Some(uid) = controller_uid(&rs).map(str::to_owned) {
            by_owner.entry(uid).or_default().push(rs);
        }
    }
    let wanted: Option<HashSet<String>> = only.map(|set| {
        let mut w = set.clone();
        for (owner, sets) in &by_owner {
            if sets.iter().any(|r| set.contains(str_of(r, "uid"))) {
                w.insert(owner.clone());
            }
        }
        w
    });
    let selected = store.select(&rt, |d| {
        wanted.as_ref().is_none_or(|w| w.contains(str_of(d, "uid")))
    });
    let rs_uids: HashSet<String> = selected
        .iter()
        .flat_map(|d| by_owner.get(str_of(d, "uid")).into_iter().flatten())
        .map(|r| str_of(r, "uid").to_owned())
        .collect();
    let mut pods_by_rs: HashMap<String, Vec<Value>> = HashMap::new();
    for p in store.select(&pods_rt, |p| {
        controller_uid(p).is_some_and(|o| rs_uids.contains(o)) && !is_deleting(p)
    }) {
        if let Some(uid) = controller_uid(&p).map(str::to_owned) {
            pods_by_rs.entry(uid).or_default().push(p);
        }
    }
    let none = Vec::new();
    for d in selected {
        if is_deleting(&d) {
            continue;
        }
        let min_ready = min_ready_seconds(&d);
        let owned: Vec<Owned> = by_owner
            .remove(str_of(&d, "uid"))
            .unwrap_or_default()
            .into_iter()
            .filter(|rs| !is_deleting(rs))
            .map(|rs| {
                let pods = pods_by_rs.get(str_of(&rs, "uid")).unwrap_or(&none);
                Owned {
                    replicas: rs["spec"]["replicas"].as_i64().unwrap_or(0).max(0) as usize,
                    pods: pods.len(),
                    ready: pods.iter().filter(|p| is_ready(p)).count(),
                    available: pods.iter().filter(|p| is_available(p, min_ready)).count(),
                    rs,
                }
            })
            .collect();
        reconcile_one(store, &rt, &rs_rt, &d, owned);
    }
}

fn reconcile_one(
    store: &mut Store,
    rt: &ResourceType,
    rs_rt: &ResourceType,
    d: &Value,
    owned: Vec<Owned>,
) {
    let desired = d["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    let hash = template_hash(&d["spec"]["template"]);
    let (news, olds): (Vec<Owned>, Vec<Owned>) = owned.into_iter().partition(|o| o.hash() == hash);
    let new = news.into_iter().next();
    let surge = desired.div_ceil(4).max(1);
    let unavailable = desired / 4;

    let old_replicas: usize = olds.iter().map(|o| o.replicas).sum();
    let new_replicas = new.as_ref().map_or(0, |n| n.replicas);
    let target_new = if old_replicas == 0 {
        desired
    } else {
        // Surge: all ReplicaSets together stay within desired + maxSurge.
        let room = (desired + surge).saturating_sub(old_replicas + new_replicas);
        (new_replicas + room).min(desired)
    };
    match &new {
        Some(n) if n.replicas != target_new => scale(store, rs_rt, &n.rs, target_new),
        Some(_) => {}
        None => create_replica_set(store, rs_rt, d, &hash, target_new),
    }

    let mut olds = olds;
    olds.sort_by_key(|o| str_of(&o.rs, "creationTimestamp").to_owned());
    let new_counts = new.as_ref().map(|n| (target_new, n.available));
    for (o, target) in olds
        .iter()
        .zip(scale_down_old(desired, unavailable, new_counts, &olds))
    {
        if target != o.replicas {
            scale(store, rs_rt, &o.rs, target);
        }
    }
    write_status(
        store,
        rt,
        d,
        &hash,
        new.as_ref(),
        &olds,
        desired,
        unavailable,
    );
}

/// The old ReplicaSets' replicas after this pass (oldest first), as the real controller's
/// `reconcileOldReplicaSets` decides: the pods above desired − maxUnavailable that are not
/// needed to cover the new ReplicaSet's unavailable ones may go — unavailable old pods
/// first, then available ones while desired − maxUnavailable stay available.
/// `new` is the new ReplicaSet's (replicas, available pods).
fn scale_down_old(
    desired: usize,
    max_unavailable: usize,
    new: Option<(usize, usize)>,
    olds: &[Owned],
) -> Vec<usize> {
    let mut targets: Vec<usize> = olds.iter().map(|o| o.replicas).collect();
    let (new_replicas, new_available) = new.unwrap_or((0, 0));
    let all = new_replicas + targets.iter().sum::<usize>();
    let min_available = desired.saturating_sub(max_unavailable);
    let new_unavailable = new_replicas.saturating_sub(new_available);
    let Some(max_scaled_down) = all.checked_sub(min_available + new_unavailable) else {
        return targets;
    };
    let mut cleaned = 0;
    for (o, target) in olds.iter().zip(targets.iter_mut()) {
        let unhealthy = o.replicas.saturating_sub(o.available);
        let take = unhealthy.min(max_scaled_down - cleaned);
        *target -= take;
        cleaned += take;
    }
    let available = new_available + olds.iter().map(|o| o.available).sum::<usize>();
    let Some(mut removable) = available.checked_sub(min_available) else {
        return targets;
    };
    for target in targets.iter_mut() {
        let take = (*target).min(removable);
        *target -= take;
        removable -= take;
    }
    targets
}

#[allow(clippy::too_many_arguments)]
fn write_status(
    store: &mut Store,
    rt: &ResourceType,
    d: &Value,
    hash: &str,
    new: Option<&Owned>,
    olds: &[Owned],
    desired: usize,
    unavailable: usize,
) {
    let (ns, name) = (str_of(d, "namespace"), str_of(d, "name"));
    let replicas = olds.iter().map(|o| o.pods).sum::<usize>() + new.map_or(0, |n| n.pods);
    let ready = olds.iter().map(|o| o.ready).sum::<usize>() + new.map_or(0, |n| n.ready);
    let available =
        olds.iter().map(|o| o.available).sum::<usize>() + new.map_or(0, |n| n.available);
    let updated = new.map_or(0, |n| n.pods);
    let available_ok = available >= desired.saturating_sub(unavailable);
    let complete = updated == desired && replicas == desired && ready == desired;
    let Ok(current) = store.get(rt, ns, name) else {
        return;
    };
    let old_conditions = current["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let condition = |kind: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let previous = old_conditions.iter().find(|c| c["type"] == kind);
        let keep_time = previous.is_some_and(|p| p["status"] == status && p["reason"] == reason);
        let now = now_rfc3339();
        json!({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastUpdateTime": if keep_time { previous.map(|p| p["lastUpdateTime"].clone()).unwrap_or(json!(now)) } else { json!(now) },
            "lastTransitionTime": if keep_time { previous.map(|p| p["lastTransitionTime"].clone()).unwrap_or(json!(now)) } else { json!(now) },
        })
    };
    let mut status = json!({
        "observedGeneration": current["metadata"]["generation"].as_i64().unwrap_or(1),
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "conditions": [
            condition("Available", available_ok,
                if available_ok { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                format!("Deployment has {} minimum availability.", if available_ok { "" } else { "not" }).replace("  ", " ")),
            condition("Progressing", true,
                if complete { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
                format!("ReplicaSet \"{name}-{hash}\" {}.", if complete { "has successfully progressed" } else { "is progressing" })),
        ],
    });
    if replicas > available {
        status["unavailableReplicas"] = json!(replicas - available);
    }
    if current["status"] != status {
        let mut updated_object = current.clone();
        updated_object["status"] = status;
        let _ = store.write(rt, ns, name, updated_object, Subresource::Status, &writer());
    }
}

fn writer() -> WriteOptions {
    WriteOptions {
        manager: MANAGER.into(),
        ..WriteOptions::default()
    }
}

fn scale(store: &mut Store, rs_rt: &ResourceType, rs: &Value, replicas: usize) {
    let (ns, name) = (str_of(rs, "namespace"), str_of(rs, "name"));
    let Ok(mut current) = store.get(rs_rt, ns, name) else {
        return;
    };
    current["spec"]["replicas"] = json!(replicas);
    let _ = store.write(rs_rt, ns, name, current, Subresource::Main, &writer());
}

fn create_replica_set(
    store: &mut Store,
    rs_rt: &ResourceType,
    d: &Value,
    hash: &str,
    replicas: usize,
) {
    let (ns, name) = (str_of(d, "namespace"), str_of(d, "name"));
    let mut template = d["spec"]["template"].clone();
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = d["spec"]["selector"].clone();
    if !selector["matchLabels"].is_object() {
        selector["matchLabels"] = json!({});
    }
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    let labels = template["metadata"]["labels"].clone();
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{name}-{hash}"),
            "namespace": ns,
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                "uid": d["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "replicas": replicas, "selector": selector, "template": template,
            "minReadySeconds": min_ready_seconds(d),
        },
    });
    let _ = store.create(rs_rt, ns, rs, &writer());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old(replicas: usize, available: usize) -> Owned {
        Owned {
            rs: json!({}),
            replicas,
            pods: replicas,
            ready: available,
            available,
        }
    }

    #[test]
    fn old_pods_stay_while_the_new_ones_are_not_available() {
        // 2 desired, maxUnavailable 0: the surge pod is not available yet.
        assert_eq!(scale_down_old(2, 0, Some((1, 0)), &[old(2, 2)]), vec![2]);
        // Now it is: one old pod may go.
        assert_eq!(scale_down_old(2, 0, Some((1, 1)), &[old(2, 2)]), vec![1]);
        assert_eq!(scale_down_old(2, 0, Some((2, 2)), &[old(1, 1)]), vec![0]);
    }

    #[test]
    fn unavailable_old_pods_go_first_within_the_budget() {
        // 4 desired, maxUnavailable 1, 6 in all, 2 new unavailable: one may go, and it
        // is an unavailable old one; no available old one goes (2 available < 3).
        assert_eq!(scale_down_old(4, 1, Some((2, 0)), &[old(4, 2)]), vec![3]);
        // Oldest first, available ones while 3 stay available.
        assert_eq!(
            scale_down_old(4, 1, Some((2, 2)), &[old(1, 1), old(3, 3)]),
            vec![0, 1]
        );
        assert_eq!(scale_down_old(4, 1, None, &[]), Vec::<usize>::new());
    }
}
