//! Which of the pods carrying a ForecastModel's labels are really its own: only a pod
//! whose owner chain leads to the ForecastModel's Deployment is asked what it serves, told
//! to reload, or sent the admin token. Labels can be copied by anyone who may create a pod
//! in the namespace; owner references are checked against the API server's objects.
//!
//! The chain is `Pod → ReplicaSet → Deployment`, each link the object's controller
//! ownerReference, and the ReplicaSet is one the Deployment controller made for it: named
//! `<deployment>-<pod-template-hash>`, selecting the Deployment's labels and that hash,
//! which the pod carries too. A pod claiming the Deployment itself as its controller is
//! refused (no Deployment controller makes one). Whoever may create pods in the namespace
//! can still claim a real ReplicaSet: the namespace is the trust boundary (README,
//! security model).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use api::forecast_model::ForecastModel;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::error::Result;
use crate::resources::{self, controller_of};

/// ReplicaSets checked before: ReplicaSet uid → the uid of the Deployment it was made for
/// and its pod-template-hash (`None`: not one of a Deployment's). A ReplicaSet's
/// controller, name and selector do not change while it lives.
#[derive(Debug, Default)]
pub struct ReplicaSetOwners(Mutex<HashMap<String, Option<MadeFor>>>);

#[derive(Debug, Clone, PartialEq)]
struct MadeFor {
    deployment_uid: String,
    template_hash: String,
}

/// At most this many ReplicaSets are remembered.
const REMEMBERED: usize = 10_000;

impl ReplicaSetOwners {
    fn get(&self, rs_uid: &str) -> Option<Option<MadeFor>> {
        self.0.lock().ok()?.get(rs_uid).cloned()
    }

    fn record(&self, rs_uid: &str, made_for: Option<MadeFor>) {
        if let Ok(mut m) = self.0.lock() {
            // Full: one entry makes room (forgetting them all would have every
            // ReplicaSet read again at once when there are more than this many).
            if m.len() >= REMEMBERED
                && !m.contains_key(rs_uid)
                && let Some(any) = m.keys().next().cloned()
            {
                m.remove(&any);
            }
            m.insert(rs_uid.to_owned(), made_for);
        }
    }
}

/// The pods of `listed` whose owner chain leads to `fm`'s own Deployment. Pods that only
/// carry the labels are left out and logged.
pub async fn ours(
    ctx: &Context,
    fm: &ForecastModel,
    listed: Vec<Arc<Pod>>,
) -> Result<Vec<Arc<Pod>>> {
    if listed.is_empty() {
        return Ok(listed);
    }
    let ns = fm.namespace().unwrap_or_default();
    let deployment = ctx
        .caches
        .deployment(&ns, &resources::names(fm).deployment)
        .await?
        .filter(|d| resources::controlled_by(&d.metadata, fm));
    let Some(deployment) = deployment else {
        return Ok(Vec::new());
    };
    // The cache keeps no Deployment spec: the selector is the one the operator applies.
    let selector = resources::selector_labels(fm);
    let mut out = Vec::with_capacity(listed.len());
    for pod in listed {
        if owned_through(ctx, &ns, &pod, &deployment, &selector).await {
            out.push(pod);
        } else {
            tracing::warn!(
                pod = %pod.name_any(),
                namespace = %ns,
                forecast_model = %fm.name_any(),
                "a pod carries the predictor labels but is not the ForecastModel's; it is not called"
            );
        }
    }
    Ok(out)
}

/// Whether `pod`'s controller is a ReplicaSet the Deployment controller made for
/// `deployment`, from the same template as the pod.
async fn owned_through(
    ctx: &Context,
    ns: &str,
    pod: &Pod,
    deployment: &Deployment,
    selector: &BTreeMap<String, String>,
) -> bool {
    let Some(("ReplicaSet", rs_uid)) = controller_of(&pod.metadata) else {
        return false;
    };
    let Some(deployment_uid) = deployment.metadata.uid.as_deref() else {
        return false;
    };
    let made_for = match ctx.replica_set_owners.get(rs_uid) {
        Some(known) => known,
        None => match read_replica_set(ctx, ns, pod, rs_uid).await {
            Some(rs) => {
                let made_for = made_for(&rs, deployment, selector);
                ctx.replica_set_owners.record(rs_uid, made_for.clone());
                made_for
            }
            None => return false,
        },
    };
    made_for.is_some_and(|m| {
        m.deployment_uid == deployment_uid
            && pod.labels().get(TEMPLATE_HASH) == Some(&m.template_hash)
    })
}

