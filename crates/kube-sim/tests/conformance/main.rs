//! Conformance of kube-sim with kube-apiserver, through kube-rs and through the kubectl
//! binary. Each test states a behaviour of the Kubernetes API (API conventions,
//! api-concepts) and checks it as a client sees it, once against kube-sim
//! (`<test>::kube_sim`) and once against the real kube-apiserver that `cargo xtask test`
//! builds and starts (`<test>::kube_apiserver`; skipped, saying so, when no cluster is
//! running). A behaviour where the two disagree fails one of the pair.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

mod target;

mod apply;
mod crds;
mod kubectl;
mod lifecycle;
mod lists;
mod simulator;
mod workloads;
mod writes;

pub use target::{SHELL_IMAGE, Target};

/// `conformance!(async fn name(t) { … })`: the body as two tests, `name::kube_sim` and
/// `name::kube_apiserver`.
#[macro_export]
macro_rules! conformance {
    ($(#[doc = $doc:literal])* async fn $name:ident($t:ident) $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($t: &$crate::Target) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kube_sim() {
                let t = $crate::Target::sim().await;
                body(&t).await;
                t.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kube_apiserver() {
                let Some(t) = $crate::Target::real().await else {
                    eprintln!("skipped: FORECAST_CLUSTER_KUBECONFIG names no cluster (cargo xtask test starts one)");
                    return;
                };
                body(&t).await;
                t.stop().await;
            }
        }
    };
}

pub fn code(e: &kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

pub fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = Some(name.into());
    if !labels.is_empty() {
        c.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
    }
    c.data = Some(BTreeMap::from([("k".to_string(), "v".to_string())]));
    c
}

pub fn widget_crd(t: &Target) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": t.crd_name()},
        "spec": {
            "group": t.group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": [t.short_name]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "required": ["size"], "properties": {
                            "size": {"type": "integer", "minimum": 0},
                            "color": {"type": "string", "enum": ["red", "blue"], "default": "red"}
                        }},
                        "status": {"type": "object", "properties": {
                            "phase": {"type": "string"}, "observed": {"type": "integer"},
                            "conditions": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
                        }}
                    }
                }}
            }]
        }
    }))
    .expect("CRD")
}

pub fn widget_resource(t: &Target) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(&t.group, "v1", "Widget"), "widgets")
}

/// Creates the test's Widget CRD and waits until it is Established and served (the
/// real server establishes a CRD asynchronously; kube-sim at once).
pub async fn install_widgets(t: &Target) -> Api<DynamicObject> {
    let crds: Api<CustomResourceDefinition> = Api::all(t.client.clone());
    crds.patch(
        &t.crd_name(),
        &PatchParams::apply("conformance"),
        &Patch::Apply(&widget_crd(t)),
    )
    .await
    .expect("apply the CRD");
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(t.client.clone(), &t.ns, &widget_resource(t));
    let (crds2, name, w2) = (crds.clone(), t.crd_name(), widgets.clone());
    eventually(
        "the CRD is Established and its resource served",
        Duration::from_secs(30),
        move || {
            let (crds, name, widgets) = (crds2.clone(), name.clone(), w2.clone());
            async move {
                let established = crds.get(&name).await.ok().is_some_and(|crd| {
                    crd.status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
                established && widgets.list(&Default::default()).await.is_ok()
            }
        },
    )
    .await;
    widgets
}

pub fn widget(t: &Target, name: &str, size: i64) -> DynamicObject {
    let mut w = DynamicObject::new(name, &widget_resource(t));
    w.data = json!({"spec": {"size": size}});
    w
}

pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// Eight hex digits, different in every call.
pub fn rand_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos() ^ std::process::id() as u128);
    format!("{:08x}", h.finish() as u32)
}

pub fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// The process ids of the pods' first containers (`process://PID`, from the node agent
/// on either server).
pub fn pids_of(pods: &[Pod]) -> Vec<u32> {
    pods.iter()
        .filter_map(|p| {
            p.status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .first()?
                .container_id
                .clone()
        })
        .filter_map(|id| id.split_once("://")?.1.parse().ok())
        .collect()
}

pub fn shell() -> PathBuf {
    which("sh")
}

pub fn which(binary: &str) -> PathBuf {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .output()
        .expect("sh runs");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
