//! The Deployment controller: keeps `spec.replicas` pods from the pod template (labelled
//! with `pod-template-hash`, owned by the Deployment), rolls pods only when the template
//! changes (maxSurge 25 % rounded up, maxUnavailable 25 % rounded down, the defaults),
//! and keeps `status` true. (A real cluster puts a ReplicaSet in between; pods here are
//! owned by the Deployment directly.)

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::{Value, json};

use crate::resources::ResourceType;
use crate::selectors::LabelSelector;
use crate::store::{DeleteOptions, Store, Subresource, WriteOptions, now_rfc3339};

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

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn owned_by(pod: &Value, uid: &str) -> bool {
    pod["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["uid"] == uid && r["controller"] == true))
}

/// Reconciles every Deployment, or only those in `only` (by uid).
pub fn reconcile(store: &mut Store, only: Option<&std::collections::HashSet<String>>) {
    let Some(deployments) = store.resolve("apps", "v1", "deployments").cloned() else {
        return;
    };
    let Some(pods_rt) = store.resolve("", "v1", "pods").cloned() else {
        return;
    };
    // Pods by controlling owner, once per pass (not once per Deployment); with `only`,
    // just the pods of those Deployments are cloned.
    let owner_of = |p: &Value| -> Option<String> {
        p["metadata"]["ownerReferences"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["controller"] == true))
            .and_then(|r| r["uid"].as_str())
            .map(str::to_owned)
    };
    let mut by_owner: std::collections::HashMap<String, Vec<Value>> =
        std::collections::HashMap::new();
    let pods = store.select(&pods_rt, |p| {
        owner_of(p).is_some_and(|o| only.is_none_or(|set| set.contains(&o)))
    });
    for p in pods {
        if let Some(uid) = owner_of(&p) {
            by_owner.entry(uid).or_default().push(p);
        }
    }
    let none = Vec::new();
    let selected = store.select(&deployments, |d| {
        only.is_none_or(|set| {
            d["metadata"]["uid"]
                .as_str()
                .is_some_and(|u| set.contains(u))
        })
    });
    for d in selected {
        if !d["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let uid = d["metadata"]["uid"].as_str().unwrap_or_default();
        if only.is_some_and(|o| !o.contains(uid)) {
            continue;
        }
        let pods = by_owner.get(uid).unwrap_or(&none);
        reconcile_one(store, &deployments, &pods_rt, &d, pods);
    }
}

fn reconcile_one(
    store: &mut Store,
    rt: &ResourceType,
    pods_rt: &ResourceType,
    d: &Value,
    all_pods: &[Value],
) {
    let ns = d["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let name = d["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let uid = d["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
    let desired = d["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    let template = &d["spec"]["template"];
    let hash = template_hash(template);
    let Ok(selector) = LabelSelector::from_object(&d["spec"]["selector"]) else {
        return;
    };
    let mine: Vec<&Value> = all_pods
        .iter()
        .filter(|p| {
            p["metadata"]["namespace"] == ns.as_str() && owned_by(p, &uid) && selector.matches(p)
        })
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    let (new, old): (Vec<&Value>, Vec<&Value>) = mine
        .iter()
        .partition(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str());
    let surge = desired.div_ceil(4).max(1);
    let unavailable = desired / 4;
    let ready_total = mine.iter().filter(|p| is_ready(p)).count();

    let mut created = 0usize;
    let mut deleted = Vec::<String>::new();
    let mut total = mine.len();
    if old.is_empty() {
        // Steady state: scale the current pods.
        for _ in new.len()..desired {
            if create_pod(store, pods_rt, d, &hash).is_some() {
                created += 1;
            }
        }
        if new.len() > desired {
            let mut victims: Vec<&&Value> = new.iter().collect();
            // Not-ready pods first, then the newest.
            victims.sort_by_key(|p| {
                (
                    is_ready(p),
                    std::cmp::Reverse(
                        p["metadata"]["creationTimestamp"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned(),
                    ),
                )
            });
            for p in victims.into_iter().take(new.len() - desired) {
                deleted.push(
                    p["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    } else {
        // Rolling update.
        let mut new_count = new.len();
        while new_count < desired && total < desired + surge {
            if create_pod(store, pods_rt, d, &hash).is_none() {
                break;
            }
            created += 1;
            new_count += 1;
            total += 1;
        }
        let min_available = desired.saturating_sub(unavailable);
        let mut removable = ready_total.saturating_sub(min_available);
        let mut old_sorted: Vec<&&Value> = old.iter().collect();
        old_sorted.sort_by_key(|p| is_ready(p));
        for p in old_sorted {
            let ready = is_ready(p);
            if ready && removable == 0 {
                continue;
            }
            if ready {
                removable -= 1;
            }
            deleted.push(
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    for pod in &deleted {
        let _ = store.delete(pods_rt, &ns, pod, &DeleteOptions::default());
    }

    // Status from what exists after this pass.
    // What exists after this pass: the pods seen, less those deleted, plus those created.
    let pods_now: Vec<Value> = if created == 0 && deleted.is_empty() {
        mine.iter().map(|p| (*p).clone()).collect()
    } else {
        // Only this Deployment's pods are cloned.
        store.select(pods_rt, |p| {
            p["metadata"]["namespace"] == ns.as_str()
                && owned_by(p, &uid)
                && p["metadata"]["deletionTimestamp"].is_null()
        })
    };
    let replicas = pods_now.len();
    let updated = pods_now
        .iter()
        .filter(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str())
        .count();
    let ready = pods_now.iter().filter(|p| is_ready(p)).count();
    let available_ok = ready >= desired.saturating_sub(unavailable);
    let complete = updated == desired && replicas == desired && ready == desired;
    let Ok(current) = store.get(rt, &ns, &name) else {
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
        "availableReplicas": ready,
        "conditions": [
            condition("Available", available_ok,
                if available_ok { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                format!("Deployment has {} minimum availability.", if available_ok { "" } else { "not" }).replace("  ", " ")),
            condition("Progressing", true,
                if complete { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
                format!("ReplicaSet \"{name}-{hash}\" {}.", if complete { "has successfully progressed" } else { "is progressing" })),
        ],
    });
    if replicas > ready {
        status["unavailableReplicas"] = json!(replicas - ready);
    }
    if current["status"] != status {
        let mut updated_object = current.clone();
        updated_object["status"] = status;
        let opts = WriteOptions {
            manager: MANAGER.into(),
            ..WriteOptions::default()
        };
        let _ = store.write(rt, &ns, &name, updated_object, Subresource::Status, &opts);
    }
}

fn create_pod(store: &mut Store, pods_rt: &ResourceType, d: &Value, hash: &str) -> Option<Value> {
    let name = d["metadata"]["name"].as_str().unwrap_or_default();
    let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
    let template = &d["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels["pod-template-hash"] = json!(hash);
    let mut metadata = json!({
        "generateName": format!("{name}-{hash}-"),
        "namespace": ns,
        "labels": labels,
        "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": name,
            "uid": d["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
        }],
    });
    if template["metadata"]["annotations"].is_object() {
        metadata["annotations"] = template["metadata"]["annotations"].clone();
    }
    let mut spec = template["spec"].clone();
    spec["nodeName"] = json!("kube-sim");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
    let opts = WriteOptions {
        manager: MANAGER.into(),
        ..WriteOptions::default()
    };
    store.create(pods_rt, ns, pod, &opts).ok()
}
