//! Server-side apply: creation, idempotence, conflicts between managers, pruning, and the
//! list-map keys it refuses twice.

use std::collections::HashSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::{code, conformance};

conformance! {
    async fn server_side_apply_creates_is_idempotent_and_reports_conflicts(t) {
        let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), &t.ns);
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "labels": {"owner": "op"}}, "data": {"a": "1", "b": "2"}});
        let created = cms
            .patch("ssa", &PatchParams::apply("op"), &Patch::Apply(&desired))
            .await
            .unwrap();
        let again = cms
            .patch("ssa", &PatchParams::apply("op"), &Patch::Apply(&desired))
            .await
            .unwrap();
        assert_eq!(
            created.resource_version(),
            again.resource_version(),
            "a no-op apply writes nothing"
        );

        // Another manager changing an owned field conflicts unless forced.
        let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "changed"}});
        let err = cms
            .patch("ssa", &PatchParams::apply("other"), &Patch::Apply(&theirs))
            .await
            .unwrap_err();
        assert_eq!(code(&err), (409, "Conflict".to_string()));
        assert!(err.to_string().contains("op"), "{err}");
        let forced = cms
            .patch("ssa", &PatchParams::apply("other").force(), &Patch::Apply(&theirs))
            .await
            .unwrap();
        assert_eq!(forced.data.as_ref().unwrap()["a"], "changed");
        let managers: HashSet<String> = forced
            .metadata
            .managed_fields
            .unwrap()
            .iter()
            .filter_map(|m| m.manager.clone())
            .collect();
        assert_eq!(managers, HashSet::from(["op".to_string(), "other".to_string()]));

        // A field the manager stops applying is removed.
        let fewer = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "labels": {"owner": "op"}}, "data": {}});
        let pruned = cms
            .patch("ssa", &PatchParams::apply("op").force(), &Patch::Apply(&fewer))
            .await
            .unwrap();
        let data = pruned.data.unwrap_or_default();
        assert!(!data.contains_key("b"), "{data:?}");
        assert_eq!(data["a"], "changed", "a field another manager owns stays");
        let err = cms
            .patch("ssa", &PatchParams::default(), &Patch::Apply(&desired))
            .await
            .unwrap_err();
        assert_eq!(code(&err).0, 422, "apply needs a field manager: {err}");
        assert!(err.to_string().contains("fieldManager"), "{err}");
    }
}

conformance! {
    async fn an_apply_naming_an_env_variable_twice_is_refused_as_kube_apiserver_refuses_it(t) {
        let deployments: Api<Deployment> = Api::namespaced(t.client.clone(), &t.ns);
        let twice = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dup"},
            "spec": {"selector": {"matchLabels": {"app": "dup"}}, "template": {
                "metadata": {"labels": {"app": "dup"}},
                "spec": {"containers": [{"name": "c", "image": "x", "env": [
                    {"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}]}}}});
        let err = deployments
            .patch("dup", &PatchParams::apply("op"), &Patch::Apply(&twice))
            .await
            .unwrap_err();
        assert_eq!(code(&err).0, 500);
        assert!(
            err.to_string().contains(
                ".spec.template.spec.containers[name=\"c\"].env: duplicate entries for key [name=\"A\"]"
            ),
            "{err}"
        );
        assert!(deployments.get_opt("dup").await.unwrap().is_none());
    }
}
