//! What real clients send that is not JSON, and field validation as kube-apiserver does it:
//! kubectl's generators (protobuf bodies), `kubectl scale` and `rollout restart`, a client
//! that accepts only protobuf, and `fieldValidation` Strict / Warn / Ignore.

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use kube_sim::{RunningSim, SimConfig};
use serde_json::{Value, json};

async fn sim() -> (RunningSim, Client) {
    let sim = kube_sim::start(SimConfig::default())
        .await
        .expect("kube-sim starts");
    let client =
        Client::try_from(kube::Config::new(sim.url.parse().expect("url"))).expect("client");
    (sim, client)
}

/// kubectl's exit status, stdout and stderr.
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

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write manifest");
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_generators_scale_and_rollout_restart_work() {
    let (sim, client) = sim().await;
    for args in [
        vec!["create", "namespace", "team"],
        vec![
            "-n",
            "team",
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=token=s3cret",
        ],
        vec![
            "-n",
            "team",
            "create",
            "configmap",
            "settings",
            "--from-literal=greeting=hello",
        ],
        vec![
            "-n",
            "team",
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=1",
        ],
    ] {
        let (ok, out, err) = kubectl(&sim, &args);
        assert!(ok, "kubectl {args:?}: {out}{err}");
    }
    Api::<Namespace>::all(client.clone())
        .get("team")
        .await
        .expect("namespace");
    let secret = Api::<Secret>::namespaced(client.clone(), "team")
        .get("creds")
        .await
        .expect("secret");
    let token = secret
        .data
        .and_then(|d| d.get("token").cloned())
        .expect("token");
    assert_eq!(token.0, b"s3cret");
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "team")
        .get("settings")
        .await
        .expect("cm");
    assert_eq!(
        cm.data
            .unwrap_or_default()
            .get("greeting")
            .map(String::as_str),
        Some("hello")
    );

    let deployments = Api::<Deployment>::namespaced(client.clone(), "team");
    let before = deployments.get("web").await.expect("deployment");
    let (ok, _, err) = kubectl(
        &sim,
        &["-n", "team", "scale", "deployment", "web", "--replicas=3"],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl(
        &sim,
        &["-n", "team", "rollout", "restart", "deployment", "web"],
    );
    assert!(ok, "{err}");
    let after = deployments.get("web").await.expect("deployment");
    assert_eq!(after.spec.replicas, Some(3));
    let annotations = after
        .spec
        .template
        .metadata
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    assert!(
        annotations.contains_key("kubectl.kubernetes.io/restartedAt"),
        "{annotations:?}"
    );
    assert!(after.metadata.generation > before.metadata.generation);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_accepts_only_protobuf_is_answered_in_protobuf() {
    let (sim, client) = sim().await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds", "labels": {"a": "b"}},
        "stringData": {"token": "s3cret"},
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .expect("create");
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/namespaces/default/secrets/creds", sim.url);
    let as_json: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    let answer = http
        .get(&url)
        .header("accept", kube_sim::protobuf::MEDIA_TYPE)
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.headers()["content-type"].to_str().unwrap(),
        kube_sim::protobuf::MEDIA_TYPE
    );
    let bytes = answer.bytes().await.unwrap();
    assert_eq!(
        kube_sim::protobuf::decode(&bytes).expect("decodes"),
        as_json
    );
    // A watch has no protobuf form here: 406, as for kinds without one.
    let watch = http
        .get(format!(
            "{}/api/v1/namespaces/default/secrets?watch=true",
            sim.url
        ))
        .header("accept", kube_sim::protobuf::MEDIA_TYPE)
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status().as_u16(), 406);
    sim.stop().await;
}

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.test.kube-sim.dev}
spec:
  group: test.kube-sim.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              rollout: {type: object, properties: {strategy: {type: string}}}
"#;

const WIDGET: &str = r#"
apiVersion: test.kube-sim.dev/v1
kind: Widget
metadata: {name: w1, namespace: default}
spec:
  size: 3
  bogus: 1
  rollout: {strategy: Reload, canary: {pods: 1}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_fail_strict_warn_under_warn_and_are_dropped_under_ignore() {
    let (sim, _client) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let crd = write(dir.path(), "crd.yaml", WIDGET_CRD);
    let (ok, _, err) = kubectl(&sim, &["apply", "--server-side", "-f", &crd]);
    assert!(ok, "{err}");
    let widget = write(dir.path(), "w.yaml", WIDGET);

    // kubectl validates strictly by default: the request fails naming each field.
    for verb in [vec!["apply", "--server-side"], vec!["create"]] {
        let args: Vec<&str> = verb
            .iter()
            .copied()
            .chain(["-f", widget.as_str()])
            .collect();
        let (ok, _, err) = kubectl(&sim, &args);
        assert!(!ok, "kubectl {args:?} accepted unknown fields");
        assert!(
            err.contains("unknown field \"spec.bogus\"")
                && err.contains("unknown field \"spec.rollout.canary\""),
            "{err}"
        );
    }
    let (_, out, _) = kubectl(&sim, &["get", "widgets", "-o", "name"]);
    assert!(out.trim().is_empty(), "a refused object was stored: {out}");

    // Warn: stored without the unknown fields, one warning each.
    let (ok, _, err) = kubectl(
        &sim,
        &["apply", "--server-side", "--validate=warn", "-f", &widget],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("Warning: unknown field \"spec.bogus\""),
        "{err}"
    );
    assert!(
        err.contains("Warning: unknown field \"spec.rollout.canary\""),
        "{err}"
    );
    let (_, out, _) = kubectl(&sim, &["get", "widget", "w1", "-o", "jsonpath={.spec}"]);
    let spec: Value = serde_json::from_str(&out).expect("spec");
    assert_eq!(spec, json!({"size": 3, "rollout": {"strategy": "Reload"}}));

    // Ignore: accepted silently, dropped all the same; for built-in kinds too.
    let (ok, _, err) = kubectl(
        &sim,
        &["apply", "--server-side", "--validate=ignore", "-f", &widget],
    );
    assert!(ok && !err.contains("Warning"), "{err}");
    let cm = write(
        dir.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: default, colour: red}\ndata: {a: b}\nextra: 1\n",
    );
    let (ok, _, err) = kubectl(&sim, &["apply", "--server-side", "-f", &cm]);
    assert!(
        !ok && err.contains("unknown field \"metadata.colour\"")
            && err.contains("unknown field \"extra\""),
        "{err}"
    );
    let (ok, _, err) = kubectl(
        &sim,
        &["apply", "--server-side", "--validate=ignore", "-f", &cm],
    );
    assert!(ok, "{err}");
    let url = format!("{}/api/v1/namespaces/default/configmaps/settings", sim.url);
    let stored: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(stored["data"], json!({"a": "b"}));
    assert!(
        stored.get("extra").is_none() && stored["metadata"].get("colour").is_none(),
        "{stored}"
    );
    sim.stop().await;
}
