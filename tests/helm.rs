//! The Helm chart with the real helm (fetched by `cargo xtask test` from the npm registry):
//! lint, then install, upgrade and uninstall against kube-sim (or the KUBECONFIG cluster),
//! checked through the Kubernetes API as a platform team would check a release.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use forecast_e2e::cluster::{TestCluster, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::ListParams;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/forecast-operator");

fn helm_binary() -> PathBuf {
    std::env::var_os("FORECAST_HELM").map(PathBuf::from).expect(
        "FORECAST_HELM is not set: run the tests with `cargo xtask test`, which fetches helm",
    )
}

/// Runs helm against the cluster; its stdout, or a panic with its stderr.
fn helm(cluster: &TestCluster, args: &[&str]) -> String {
    let out = Command::new(helm_binary())
        .args(args)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("forecast-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("forecast-helm-config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("forecast-helm-data"),
        )
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The release's revision Secrets helm keeps (`sh.helm.release.v1.<release>.v<N>`).
async fn revisions(cluster: &TestCluster, release: &str) -> Vec<String> {
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let listed = secrets
        .list(&ListParams::default().labels(&format!("owner=helm,name={release}")))
        .await
        .expect("list secrets");
    let mut names: Vec<String> = listed
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    names.sort();
    names
}

#[test]
fn the_chart_passes_helm_lint() {
    let out = Command::new(helm_binary())
        .args(["lint", CHART])
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_upgrades_and_uninstalls_the_operator() {
    let cluster = TestCluster::start_bare().await;
    let ns = cluster.namespace.clone();
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), &ns);
    let name = "fo-forecast-operator";

    let mut install = vec!["install", "fo", CHART, "-n", &ns];
    if forecast_e2e::cluster::real_cluster() {
        // The other tests applied the CRD with their own field manager.
        install.push("--force-conflicts");
    }
    helm(&cluster, &install);
    let installed = deployments
        .get(name)
        .await
        .expect("the operator Deployment");
    assert_eq!(installed.spec.replicas, Some(2));
    let image = installed
        .spec
        .template
        .spec
        .as_ref()
        .map(|s| s.containers[0].image.clone());
    assert!(
        image
            .flatten()
            .is_some_and(|i| i.contains("forecast-operator")),
        "the chart's image"
    );
    Api::<ServiceAccount>::namespaced(cluster.client.clone(), &ns)
        .get(name)
        .await
        .expect("its ServiceAccount");
    Api::<ClusterRole>::all(cluster.client.clone())
        .get(name)
        .await
        .expect("its ClusterRole");
    Api::<CustomResourceDefinition>::all(cluster.client.clone())
        .get("forecastmodels.forecast.dev")
        .await
        .expect("the CRD");
    assert_eq!(
        revisions(&cluster, "fo").await,
        vec!["sh.helm.release.v1.fo.v1"]
    );
    let status = helm(&cluster, &["status", "fo", "-n", &ns]);
    assert!(status.contains("STATUS: deployed"), "{status}");

    helm(
        &cluster,
        &[
            "upgrade",
            "fo",
            CHART,
            "-n",
            &ns,
            "--set",
            "replicaCount=1",
            "--set",
            "logLevel=debug",
        ],
    );
    let upgraded = deployments
        .get(name)
        .await
        .expect("the operator Deployment");
    assert_eq!(upgraded.spec.replicas, Some(1));
    let env = upgraded
        .spec
        .template
        .spec
        .and_then(|s| s.containers.first()?.env.clone());
    let log = env
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.name == "RUST_LOG")
        .and_then(|e| e.value);
    assert_eq!(log.as_deref(), Some("debug"));
    assert_eq!(
        revisions(&cluster, "fo").await,
        vec!["sh.helm.release.v1.fo.v1", "sh.helm.release.v1.fo.v2"]
    );
    let history = helm(&cluster, &["history", "fo", "-n", &ns]);
    assert!(
        history.contains("superseded") && history.contains("deployed"),
        "{history}"
    );

    helm(&cluster, &["uninstall", "fo", "-n", &ns]);
    wait_until(
        "the release's objects are gone",
        Duration::from_secs(20),
        || async { deployments.get_opt(name).await.ok().flatten().is_none() },
    )
    .await;
    assert!(
        revisions(&cluster, "fo").await.is_empty(),
        "release Secrets remain"
    );
    assert!(
        Api::<ClusterRole>::all(cluster.client.clone())
            .get_opt(name)
            .await
            .expect("get")
            .is_none()
    );
    // helm never deletes the CRDs of a chart's crds/ (that would delete every ForecastModel).
    Api::<CustomResourceDefinition>::all(cluster.client.clone())
        .get("forecastmodels.forecast.dev")
        .await
        .expect("the CRD stays");
    cluster.stop().await;
}
