//! What only kube-sim is asked to do, or can be made to do on demand: compacting its
//! history to a few events (kube-apiserver compacts every five minutes) and running as
//! its own binary.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Client;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube_sim::SimConfig;
use serde_json::json;

use crate::{Target, cm, code, eventually, pid_alive, pids_of, shell};

#[tokio::test]
async fn a_watch_or_continue_from_a_compacted_version_is_410_gone() {
    let t = Target::sim_with(SimConfig {
        history_limit: 5,
        ..SimConfig::default()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), &t.ns);
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
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_writes_a_kubeconfig_runs_mapped_images_and_stops_them_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--run")
        .arg(format!("busybox={}", shell().display()))
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
            async move {
                pods.get("sleeper")
                    .await
                    .map(|p| !pids_of(&[p]).is_empty())
                    .unwrap_or(false)
            }
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
