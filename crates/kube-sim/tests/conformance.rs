//! Conformance of kube-sim with kube-apiserver's documented behaviour, through kube-rs
//! and through the kubectl binary. Each test states a behaviour of the Kubernetes API
//! (API conventions, api-concepts) and checks it as a client sees it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{Controller, watcher};
use kube::{Client, ResourceExt};
use kube_sim::{RunningSim, SimConfig};
use serde_json::{Value, json};

async fn sim() -> (RunningSim, Client) {
    sim_with(SimConfig::default()).await
}

async fn sim_with(config: SimConfig) -> (RunningSim, Client) {
    let sim = kube_sim::start(config).await.expect("kube-sim starts");
    let config = kube::Config::new(sim.url.parse().expect("url"));
    let client = Client::try_from(config).expect("client");
    (sim, client)
}

fn code(e: &kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
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

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.kube-sim.dev"},
        "spec": {
            "group": "test.kube-sim.dev",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
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

fn widget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("test.kube-sim.dev", "v1", "Widget"),
        "widgets",
    )
}

async fn install_widgets(client: &Client) -> Api<DynamicObject> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &widget_crd())
        .await
        .expect("create CRD");
    Api::namespaced_with(client.clone(), "default", &widget_resource())
}

fn widget(name: &str, size: i64) -> DynamicObject {
    let mut w = DynamicObject::new(name, &widget_resource());
    w.data = json!({"spec": {"size": size}});
    w
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
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

fn kubectl(sim: &RunningSim, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", &sim.kubeconfig)
        .output()
        .expect("kubectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn discovery_resolves_built_ins_crd_plurals_and_short_names() {
    let (sim, client) = sim().await;
    install_widgets(&client).await;
    let discovery = kube::discovery::Discovery::new(client.clone())
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
        ("test.kube-sim.dev", "widgets", true),
    ] {
        assert!(
            kinds.contains(&(expected.0.to_string(), expected.1.to_string(), expected.2)),
            "{expected:?} missing"
        );
    }
    let apps: Value = client
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
    let (ok, out, err) = kubectl(&sim, &["api-resources", "--api-group=test.kube-sim.dev"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("widgets") && out.contains("wd") && out.contains("Widget"),
        "{out}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_crd_is_established_at_once_and_its_objects_are_defaulted() {
    let (sim, client) = sim().await;
    let widgets = install_widgets(&client).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("widgets.test.kube-sim.dev").await.unwrap();
    let conditions = crd.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );
    let created = widgets
        .create(&PostParams::default(), &widget("w1", 3))
        .await
        .unwrap();
    assert_eq!(
        created.data["spec"]["color"], "red",
        "schema default applied"
    );
    assert_eq!(
        widgets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    sim.stop().await;
}

#[tokio::test]
async fn custom_objects_that_violate_the_schema_are_422_invalid() {
    let (sim, client) = sim().await;
    let widgets = install_widgets(&client).await;
    let mut bad = widget("bad", 1);
    bad.data = json!({"spec": {"size": "big", "color": "green"}});
    let err = widgets
        .create(&PostParams::default(), &bad)
        .await
        .unwrap_err();
    assert_eq!(code(&err), (422, "Invalid".to_string()));
    let message = err.to_string();
    assert!(
        message.contains("spec.size") && message.contains("spec.color"),
        "{message}"
    );
    let mut missing = widget("missing", 1);
    missing.data = json!({"spec": {}});
    let err = widgets
        .create(&PostParams::default(), &missing)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Required value"), "{err}");
    assert!(
        widgets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing stored"
    );
    sim.stop().await;
}

#[tokio::test]
async fn metadata_is_set_and_generation_moves_only_with_the_spec() {
    let (sim, client) = sim().await;
    let widgets = install_widgets(&client).await;
    let w = widgets
        .create(&PostParams::default(), &widget("g", 1))
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
    assert_eq!(
        s.metadata.generation,
        Some(1),
        "a status write is not a new generation"
    );
    let s = widgets
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
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
    assert_eq!(
        s.metadata.generation,
        Some(2),
        "a metadata change is not a new generation"
    );

    // generateName and namespace defaulting from the URL; rv is cluster-wide.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut c = ConfigMap::default();
    c.metadata.generate_name = Some("gen-".into());
    let c = cms.create(&PostParams::default(), &c).await.unwrap();
    assert!(
        c.name_any().starts_with("gen-") && c.name_any().len() == 9,
        "{}",
        c.name_any()
    );
    assert_eq!(c.namespace().as_deref(), Some("default"));
    let rv3: u64 = c.resource_version().unwrap().parse().unwrap();
    assert!(rv3 > rv2);
    sim.stop().await;
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let (sim, client) = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (name, labels) in [
        ("a", vec![("app", "web"), ("tier", "front")]),
        ("b", vec![("app", "web")]),
        ("c", vec![("app", "db"), ("tier", "back")]),
        ("d", vec![]),
    ] {
        cms.create(&PostParams::default(), &cm(name, &labels))
            .await
            .unwrap();
    }
    let names = |sel: &str, field: &str| {
        let cms = cms.clone();
        let (sel, field) = (sel.to_owned(), field.to_owned());
        async move {
            let mut lp = ListParams::default();
            if !sel.is_empty() {
                lp = lp.labels(&sel);
            }
            if !field.is_empty() {
                lp = lp.fields(&field);
            }
            let mut n: Vec<String> = cms
                .list(&lp)
                .await
                .unwrap()
                .items
                .iter()
                .map(|c| c.name_any())
                .collect();
            n.sort();
            n.join(",")
        }
    };
    assert_eq!(names("app=web", "").await, "a,b");
    assert_eq!(names("app!=web", "").await, "c,d");
    assert_eq!(names("app in (db,web),tier", "").await, "a,c");
    assert_eq!(names("app notin (web)", "").await, "c,d");
    assert_eq!(names("!tier", "").await, "b,d");
    assert_eq!(names("", "metadata.name=c").await, "c");
    assert_eq!(names("app=web", "metadata.name!=a").await, "b");
    assert_eq!(names("", "metadata.namespace=default").await, "a,b,c,d");
    sim.stop().await;
}

#[tokio::test]
async fn lists_page_with_limit_and_continue() {
    let (sim, client) = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..25 {
        cms.create(&PostParams::default(), &cm(&format!("cm-{i:02}"), &[]))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(10);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        if pages == 1 {
            assert_eq!(page.metadata.remaining_item_count, Some(15));
        }
        seen.extend(page.items.iter().map(|c| c.name_any()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 25);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);
    sim.stop().await;
}

#[tokio::test]
async fn a_watch_resumes_after_a_disconnect_without_missing_or_duplicating_events() {
    let (sim, client) = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start_rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let writer = {
        let cms = cms.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                cms.create(&PostParams::default(), &cm(&format!("w-{i}"), &[]))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let mut rv = start_rv;
    let mut added = Vec::new();
    let mut connections = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while added.len() < 40 && Instant::now() < deadline {
        connections += 1;
        // The server closes each watch after one second: a forced disconnect.
        let stream = cms
            .watch(&WatchParams::default().timeout(1), &rv)
            .await
            .unwrap();
        let mut stream = stream.boxed();
        while let Some(event) = stream.try_next().await.unwrap() {
            match event {
                WatchEvent::Added(c) => {
                    rv = c.resource_version().unwrap();
                    added.push(c.name_any());
                }
                WatchEvent::Modified(c) | WatchEvent::Deleted(c) => {
                    rv = c.resource_version().unwrap()
                }
                WatchEvent::Bookmark(b) => rv = b.metadata.resource_version,
                WatchEvent::Error(e) => panic!("watch error {e:?}"),
            }
        }
    }
    writer.await.unwrap();
    assert!(connections >= 2, "the watch was never interrupted");
    assert_eq!(added.len(), 40, "missing or duplicated events: {added:?}");
    assert_eq!(added.iter().collect::<HashSet<_>>().len(), 40);
    sim.stop().await;
}

#[tokio::test]
async fn a_watch_or_continue_from_a_compacted_version_is_410_gone() {
    let (sim, client) = sim_with(SimConfig {
        history_limit: 5,
        ..SimConfig::default()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..3 {
        cms.create(&PostParams::default(), &cm(&format!("p-{i}"), &[]))
            .await
            .unwrap();
    }
    let page = cms.list(&ListParams::default().limit(1)).await.unwrap();
    let old_rv = page.metadata.resource_version.clone().unwrap();
    let token = page.metadata.continue_.clone().unwrap();
    for i in 0..20 {
        cms.create(&PostParams::default(), &cm(&format!("q-{i}"), &[]))
            .await
            .unwrap();
    }
    let mut stream = cms
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected a 410 error event, got {other:?}"),
    }
    let err = cms
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await
        .unwrap_err();
    assert_eq!(code(&err).0, 410);
    sim.stop().await;
}

#[tokio::test]
async fn kube_runtime_watchers_see_changes_with_list_watch_and_streaming_lists() {
    let (sim, client) = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("before", &[("app", "x")]))
        .await
        .unwrap();
    for config in [
        watcher::Config::default().labels("app=x"),
        watcher::Config::default().labels("app=x").streaming_lists(),
    ] {
        let stream = watcher(cms.clone(), config).boxed();
        let seen = Arc::new(std::sync::Mutex::new(HashSet::new()));
        let collector = {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut stream = stream;
                while let Some(e) = stream.next().await {
                    match e.unwrap() {
                        watcher::Event::Apply(c) | watcher::Event::InitApply(c) => {
                            seen.lock().unwrap().insert(c.name_any());
                        }
                        _ => {}
                    }
                }
            })
        };
        let name = format!("after-{}", seen.lock().unwrap().len());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = cms
            .create(
                &PostParams::default(),
                &cm(&format!("{name}-{}", rand_suffix()), &[("app", "x")]),
            )
            .await
            .unwrap();
        cms.create(
            &PostParams::default(),
            &cm(&format!("other-{}", rand_suffix()), &[("app", "y")]),
        )
        .await
        .unwrap();
        let seen2 = seen.clone();
        eventually(
            "watcher sees both labelled objects",
            Duration::from_secs(5),
            move || {
                let seen = seen2.clone();
                async move {
                    let s = seen.lock().unwrap();
                    s.contains("before") && s.iter().any(|n| n.starts_with("after-"))
                }
            },
        )
        .await;
        assert!(
            !seen.lock().unwrap().iter().any(|n| n.starts_with("other-")),
            "selector ignored"
        );
        collector.abort();
    }
    sim.stop().await;
}

fn rand_suffix() -> String {
    uuid_like()
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        Instant::now().elapsed().as_nanos() ^ (std::process::id() as u128) ^ rand_u64() as u128
    )
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(1);
    h.finish()
}

#[tokio::test]
async fn creating_twice_is_409_already_exists_and_a_stale_update_is_409_conflict() {
    let (sim, client) = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first = cms
        .create(&PostParams::default(), &cm("dup", &[]))
        .await
        .unwrap();
    let err = cms
        .create(&PostParams::default(), &cm("dup", &[]))
        .await
        .unwrap_err();
    assert_eq!(code(&err), (409, "AlreadyExists".to_string()));
    let mut newer = first.clone();
    newer.data = Some(BTreeMap::from([("k".to_string(), "v2".to_string())]));
    cms.replace("dup", &PostParams::default(), &newer)
        .await
        .unwrap();
    let mut stale = first.clone();
    stale.data = Some(BTreeMap::from([("k".to_string(), "stale".to_string())]));
    let err = cms
        .replace("dup", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(code(&err), (409, "Conflict".to_string()));
    assert_eq!(cms.get("dup").await.unwrap().data.unwrap()["k"], "v2");
    let err = cms.get("nope").await.unwrap_err();
    assert_eq!(code(&err), (404, "NotFound".to_string()));
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "no-such-namespace");
    assert_eq!(
        code(
            &other
                .create(&PostParams::default(), &cm("x", &[]))
                .await
                .unwrap_err()
        )
        .0,
        404
    );
    sim.stop().await;
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_they_are_removed() {
    let (sim, client) = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
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
    sim.stop().await;
}

#[tokio::test]
async fn merge_json_and_strategic_patches_apply_as_specified() {
    let (sim, client) = sim().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "p"}}, "template": {
            "metadata": {"labels": {"app": "p"}},
            "spec": {"containers": [{"name": "c1", "image": "x:1"}, {"name": "c2", "image": "y:1"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
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
        .patch("p", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c2", "image": "y:2"}]}}}})))
        .await
        .unwrap();
    let containers = strategic.spec.template.spec.unwrap().containers;
    assert_eq!(containers.len(), 2, "strategic merge keeps c1");
    assert_eq!(containers[1].image.as_deref(), Some("y:2"));
    let jp: json_patch_types::Patch = serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 0}, {"op": "add", "path": "/metadata/labels/d", "value": "4"}])).unwrap();
    let patched = deployments
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(patched.labels().get("d").map(String::as_str), Some("4"));
    let bad: json_patch_types::Patch = serde_json::from_value(
        json!([{"op": "test", "path": "/metadata/labels/d", "value": "nope"}]),
    )
    .unwrap();
    let err = deployments
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(bad))
        .await
        .unwrap_err();
    assert_eq!(code(&err).0, 422);
    sim.stop().await;
}

mod json_patch_types {
    pub use json_patch::Patch;
}

#[tokio::test]
async fn server_side_apply_creates_is_idempotent_and_reports_conflicts() {
    let (sim, client) = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
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
        .patch(
            "ssa",
            &PatchParams::apply("other").force(),
            &Patch::Apply(&theirs),
        )
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
    assert_eq!(
        managers,
        HashSet::from(["op".to_string(), "other".to_string()])
    );

    // A field the manager stops applying is removed.
    let fewer = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "labels": {"owner": "op"}}, "data": {}});
    let pruned = cms
        .patch(
            "ssa",
            &PatchParams::apply("op").force(),
            &Patch::Apply(&fewer),
        )
        .await
        .unwrap();
    let data = pruned.data.unwrap_or_default();
    assert!(!data.contains_key("b"), "{data:?}");
    assert_eq!(data["a"], "changed", "a field another manager owns stays");
    let err = cms
        .patch("ssa", &PatchParams::default(), &Patch::Apply(&desired))
        .await
        .unwrap_err();
    assert_eq!(code(&err).0, 400, "apply needs a field manager");
    sim.stop().await;
}

