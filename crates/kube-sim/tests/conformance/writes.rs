//! Writes: create and update conflicts, finalizers, merge, JSON and strategic patches.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::{SHELL_IMAGE, cm, code, conformance};

conformance! {
    async fn creating_twice_is_409_already_exists_and_a_stale_update_is_409_conflict(t) {
        let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), &t.ns);
        let first = cms.create(&PostParams::default(), &cm("dup", &[])).await.unwrap();
        let err = cms.create(&PostParams::default(), &cm("dup", &[])).await.unwrap_err();
        assert_eq!(code(&err), (409, "AlreadyExists".to_string()));
        let mut newer = first.clone();
        newer.data = Some(BTreeMap::from([("k".to_string(), "v2".to_string())]));
        cms.replace("dup", &PostParams::default(), &newer).await.unwrap();
        let mut stale = first.clone();
        stale.data = Some(BTreeMap::from([("k".to_string(), "stale".to_string())]));
        let err = cms.replace("dup", &PostParams::default(), &stale).await.unwrap_err();
        assert_eq!(code(&err), (409, "Conflict".to_string()));
        assert_eq!(cms.get("dup").await.unwrap().data.unwrap()["k"], "v2");
        let err = cms.get("nope").await.unwrap_err();
        assert_eq!(code(&err), (404, "NotFound".to_string()));
        let other: Api<ConfigMap> = Api::namespaced(t.client.clone(), "no-such-namespace");
        let err = other.create(&PostParams::default(), &cm("x", &[])).await.unwrap_err();
        assert_eq!(code(&err).0, 404);
    }
}

conformance! {
    async fn finalizers_hold_a_deleted_object_until_they_are_removed(t) {
        let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), &t.ns);
        let mut c = cm("fin", &[]);
        c.metadata.finalizers = Some(vec!["test/hold".into()]);
        cms.create(&PostParams::default(), &c).await.unwrap();
        cms.delete("fin", &DeleteParams::default()).await.unwrap();
        let held = cms.get("fin").await.unwrap();
        assert!(held.metadata.deletion_timestamp.is_some());
        cms.patch(
            "fin",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
        assert_eq!(code(&cms.get("fin").await.unwrap_err()).0, 404);
    }
}

conformance! {
    async fn merge_json_and_strategic_patches_apply_as_specified(t) {
        let deployments: Api<Deployment> = Api::namespaced(t.client.clone(), &t.ns);
        let d: Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "p"}}, "template": {
                "metadata": {"labels": {"app": "p"}},
                "spec": {"containers": [{"name": "c1", "image": SHELL_IMAGE}, {"name": "c2", "image": "y:1"}]}}}
        }))
        .unwrap();
        deployments.create(&PostParams::default(), &d).await.unwrap();
        let merged = deployments
            .patch(
                "p",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"b": null, "c": "3"}}})),
            )
            .await
            .unwrap();
        assert_eq!(merged.labels().get("b"), None);
        assert_eq!(merged.labels().get("c").map(String::as_str), Some("3"));
        let strategic = deployments
            .patch(
                "p",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c2", "image": "y:2"}]}}}})),
            )
            .await
            .unwrap();
        let containers = strategic.spec.template.spec.unwrap().containers;
        assert_eq!(containers.len(), 2, "strategic merge keeps c1");
        assert_eq!(containers[1].image.as_deref(), Some("y:2"));
        let jp: json_patch::Patch = serde_json::from_value(json!([
            {"op": "replace", "path": "/spec/replicas", "value": 0},
            {"op": "add", "path": "/metadata/labels/d", "value": "4"}
        ]))
        .unwrap();
        let patched = deployments
            .patch("p", &PatchParams::default(), &Patch::<()>::Json(jp))
            .await
            .unwrap();
        assert_eq!(patched.labels().get("d").map(String::as_str), Some("4"));
        let bad: json_patch::Patch = serde_json::from_value(
            json!([{"op": "test", "path": "/metadata/labels/d", "value": "nope"}]),
        )
        .unwrap();
        let err = deployments
            .patch("p", &PatchParams::default(), &Patch::<()>::Json(bad))
            .await
            .unwrap_err();
        assert_eq!(code(&err).0, 422);
    }
}
