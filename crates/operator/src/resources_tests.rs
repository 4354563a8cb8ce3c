use super::*;
use api::forecast_model::ForecastModelSpec;
use serde_json::json;

fn fm() -> ForecastModel {
    let spec: ForecastModelSpec = serde_json::from_value(json!({
        "registry": {"trackingUri": "http://mlflow:5000", "credentialsSecret": "creds"},
        "model": {"name": "archive-forecast-rf", "alias": "champion"},
    }))
    .unwrap();
    let mut fm = ForecastModel::new("daily", spec);
    fm.metadata.namespace = Some("team".into());
    fm.metadata.uid = Some("uid-1".into());
    fm
}

#[test]
fn the_registry_proxy_reaches_the_pods_only_from_the_operators_setting() {
    let env_of = |proxy| {
        let d = serde_json::to_value(deployment(&fm(), None, None, proxy)).unwrap();
        d["spec"]["template"]["spec"]["containers"][0]["env"].clone()
    };
    let proxy = |env: &serde_json::Value| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "MLFLOW_PROXY")
            .map(|e| e["value"].clone())
    };
    assert_eq!(proxy(&env_of(None)), None);
    assert_eq!(
        proxy(&env_of(Some("http://proxy.infra:3128"))),
        Some(serde_json::json!("http://proxy.infra:3128"))
    );
    for name in [
        "MLFLOW_PROXY",
        "HTTPS_PROXY",
        "https_proxy",
        "NO_PROXY",
        "ALL_PROXY",
    ] {
        assert!(RESERVED_ENV.contains(&name), "{name} is not reserved");
    }
}

#[test]
fn the_deployment_reads_the_version_from_the_config_map_and_binds_the_pod_ip() {
    let d = serde_json::to_value(deployment(&fm(), None, Some("creds"), None)).unwrap();
    let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    let find = |n: &str| env.iter().find(|e| e["name"] == n).cloned().unwrap();
    assert_eq!(
        find("MODEL_VERSION")["valueFrom"]["configMapKeyRef"]["name"],
        "daily-served-version"
    );
    assert_eq!(
        find("BIND_ADDR")["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    assert_eq!(find("MODEL_ALIAS")["value"], "champion");
    assert_eq!(
        find("MLFLOW_TRACKING_TOKEN")["valueFrom"]["secretKeyRef"]["name"],
        "creds"
    );
    assert_eq!(d["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(d["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(d["spec"]["replicas"], 2);
    // The template is the same whatever version is served: no restarts on a rollout.
    // Only the Restart strategy's marker changes the template (and restarts pods).
    let template = |marker| deployment(&fm(), marker, None, None).spec.template;
    assert_ne!(template(Some("7")), template(None));
    assert_eq!(
        template(Some("7")).metadata.unwrap().annotations.unwrap()[RESTART_ANNOTATION],
        "7"
    );
}

#[test]
fn a_spec_env_name_the_operator_also_sets_replaces_it_instead_of_repeating_it() {
    let mut fm = fm();
    fm.spec.predictor.env = vec![
        EnvVar {
            name: "MODEL_FALLBACK_DIR".into(),
            value: Some("/models".into()),
            ..EnvVar::default()
        },
        EnvVar {
            name: "EXTRA".into(),
            value: Some("1".into()),
            ..EnvVar::default()
        },
    ];
    let d = deployment(&fm, None, None, None);
    let env = d.spec.template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let named = |n: &str| env.iter().filter(|e| e.name == n).collect::<Vec<_>>();
    // The real API server refuses an env list naming a variable twice.
    assert_eq!(named("MODEL_FALLBACK_DIR").len(), 1);
    assert_eq!(
        named("MODEL_FALLBACK_DIR")[0].value.as_deref(),
        Some("/models")
    );
    assert_eq!(named("EXTRA").len(), 1);
}

#[test]
fn predictor_pods_get_no_api_token_and_a_bounded_cache() {
    let d = serde_json::to_value(deployment(&fm(), None, None, None)).unwrap();
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["volumes"][0]["emptyDir"]["sizeLimit"], CACHE_SIZE_LIMIT);
    assert_eq!(
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
}