#[tokio::test]
async fn an_apply_naming_an_env_variable_twice_is_refused_as_kube_apiserver_refuses_it() {
    let (sim, client) = sim().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
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
    sim.stop().await;
}

#[tokio::test]
async fn the_status_subresource_separates_status_from_the_rest() {
    let (sim, client) = sim().await;
    let widgets = install_widgets(&client).await;
    widgets
        .create(&PostParams::default(), &widget("s", 1))
        .await
        .unwrap();
    let mut w = widgets.get("s").await.unwrap();
    w.data["status"] = json!({"phase": "Sneaky"});
    w.data["spec"]["size"] = json!(5);
    let replaced = widgets
        .replace("s", &PostParams::default(), &w)
        .await
        .unwrap();
    assert_eq!(replaced.data["spec"]["size"], 5);
    assert!(
        replaced.data["status"].is_null(),
        "status changed through the main resource"
    );
    let status = json!({"apiVersion": "test.kube-sim.dev/v1", "kind": "Widget", "metadata": {"name": "s"},
        "spec": {"size": 99}, "status": {"phase": "Ready", "observed": 5}});
    let updated = widgets
        .patch_status(
            "s",
            &PatchParams::apply("ctl").force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
    assert_eq!(updated.data["status"]["phase"], "Ready");
    assert_eq!(
        updated.data["spec"]["size"], 5,
        "spec changed through /status"
    );
    sim.stop().await;
}

#[tokio::test]
async fn deleting_an_owner_collects_its_dependents_unless_orphaned() {
    let (sim, client) = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // Orphan first: the later background collection proves a collection pass ran after it.
    for policy in ["orphan", "background"] {
        let owner = cms
            .create(&PostParams::default(), &cm(&format!("owner-{policy}"), &[]))
            .await
            .unwrap();
        let mut dep = cm(&format!("dep-{policy}"), &[]);
        dep.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: owner.name_any(),
                uid: owner.uid().unwrap(),
                ..Default::default()
            },
        ]);
        cms.create(&PostParams::default(), &dep).await.unwrap();
        let dp = if policy == "orphan" {
            DeleteParams::orphan()
        } else {
            DeleteParams::background()
        };
        cms.delete(&owner.name_any(), &dp).await.unwrap();
    }
    let cms2 = cms.clone();
    eventually("dependent collected", Duration::from_secs(5), move || {
        let cms = cms2.clone();
        async move { cms.get("dep-background").await.is_err() }
    })
    .await;
    let orphan = cms
        .get("dep-orphan")
        .await
        .expect("orphaned dependent stays");
    assert!(
        orphan
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
    sim.stop().await;
}