const TEMPLATE_HASH: &str = "pod-template-hash";

/// The Deployment and template hash `rs` was made for, when it is one of `deployment`'s:
/// controlled by it, named `<deployment>-<hash>`, selecting the Deployment's labels
/// (`selector`) and the hash.
fn made_for(
    rs: &ReplicaSet,
    deployment: &Deployment,
    selector: &BTreeMap<String, String>,
) -> Option<MadeFor> {
    let Some(("Deployment", uid)) = controller_of(&rs.metadata) else {
        return None;
    };
    let hash = rs.labels().get(TEMPLATE_HASH)?;
    let selects = rs.spec.selector.match_labels.as_ref()?;
    let selects_deployment = selector.iter().all(|(k, v)| selects.get(k) == Some(v));
    let named = rs.name_any() == format!("{}-{hash}", deployment.name_any());
    (selects_deployment && named && selects.get(TEMPLATE_HASH) == Some(hash)).then(|| MadeFor {
        deployment_uid: uid.to_owned(),
        template_hash: hash.clone(),
    })
}

/// The pod's ReplicaSet (`rs_uid`) from the API server; `None` when it cannot be read or
/// the name now belongs to another one.
async fn read_replica_set(ctx: &Context, ns: &str, pod: &Pod, rs_uid: &str) -> Option<ReplicaSet> {
    let name = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.uid == rs_uid)
        .map(|o| o.name.clone())?;
    let replica_sets: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    match replica_sets.get_opt(&name).await {
        Ok(rs) => rs.filter(|rs| rs.metadata.uid.as_deref() == Some(rs_uid)),
        Err(e) => {
            tracing::debug!(replica_set = %name, error = %e, "cannot read the pod's ReplicaSet");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "fm-predictor", "uid": "d-1"}}))
            .expect("deployment")
    }

    fn selector() -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_owned(), "p".to_owned())])
    }

    fn replica_set(name: &str, owner_kind: &str, selector: serde_json::Value) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": "rs-1", "labels": {"app": "p", "pod-template-hash": "abc"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": "fm-predictor", "uid": "d-1", "controller": true}]},
            "spec": {"selector": {"matchLabels": selector}}
        }))
        .expect("replica set")
    }

    #[test]
    fn a_replica_set_the_deployment_controller_made_is_recognised() {
        let rs = replica_set(
            "fm-predictor-abc",
            "Deployment",
            json!({"app": "p", "pod-template-hash": "abc"}),
        );
        assert_eq!(
            made_for(&rs, &deployment(), &selector()),
            Some(MadeFor {
                deployment_uid: "d-1".into(),
                template_hash: "abc".into()
            })
        );
    }

    #[test]
    fn a_replica_set_that_only_claims_the_deployment_is_not() {
        let d = deployment();
        let good = json!({"app": "p", "pod-template-hash": "abc"});
        // Another name, another selector, no hash in the selector, another controller kind.
        assert_eq!(
            made_for(
                &replica_set("evil", "Deployment", good.clone()),
                &d,
                &selector()
            ),
            None
        );
        assert_eq!(
            made_for(
                &replica_set(
                    "fm-predictor-abc",
                    "Deployment",
                    json!({"app": "q", "pod-template-hash": "abc"})
                ),
                &d,
                &selector()
            ),
            None
        );
        assert_eq!(
            made_for(
                &replica_set("fm-predictor-abc", "Deployment", json!({"app": "p"})),
                &d,
                &selector()
            ),
            None
        );
        assert_eq!(
            made_for(
                &replica_set("fm-predictor-abc", "StatefulSet", good),
                &d,
                &selector()
            ),
            None
        );
    }
}
