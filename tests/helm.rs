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

/// `helm template` with `args`, as documents.
fn rendered(args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(helm_binary())
        .args(["template", "fo", CHART, "--namespace", "forecast-system"])
        .args(args)
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|v: &serde_json::Value| v.is_object())
        .collect()
}

fn of_kind<'a>(docs: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn the_argocd_health_check_renders_into_a_config_map_snippet_on_request() {
    assert!(
        of_kind(&rendered(&[]), "ConfigMap").is_empty(),
        "off by default"
    );
    let docs = rendered(&["--set", "argocd.healthCheck=true"]);
    let maps = of_kind(&docs, "ConfigMap");
    assert_eq!(maps.len(), 1);
    let lua = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/argocd/health.lua"),
    )
    .expect("deploy/argocd/health.lua");
    assert_eq!(
        maps[0]["data"]["resource.customizations.health.forecast.dev_ForecastModel"]
            .as_str()
            .map(str::trim_end),
        Some(lua.trim_end()),
        "the snippet is the shipped check"
    );
}

#[test]
fn with_watch_namespace_the_chart_grants_rights_in_that_namespace_only() {
    let cluster_wide = rendered(&[]);
    assert_eq!(of_kind(&cluster_wide, "ClusterRole").len(), 1);
    assert_eq!(of_kind(&cluster_wide, "NetworkPolicy").len(), 0);

    let docs = rendered(&[
        "--set",
        "watchNamespace=apps",
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "allowedTrackingUris={http://mlflow.mlflow:5000,https://ml.example.com}",
        "--set",
        "allowedPredictorImages={ghcr.io/forecast-operator/}",
        "--set",
        "predictorRegistryProxy=http://proxy.egress:3128",
    ]);
    assert!(
        of_kind(&docs, "ClusterRole").is_empty(),
        "a ClusterRole with watchNamespace"
    );
    assert!(of_kind(&docs, "ClusterRoleBinding").is_empty());
    let roles = of_kind(&docs, "Role");
    let workload = roles
        .iter()
        .find(|r| r["metadata"]["namespace"] == "apps")
        .expect("a Role in the watched namespace");
    let rules = workload["rules"].to_string();
    assert!(
        rules.contains("secrets") && rules.contains("deployments"),
        "{rules}"
    );
    let binding = of_kind(&docs, "RoleBinding")
        .into_iter()
        .find(|b| b["metadata"]["namespace"] == "apps")
        .expect("a RoleBinding in the watched namespace");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["subjects"][0]["namespace"], "forecast-system");
    // Leader election stays in the release namespace.
    assert!(
        roles
            .iter()
            .any(|r| r["rules"].to_string().contains("leases")
                && r["metadata"]["namespace"].is_null())
    );

    let policy = of_kind(&docs, "NetworkPolicy");
    assert_eq!(policy.len(), 1);
    assert_eq!(policy[0]["metadata"]["namespace"], "apps");
    assert_eq!(
        policy[0]["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "forecast-predictor"
    );
    let env =
        of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    let value = |name: &str| {
        env.as_array()
            .and_then(|e| e.iter().find(|v| v["name"] == name))
            .map(|v| v["value"].clone())
    };
    assert_eq!(value("WATCH_NAMESPACE"), Some("apps".into()));
    assert_eq!(
        value("ALLOWED_TRACKING_URIS"),
        Some("http://mlflow.mlflow:5000,https://ml.example.com".into())
    );
    assert_eq!(
        value("ALLOWED_PREDICTOR_IMAGES"),
        Some("ghcr.io/forecast-operator/".into())
    );
    assert_eq!(
        value("PREDICTOR_REGISTRY_PROXY"),
        Some("http://proxy.egress:3128".into())
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