#[tokio::test]
async fn deleting_a_crd_or_a_namespace_removes_what_it_holds() {
    let (sim, client) = sim().await;
    let widgets = install_widgets(&client).await;
    widgets
        .create(&PostParams::default(), &widget("x", 1))
        .await
        .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete("widgets.test.kube-sim.dev", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        code(&widgets.list(&ListParams::default()).await.unwrap_err()).0,
        404
    );

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": "temp"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let in_temp: Api<ConfigMap> = Api::namespaced(client.clone(), "temp");
    in_temp
        .create(&PostParams::default(), &cm("c", &[]))
        .await
        .unwrap();
    namespaces
        .delete("temp", &DeleteParams::default())
        .await
        .unwrap();
    let all: Api<ConfigMap> = Api::all(client.clone());
    assert!(
        all.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .all(|c| c.namespace().as_deref() != Some("temp"))
    );
    sim.stop().await;
}

#[derive(Clone)]
struct Ctx {
    widgets: Api<DynamicObject>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ReconcileError(#[from] kube::Error);

async fn reconcile_widget(
    w: Arc<DynamicObject>,
    ctx: Arc<Ctx>,
) -> Result<kube::runtime::controller::Action, ReconcileError> {
    let size = w.data["spec"]["size"].clone();
    let status = json!({"apiVersion": "test.kube-sim.dev/v1", "kind": "Widget", "metadata": {"name": w.name_any()}, "status": {"observed": size}});
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_loop_converges_after_100_concurrent_writes() {
    let (sim, client) = sim().await;
    let widgets = install_widgets(&client).await;
    for i in 0..10 {
        widgets
            .create(&PostParams::default(), &widget(&format!("r{i}"), 0))
            .await
            .unwrap();
    }
    let controller = Controller::new_with(
        widgets.clone(),
        watcher::Config::default(),
        widget_resource(),
    )
    .run(
        reconcile_widget,
        widget_error_policy,
        Arc::new(Ctx {
            widgets: widgets.clone(),
        }),
    )
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
        Duration::from_secs(20),
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
    sim.stop().await;
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn pids_of(pods: &[Pod]) -> Vec<u32> {
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
        .filter_map(|id| id.strip_prefix("kube-sim://")?.parse().ok())
        .collect()
}

fn which(binary: &str) -> std::path::PathBuf {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .output()
        .unwrap();
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_scales_1_3_0_with_real_processes() {
    let images =
        std::collections::HashMap::from([("example.com/http-server:1".to_string(), which("sh"))]);
    let (sim, client) = sim_with(SimConfig {
        images,
        ..SimConfig::default()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut settings = cm("settings", &[]);
    settings.data = Some(BTreeMap::from([(
        "greeting".to_string(),
        "hello".to_string(),
    )]));
    cms.create(&PostParams::default(), &settings).await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{
                "name": "http", "image": "http-server",
                "args": ["-c", "env > env.txt; exec python3 -m http.server 8080 --bind $(POD_IP)"],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}}
                ],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}}
            }]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let ready_pods = |n: usize| {
        let (pods, deployments) = (pods.clone(), deployments.clone());
        move || {
            let (pods, deployments) = (pods.clone(), deployments.clone());
            async move {
                let d = deployments.get("web").await.unwrap();
                let status = d.status.unwrap_or_default();
                let listed = pods
                    .list(&ListParams::default().labels("app=web"))
                    .await
                    .unwrap()
                    .items;
                status.ready_replicas.unwrap_or(0) as usize == n
                    && status.replicas.unwrap_or(0) as usize == n
                    && listed.len() == n
            }
        }
    };
    eventually("1 ready pod", Duration::from_secs(20), ready_pods(1)).await;
    let first = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    let first_pid = pids_of(&first)[0];
    assert!(pid_alive(first_pid));
    // The process got its env from the downward API and the ConfigMap, and serves on its pod IP.
    let pod_name = first[0].name_any();
    let ip = first[0].status.as_ref().unwrap().pod_ip.clone().unwrap();
    let env = std::fs::read_to_string(
        sim.sim
            .workdir
            .join("pods")
            .join(format!("default_{pod_name}"))
            .join("env.txt"),
    )
    .unwrap();
    assert!(
        env.contains(&format!("POD_IP={ip}"))
            && env.contains(&format!("POD_NAME={pod_name}"))
            && env.contains("GREETING=hello"),
        "{env}"
    );
    let through_proxy: String = client
        .request_text(
            http::Request::get(format!(
                "/api/v1/namespaces/default/pods/{pod_name}:8080/proxy/env.txt"
            ))
            .body(vec![])
            .unwrap(),
        )
        .await
        .unwrap();
    assert!(through_proxy.contains("GREETING=hello"));

    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    eventually("3 ready pods", Duration::from_secs(20), ready_pods(3)).await;
    let three = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    let pids = pids_of(&three);
    assert_eq!(pids.len(), 3);
    assert!(
        pids.contains(&first_pid),
        "scaling up must not restart the first pod"
    );
    assert!(pids.iter().all(|p| pid_alive(*p)));
    let ips: HashSet<String> = three
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    assert_eq!(ips.len(), 3, "each pod has its own loopback address");

    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .unwrap();
    eventually("no pods", Duration::from_secs(20), ready_pods(0)).await;
    let pids2 = pids.clone();
    eventually(
        "every process stopped",
        Duration::from_secs(15),
        move || {
            let pids = pids2.clone();
            async move { pids.iter().all(|p| !pid_alive(*p)) }
        },
    )
    .await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_template_change_rolls_the_pods_and_a_crashing_container_is_restarted() {
    let images = std::collections::HashMap::from([("sleeper".to_string(), which("sh"))]);
    let (sim, client) = sim_with(SimConfig {
        images,
        ..SimConfig::default()
    })
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "s"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "s"}}, "template": {
            "metadata": {"labels": {"app": "s"}},
            "spec": {"containers": [{"name": "c", "image": "registry.local/sleeper:2", "args": ["-c", "sleep 300"]}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let names = || {
        let pods = pods.clone();
        async move {
            let mut n: Vec<String> = pods
                .list(&ListParams::default().labels("app=s"))
                .await
                .unwrap()
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(|p| p.name_any())
                .collect();
            n.sort();
            n
        }
    };
    let p2 = pods.clone();
    eventually("2 pods", Duration::from_secs(10), move || {
        let pods = p2.clone();
        async move {
            pods.list(&ListParams::default().labels("app=s"))
                .await
                .unwrap()
                .items
                .len()
                == 2
        }
    })
    .await;
    let before = names().await;
    deployments
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    // A spec change outside the template, then wait until the controller has seen it:
    // it has also seen the metadata change before it.
    let changed = deployments
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"minReadySeconds": 1}})),
        )
        .await
        .unwrap();
    let d2 = deployments.clone();
    eventually(
        "the controller observed the change",
        Duration::from_secs(10),
        move || {
            let (deployments, generation) = (d2.clone(), changed.metadata.generation);
            async move {
                let d = deployments.get("s").await.unwrap();
                d.status.and_then(|s| s.observed_generation) == generation
            }
        },
    )
    .await;
    assert_eq!(
        names().await,
        before,
        "a change outside the template rolled the pods"
    );
    deployments
        .patch("s", &PatchParams::default(), &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "registry.local/sleeper:2", "args": ["-c", "exit 3"]}]}}}})))
        .await
        .unwrap();
    let p3 = pods.clone();
    let before2 = before.clone();
    eventually(
        "pods replaced and restarting",
        Duration::from_secs(20),
        move || {
            let (pods, before) = (p3.clone(), before2.clone());
            async move {
                let list = pods
                    .list(&ListParams::default().labels("app=s"))
                    .await
                    .unwrap()
                    .items;
                let fresh: Vec<&Pod> = list
                    .iter()
                    .filter(|p| !before.contains(&p.name_any()))
                    .collect();
                fresh.len() == 2
                    && fresh.iter().all(|p| {
                        p.status
                            .as_ref()
                            .and_then(|s| s.container_statuses.as_ref())
                            .and_then(|c| c.first())
                            .is_some_and(|c| c.restart_count >= 1)
                    })
            }
        },
    )
    .await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_applies_patches_scales_waits_and_deletes() {
    let (sim, _client) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let crd_file = dir.path().join("crd.json");
    std::fs::write(&crd_file, serde_json::to_vec(&widget_crd()).unwrap()).unwrap();
    let (ok, out, err) = kubectl(
        &sim,
        &["apply", "--server-side", "-f", crd_file.to_str().unwrap()],
    );
    assert!(ok, "{out}{err}");
    let (ok, _, err) = kubectl(
        &sim,
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.test.kube-sim.dev",
            "--timeout=10s",
        ],
    );
    assert!(ok, "{err}");
    let manifest = dir.path().join("w.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: test.kube-sim.dev/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 7\n",
    )
    .unwrap();
    let (ok, out, err) = kubectl(
        &sim,
        &["apply", "--server-side", "-f", manifest.to_str().unwrap()],
    );
    assert!(ok && out.contains("serverside-applied"), "{out}{err}");
    let (ok, out, err) = kubectl(&sim, &["get", "wd"]);
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap_or_default();
    assert!(
        header.contains("NAME")
            && header.contains("SIZE")
            && header.contains("PHASE")
            && header.contains("AGE"),
        "{out}"
    );
    assert!(
        out.lines().nth(1).unwrap_or_default().contains('7'),
        "{out}"
    );
    let (ok, out, _) = kubectl(&sim, &["get", "widget", "w1", "-o", "yaml"]);
    assert!(
        ok && out.contains("size: 7")
            && out.contains("color: red")
            && out.contains("resourceVersion"),
        "{out}"
    );
    let (ok, _, err) = kubectl(
        &sim,
        &[
            "patch",
            "wd",
            "w1",
            "--type=merge",
            "-p",
            "{\"spec\":{\"size\":8}}",
        ],
    );
    assert!(ok, "{err}");
    let (ok, out, _) = kubectl(&sim, &["get", "wd", "w1", "-o", "jsonpath={.spec.size}"]);
    assert!(ok && out == "8", "{out}");
    let (ok, _, err) = kubectl(
        &sim,
        &[
            "patch",
            "wd",
            "w1",
            "--type=merge",
            "-p",
            "{\"spec\":{\"size\":\"x\"}}",
        ],
    );
    assert!(!ok && err.contains("Invalid"), "{err}");

    let deployment = dir.path().join("d.yaml");
    std::fs::write(&deployment, "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: nginx\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: nginx}\n  template:\n    metadata:\n      labels: {app: nginx}\n    spec:\n      containers:\n      - {name: nginx, image: 'nginx:1'}\n").unwrap();
    let (ok, out, err) = kubectl(&sim, &["create", "-f", deployment.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = kubectl(&sim, &["create", "-f", deployment.to_str().unwrap()]);
    assert!(!ok && err.contains("AlreadyExists"), "{err}");
    let (ok, _, err) = kubectl(&sim, &["scale", "deployment", "nginx", "--replicas=3"]);
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl(
        &sim,
        &[
            "wait",
            "--for=condition=Available",
            "deployment/nginx",
            "--timeout=15s",
        ],
    );
    assert!(ok, "{err}");
    let (ok, out, _) = kubectl(&sim, &["get", "deploy", "nginx"]);
    assert!(ok && out.contains("3/3"), "{out}");
    let (ok, out, _) = kubectl(&sim, &["get", "pods", "-l", "app=nginx", "-o", "name"]);
    assert!(ok && out.lines().count() == 3, "{out}");
    // kubectl's generators send protobuf.
    let (ok, _, err) = kubectl(&sim, &["create", "configmap", "c1", "--from-literal=a=b"]);
    assert!(ok, "{err}");
    let (ok, out, err) = kubectl(
        &sim,
        &["get", "configmap", "c1", "-o", "jsonpath={.data.a}"],
    );
    assert!(ok && out == "b", "{out}{err}");
    let (ok, _, err) = kubectl(&sim, &["delete", "deployment", "nginx"]);
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl(
        &sim,
        &[
            "wait",
            "--for=delete",
            "pod",
            "-l",
            "app=nginx",
            "--timeout=15s",
        ],
    );
    assert!(ok, "{err}");
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_writes_a_kubeconfig_runs_mapped_images_and_stops_them_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--run")
        .arg(format!("busybox={}", which("sh").display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let kc = kubeconfig.clone();
    eventually("kubeconfig written", Duration::from_secs(10), move || {
        let kc = kc.clone();
        async move { kc.is_file() }
    })
    .await;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
        "spec": {"containers": [{"name": "c", "image": "docker.io/library/busybox:1.36", "args": ["-c", "sleep 600"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let p2 = pods.clone();
    eventually(
        "the pod runs a process",
        Duration::from_secs(10),
        move || {
            let pods = p2.clone();
            async move { pods_have_pid(&pods).await }
        },
    )
    .await;
    let pid = pids_of(&[pods.get("sleeper").await.unwrap()])[0];
    assert!(pid_alive(pid));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(!pid_alive(pid), "the pod's process outlived kube-sim");
}

async fn pods_have_pid(pods: &Api<Pod>) -> bool {
    pods.get("sleeper")
        .await
        .map(|p| !pids_of(&[p]).is_empty())
        .unwrap_or(false)
}
