//! Lifecycles: garbage collection through owner references, deleting a CRD or a
//! namespace, and a kube-runtime controller converging under concurrent writes.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{Controller, watcher};
use serde_json::json;

use crate::{cm, code, conformance, eventually, install_widgets, widget, widget_resource};

conformance! {
    async fn deleting_an_owner_collects_its_dependents_unless_orphaned(t) {
        let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), &t.ns);
        // Orphan first: the later background collection proves a collection pass ran after it.
        for policy in ["orphan", "background"] {
            let owner = cms
                .create(&PostParams::default(), &cm(&format!("owner-{policy}"), &[]))
                .await
                .unwrap();
            let mut dep = cm(&format!("dep-{policy}"), &[]);
            dep.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: owner.name_any(),
                uid: owner.uid().unwrap(),
                ..Default::default()
            }]);
            cms.create(&PostParams::default(), &dep).await.unwrap();
            let dp = if policy == "orphan" {
                DeleteParams::orphan()
            } else {
                DeleteParams::background()
            };
            cms.delete(&owner.name_any(), &dp).await.unwrap();
        }
        let cms2 = cms.clone();
        eventually("dependent collected", Duration::from_secs(30), move || {
            let cms = cms2.clone();
            async move { cms.get_opt("dep-background").await.ok().flatten().is_none() }
        })
        .await;
        let cms2 = cms.clone();
        eventually("the orphan's owner reference removed", Duration::from_secs(30), move || {
            let cms = cms2.clone();
            async move {
                let orphan = cms.get("dep-orphan").await.expect("orphaned dependent stays");
                orphan.metadata.owner_references.unwrap_or_default().is_empty()
            }
        })
        .await;
    }
}

conformance! {
    /// Both are asynchronous on kube-apiserver (the CRD's cleanup finalizer, the
    /// namespace controller): the test waits for what a client would wait for.
    async fn deleting_a_crd_or_a_namespace_removes_what_it_holds(t) {
        let widgets = install_widgets(t).await;
        widgets.create(&PostParams::default(), &widget(t, "x", 1)).await.unwrap();
        let crds: Api<CustomResourceDefinition> = Api::all(t.client.clone());
        crds.delete(&t.crd_name(), &DeleteParams::default()).await.unwrap();
        let w2 = widgets.clone();
        eventually("the CRD's resource is gone", Duration::from_secs(30), move || {
            let widgets = w2.clone();
            async move {
                matches!(widgets.list(&ListParams::default()).await, Err(e) if code(&e).0 == 404)
            }
        })
        .await;

        let temp = format!("{}-temp", t.ns);
        let namespaces: Api<Namespace> = Api::all(t.client.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": temp}})).unwrap();
        namespaces.create(&PostParams::default(), &ns).await.unwrap();
        let in_temp: Api<ConfigMap> = Api::namespaced(t.client.clone(), &temp);
        in_temp.create(&PostParams::default(), &cm("c", &[])).await.unwrap();
        namespaces.delete(&temp, &DeleteParams::default()).await.unwrap();
        let (namespaces2, temp2) = (namespaces.clone(), temp.clone());
        eventually("the namespace and its objects are gone", Duration::from_secs(60), move || {
            let (namespaces, temp) = (namespaces2.clone(), temp2.clone());
            async move { namespaces.get_opt(&temp).await.ok().flatten().is_none() }
        })
        .await;
        let all: Api<ConfigMap> = Api::all(t.client.clone());
        assert!(
            all.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .all(|c| c.namespace().as_deref() != Some(temp.as_str()))
        );
        // Creating in a namespace being deleted is refused; in a deleted one it is 404.
        let err = in_temp.create(&PostParams::default(), &cm("late", &[])).await.unwrap_err();
        assert_eq!(code(&err).0, 404, "{err}");
    }
}

#[derive(Clone)]
struct Ctx {
    widgets: Api<DynamicObject>,
    api_version: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ReconcileError(#[from] kube::Error);

async fn reconcile_widget(
    w: Arc<DynamicObject>,
    ctx: Arc<Ctx>,
) -> Result<kube::runtime::controller::Action, ReconcileError> {
    let size = w.data["spec"]["size"].clone();
    let status = json!({"apiVersion": ctx.api_version, "kind": "Widget", "metadata": {"name": w.name_any()}, "status": {"observed": size}});
    ctx.widgets
        .patch_status(
            &w.name_any(),
            &PatchParams::apply("widget-controller").force(),
            &Patch::Apply(&status),
        )
        .await?;
    Ok(kube::runtime::controller::Action::await_change())
}

fn widget_error_policy(
    _w: Arc<DynamicObject>,
    _e: &ReconcileError,
    _ctx: Arc<Ctx>,
) -> kube::runtime::controller::Action {
    kube::runtime::controller::Action::requeue(Duration::from_millis(200))
}

conformance! {
    async fn a_reconcile_loop_converges_after_100_concurrent_writes(t) {
        let widgets = install_widgets(t).await;
        for i in 0..10 {
            widgets
                .create(&PostParams::default(), &widget(t, &format!("r{i}"), 0))
                .await
                .unwrap();
        }
        let ctx = Arc::new(Ctx {
            widgets: widgets.clone(),
            api_version: format!("{}/v1", t.group),
        });
        let controller = Controller::new_with(
            widgets.clone(),
            watcher::Config::default(),
            widget_resource(t),
        )
        .run(reconcile_widget, widget_error_policy, ctx)
        .for_each(|_| async {});
        let controller = tokio::spawn(controller);
        let mut writes = Vec::new();
        for n in 0..100i64 {
            let widgets = widgets.clone();
            writes.push(tokio::spawn(async move {
                let name = format!("r{}", n % 10);
                widgets
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"size": n}})),
                    )
                    .await
                    .unwrap();
            }));
        }
        for w in writes {
            w.await.unwrap();
        }
        let w2 = widgets.clone();
        eventually(
            "every widget's status reflects its final spec",
            Duration::from_secs(30),
            move || {
                let widgets = w2.clone();
                async move {
                    let list = widgets.list(&ListParams::default()).await.unwrap();
                    list.items.len() == 10
                        && list
                            .items
                            .iter()
                            .all(|w| w.data["status"]["observed"] == w.data["spec"]["size"])
                }
            },
        )
        .await;
        controller.abort();
    }
}
