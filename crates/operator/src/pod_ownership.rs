//! Which of the pods carrying a ForecastModel's labels are really its own: only a pod
//! whose owner chain leads to the ForecastModel's Deployment is asked what it serves, told
//! to reload, or sent the admin token. Labels can be copied by anyone who may create a pod
//! in the namespace; owner references are checked against the API server's objects.
//!
//! The chain is `Pod → ReplicaSet → Deployment` in a cluster, each link the object's
//! controller ownerReference; a pod controlled by the Deployment itself is accepted too
//! (kube-sim's Deployment controller owns its pods directly).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use api::forecast_model::ForecastModel;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::error::Result;
use crate::resources::{self, controller_of};

/// ReplicaSets checked before: ReplicaSet uid → the uid of the Deployment controlling it
/// (empty: none). A ReplicaSet's controller does not change while it lives.
#[derive(Debug, Default)]
pub struct ReplicaSetOwners(Mutex<HashMap<String, String>>);

/// At most this many ReplicaSets are remembered; past it the record starts over.
const REMEMBERED: usize = 10_000;

impl ReplicaSetOwners {
    fn get(&self, rs_uid: &str) -> Option<String> {
        self.0.lock().ok()?.get(rs_uid).cloned()
    }

    fn record(&self, rs_uid: &str, deployment_uid: &str) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= REMEMBERED {
                m.clear();
            }
            m.insert(rs_uid.to_owned(), deployment_uid.to_owned());
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
    let Some(deployment_uid) = deployment.and_then(|d| d.metadata.uid.clone()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(listed.len());
    for pod in listed {
        if owned_through(ctx, &ns, &pod, &deployment_uid).await {
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

/// Whether `pod`'s controller is the Deployment, or a ReplicaSet the Deployment controls.
async fn owned_through(ctx: &Context, ns: &str, pod: &Pod, deployment_uid: &str) -> bool {
    match controller_of(&pod.metadata) {
        Some(("Deployment", uid)) => uid == deployment_uid,
        Some(("ReplicaSet", rs_uid)) => {
            replica_set_controller(ctx, ns, pod, rs_uid)
                .await
                .as_deref()
                == Some(deployment_uid)
        }
        _ => false,
    }
}

/// The uid of the Deployment controlling the pod's ReplicaSet (`rs_uid`), from memory or
/// the API server; `None` when the ReplicaSet cannot be read or is not that one.
async fn replica_set_controller(
    ctx: &Context,
    ns: &str,
    pod: &Pod,
    rs_uid: &str,
) -> Option<String> {
    if let Some(known) = ctx.replica_set_owners.get(rs_uid) {
        return Some(known);
    }
    let name = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.uid == rs_uid)
        .map(|o| o.name.clone())?;
    let replica_sets: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    let rs = match replica_sets.get_opt(&name).await {
        Ok(rs) => rs?,
        Err(e) => {
            tracing::debug!(replica_set = %name, error = %e, "cannot read the pod's ReplicaSet");
            return None;
        }
    };
    if rs.metadata.uid.as_deref() != Some(rs_uid) {
        return None; // the name now belongs to another ReplicaSet
    }
    let owner = match controller_of(&rs.metadata) {
        Some(("Deployment", uid)) => uid.to_owned(),
        _ => String::new(),
    };
    ctx.replica_set_owners.record(rs_uid, &owner);
    Some(owner).filter(|o| !o.is_empty())
}
