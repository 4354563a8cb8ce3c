//! Discovery, CustomResourceDefinitions, schema validation and defaulting, object
//! metadata and the status subresource.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::{code, conformance, install_widgets, widget};

conformance! {
    async fn discovery_resolves_built_ins_crd_plurals_and_short_names(t) {
        install_widgets(t).await;
        // Only the groups asked about: other tests' CRDs come and go meanwhile.
        let discovery = kube::discovery::Discovery::new(t.client.clone())
            .filter(&["", "apps", "coordination.k8s.io", "events.k8s.io", "apiextensions.k8s.io", &t.group])
            .run()
            .await
            .unwrap();
        let mut kinds = HashSet::new();
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                kinds.insert((
                    ar.group.clone(),
                    ar.plural.clone(),
                    caps.scope == kube::discovery::Scope::Namespaced,
                ));
            }
        }
        for expected in [
            ("", "pods", true),
            ("", "services", true),
            ("", "configmaps", true),
            ("", "secrets", true),
            ("", "namespaces", false),
            ("", "serviceaccounts", true),
            ("", "events", true),
            ("apps", "deployments", true),
            ("coordination.k8s.io", "leases", true),
            ("events.k8s.io", "events", true),
            ("apiextensions.k8s.io", "customresourcedefinitions", false),
            (t.group.as_str(), "widgets", true),
        ] {
            assert!(
                kinds.contains(&(expected.0.to_string(), expected.1.to_string(), expected.2)),
                "{}: {expected:?} missing",
                t.server
            );
        }
        let apps: Value = t
            .client
            .request(http::Request::get("/apis/apps/v1").body(vec![]).unwrap())
            .await
            .unwrap();
        let names: Vec<&str> = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(
            names.contains(&"deployments/status") && names.contains(&"deployments/scale"),
            "{names:?}"
        );
        let (ok, out, err) = t.kubectl(&["api-resources", &format!("--api-group={}", t.group)]);
        assert!(ok, "{err}");
        assert!(
            out.contains("widgets") && out.contains(&t.short_name) && out.contains("Widget"),
            "{out}"
        );
    }
}

conformance! {
    /// kube-sim establishes a CRD at once; kube-apiserver a moment later (install_widgets
    /// waits for it on both).
    async fn an_established_crd_serves_objects_with_schema_defaults(t) {
        let widgets = install_widgets(t).await;
        let created = widgets
            .create(&PostParams::default(), &widget(t, "w1", 3))
            .await
            .unwrap();
        assert_eq!(created.data["spec"]["color"], "red", "schema default applied");
        assert_eq!(widgets.list(&ListParams::default()).await.unwrap().items.len(), 1);
    }
}

conformance! {
    async fn custom_objects_that_violate_the_schema_are_422_invalid(t) {
        let widgets = install_widgets(t).await;
        let mut bad = widget(t, "bad", 1);
        bad.data = json!({"spec": {"size": "big", "color": "green"}});
        let err = widgets.create(&PostParams::default(), &bad).await.unwrap_err();
        assert_eq!(code(&err), (422, "Invalid".to_string()));
        let message = err.to_string();
        assert!(
            message.contains("spec.size") && message.contains("spec.color"),
            "{message}"
        );
        let mut missing = widget(t, "missing", 1);
        missing.data = json!({"spec": {}});
        let err = widgets.create(&PostParams::default(), &missing).await.unwrap_err();
        assert!(err.to_string().contains("Required value"), "{err}");
        assert!(
            widgets.list(&ListParams::default()).await.unwrap().items.is_empty(),
            "nothing stored"
        );
    }
}

conformance! {
    async fn metadata_is_set_and_generation_moves_only_with_the_spec(t) {
        let widgets = install_widgets(t).await;
        let w = widgets
            .create(&PostParams::default(), &widget(t, "g", 1))
            .await
            .unwrap();
        assert!(w.metadata.uid.is_some() && w.metadata.creation_timestamp.is_some());
        assert_eq!(w.metadata.generation, Some(1));
        let rv1: u64 = w.resource_version().unwrap().parse().unwrap();
        let s = widgets
            .patch_status(
                "g",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Busy"}})),
            )
            .await
            .unwrap();
        let rv2: u64 = s.resource_version().unwrap().parse().unwrap();
        assert!(rv2 > rv1);
        assert_eq!(s.metadata.generation, Some(1), "a status write is not a new generation");
        let s = widgets
            .patch("g", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 2}})))
            .await
            .unwrap();
        assert_eq!(s.metadata.generation, Some(2));
        let s = widgets
            .patch(
                "g",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
            )
            .await
            .unwrap();
        assert_eq!(s.metadata.generation, Some(2), "a metadata change is not a new generation");

        // generateName and namespace defaulting from the URL; rv is cluster-wide.
        let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), &t.ns);
        let mut c = ConfigMap::default();
        c.metadata.generate_name = Some("gen-".into());
        let c = cms.create(&PostParams::default(), &c).await.unwrap();
        assert!(
            c.name_any().starts_with("gen-") && c.name_any().len() == 9,
            "{}",
            c.name_any()
        );
        assert_eq!(c.namespace().as_deref(), Some(t.ns.as_str()));
        let rv3: u64 = c.resource_version().unwrap().parse().unwrap();
        assert!(rv3 > rv2);
    }
}

conformance! {
    async fn the_status_subresource_separates_status_from_the_rest(t) {
        let widgets = install_widgets(t).await;
        widgets.create(&PostParams::default(), &widget(t, "s", 1)).await.unwrap();
        let mut w = widgets.get("s").await.unwrap();
        w.data["status"] = json!({"phase": "Sneaky"});
        w.data["spec"]["size"] = json!(5);
        let replaced = widgets.replace("s", &PostParams::default(), &w).await.unwrap();
        assert_eq!(replaced.data["spec"]["size"], 5);
        assert!(
            replaced.data["status"].is_null(),
            "status changed through the main resource"
        );
        let status = json!({"apiVersion": format!("{}/v1", t.group), "kind": "Widget", "metadata": {"name": "s"},
            "spec": {"size": 99}, "status": {"phase": "Ready", "observed": 5}});
        let updated = widgets
            .patch_status("s", &PatchParams::apply("ctl").force(), &Patch::Apply(&status))
            .await
            .unwrap();
        assert_eq!(updated.data["status"]["phase"], "Ready");
        assert_eq!(updated.data["spec"]["size"], 5, "spec changed through /status");
    }
}
