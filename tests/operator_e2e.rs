//! The operator end to end: a real MLflow server, kube-sim (or a real cluster), the
//! forecast-operator binary and real predictor processes. Every check goes through the
//! Kubernetes API and the pods' own `/model/info`, as a user would check.

use api::reasons;
use std::time::{Duration, Instant};

use forecast_e2e::cluster::{Operator, TestCluster, wait_until};
use forecast_e2e::fleet::*;
use forecast_e2e::*;
use kube::ResourceExt;
use kube::api::DeleteParams;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alias_move_rolls_every_pod_in_place_without_failing_a_request() {
    let Setup {
        model,
        v1,
        cluster,
        operator,
        fallback,
    } = daily_serving_v1("fm-alias", 21, 3, json!({}), &[]).await;
    let status = cluster.status("daily").await;
    assert_eq!(status["selector"], "alias:champion");
    assert_eq!(status["desiredVersion"], v1.as_str());
    let before = identities(&cluster, "daily").await;

    // Predictions through the Service, all the way through the rollout.
    let traffic = Traffic::start(&cluster, "daily");

    let v2 = train_and_register(&model, 22, &[]).unwrap();
    move_champion(&model, &v2);
    // How fast is `cargo xtask bench-operator`'s to measure; here only that it happens.
    wait_until(
        "every pod on the new version",
        Duration::from_secs(30),
        || all_on(&cluster, "daily", &v2, 3),
    )
    .await;
    ready_on(&cluster, "daily", &v2, 3).await;
    let answered = traffic.stop().await;

    assert_eq!(
        identities(&cluster, "daily").await,
        before,
        "a pod was replaced or its process restarted"
    );
    assert_eq!(answered.failed, 0, "predictions failed during the rollout");
    assert!(answered.ok > 10);
    let status = cluster.status("daily").await;
    assert_eq!(status["previousVersion"], v1.as_str());
    assert_eq!(status["updatedReplicas"], 3);
    assert!(status["lastRolloutDuration"].as_str().is_some());
    wait_until("Reconciling=False", Duration::from_secs(30), || async {
        cluster.condition("daily", "Reconciling").await.map(|c| c.0) == Some("False".into())
    })
    .await;
    cluster.capture_fixture("daily", "rolled-out").await;
    let (code, said) = cluster.forecastctl_wait("daily", "30s");
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("daily: Current"), "{said}");
    let (ok, said) = cluster.kubectl_wait("daily", "Ready");
    assert!(ok, "{said}");
    cluster.wait_for_events(reasons::ROLLOUT_STARTED, 1).await;
    cluster.wait_for_events(reasons::ROLLOUT_SUCCEEDED, 1).await;
    cluster.wait_for_events(reasons::POD_RELOADED, 3).await;
    let metrics = get_text(&format!("{}/metrics", operator.metrics_url))
        .await
        .unwrap();
    assert!(
        metrics.contains("forecast_operator_rollouts_total{result=\"succeeded\"}"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!("forecast_operator_served_version{{namespace=\"{}\",name=\"daily\",model=\"{model}\"}} {v2}", cluster.namespace)), "{metrics}");

    // A pod started after the rollout starts on the served version, not the template's.
    cluster
        .apply_fm(
            "daily",
            spec(
                &model,
                json!({"alias": "champion"}),
                4,
                fallback.path(),
                json!({}),
            ),
        )
        .await;
    wait_until(
        "the fourth pod serves the new version",
        Duration::from_secs(30),
        || all_on(&cluster, "daily", &v2, 4),
    )
    .await;
    let after_scale = identities(&cluster, "daily").await;
    for (uid, id) in &before {
        assert_eq!(
            after_scale.get(uid),
            Some(id),
            "scaling restarted an existing pod"
        );
    }
    drop(operator);
    cluster.stop().await;
}

async fn register_corrupt(model: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt");
    write_corrupt_model(&corrupt, 99).unwrap();
    register_raw(model, &corrupt).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_rollout_reverts_switched_pods_marks_the_version_failed_and_recovers() {
    let Setup {
        model,
        v1,
        cluster,
        operator,
        fallback,
    } = set_up("fm-fail", 31, &[]).await;
    // The smoke input has 3 values for an 8-feature model: a pod that loads the new
    // version then fails its smoke prediction, after it switched.
    let rollout = json!({"rollout": {"maxConcurrent": 1, "smokeInput": [1.0, 2.0, 3.0], "verifyTimeout": "20s"}});
    cluster
        .apply_fm(
            "daily",
            spec(
                &model,
                json!({"alias": "champion"}),
                3,
                fallback.path(),
                rollout,
            ),
        )
        .await;
    ready_on(&cluster, "daily", &v1, 3).await;

    let v2 = train_and_register(&model, 32, &["--alias", "champion"]).unwrap();
    degraded_with(
        &cluster,
        "daily",
        reasons::ROLLOUT_FAILED,
        Duration::from_secs(30),
    )
    .await;
    let status = cluster.status("daily").await;
    assert_eq!(status["failedVersions"], json!([v2]));
    assert_eq!(status["servedVersion"], v1.as_str());
    assert!(
        all_on(&cluster, "daily", &v1, 3).await,
        "switched pods were not reverted: {:?}",
        cluster.pod_versions("daily").await
    );
    assert_eq!(
        cluster.condition("daily", "Stalled").await,
        Some(("True".into(), reasons::ROLLOUT_FAILED.into()))
    );
    cluster.capture_fixture("daily", "rollout-failed").await;
    let (code, said) = cluster.forecastctl_wait("daily", "30s");
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("daily: Failed: RolloutFailed"), "{said}");
    let (ok, said) = cluster.kubectl_wait("daily", "Stalled");
    assert!(ok, "{said}");
    cluster.wait_for_events(reasons::ROLLED_BACK, 1).await;
    assert_eq!(cluster.wait_for_events(reasons::ROLLOUT_FAILED, 1).await, 1);
    // Not retried while the registry still says v2 (polled every 2 s).
    after_reconciles(&operator, 3).await;
    assert_eq!(
        cluster.events(reasons::ROLLOUT_FAILED).await,
        1,
        "the failed version was retried"
    );
    assert!(all_on(&cluster, "daily", &v1, 3).await);

    // Without the smoke input, a version with corrupt artifacts fails on the first pod.
    cluster
        .apply_fm(
            "daily",
            spec(
                &model,
                json!({"alias": "champion"}),
                3,
                fallback.path(),
                json!({}),
            ),
        )
        .await;
    let corrupt = register_corrupt(&model).await;
    move_champion(&model, &corrupt);
    wait_until(
        "the corrupt version is listed as failed",
        Duration::from_secs(30),
        || async {
            cluster.status("daily").await["failedVersions"]
                .as_array()
                .is_some_and(|f| f.iter().any(|v| v == corrupt.as_str()))
        },
    )
    .await;
    assert!(all_on(&cluster, "daily", &v1, 3).await);
    let (_, reason) = cluster.condition("daily", "Degraded").await.unwrap();
    assert_eq!(reason, reasons::ROLLOUT_FAILED);

    // Moving the alias to a good version recovers.
    let v4 = train_and_register(&model, 34, &["--alias", "champion"]).unwrap();
    ready_on(&cluster, "daily", &v4, 3).await;
    wait_until("Degraded=False", Duration::from_secs(20), || async {
        cluster
            .condition("daily", "Degraded")
            .await
            .is_some_and(|(s, _)| s == "False")
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_spec_the_schema_lets_through_is_reported_and_fixing_it_recovers() {
    use k8s_openapi::api::apps::v1::Deployment;

    let Setup {
        model,
        v1,
        cluster,
        operator: _operator,
        fallback,
    } = set_up("fm-invalid", 111, &[]).await;
    // `0s` matches the schema's duration pattern but would poll without pause.
    let mut s = spec(
        &model,
        json!({"alias": "champion"}),
        1,
        fallback.path(),
        json!({}),
    );
    s["pollInterval"] = json!("0s");
    cluster.apply_fm("daily", s.clone()).await;
    degraded_with(
        &cluster,
        "daily",
        reasons::INVALID_SPEC,
        Duration::from_secs(20),
    )
    .await;
    let status = cluster.status("daily").await;
    let message = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("spec.pollInterval") && message.contains("1s"),
        "{message}"
    );
    cluster.wait_for_events(reasons::INVALID_SPEC, 1).await;
    // Nothing was deployed for a spec the operator refused.
    let deployments: kube::Api<Deployment> =
        kube::Api::namespaced(cluster.client.clone(), &cluster.namespace);
    assert!(
        deployments
            .get_opt("daily-predictor")
            .await
            .unwrap()
            .is_none()
    );

    // Fixing the spec is all it takes.
    s["pollInterval"] = json!("2s");
    cluster.apply_fm("daily", s).await;
    ready_on(&cluster, "daily", &v1, 1).await;
    assert_eq!(
        cluster.condition("daily", "Degraded").await.map(|(s, _)| s),
        Some("False".to_owned())
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paused_and_pinned_models_are_never_moved() {
    let Setup {
        model,
        v1,
        cluster,
        operator,
        fallback,
    } = set_up("fm-hold", 41, &[]).await;
    cluster
        .apply_fm(
            "paused",
            spec(
                &model,
                json!({"alias": "champion"}),
                2,
                fallback.path(),
                json!({"paused": true}),
            ),
        )
        .await;
    cluster
        .apply_fm(
            "pinned",
            spec(
                &model,
                json!({"version": v1}),
                2,
                fallback.path(),
                json!({}),
            ),
        )
        .await;
    ready_on(&cluster, "pinned", &v1, 2).await;
    ready_on(&cluster, "paused", &v1, 2).await;
    cluster.capture_fixture("paused", "paused").await;
    let v2 = train_and_register(&model, 42, &["--alias", "champion"]).unwrap();
    wait_until(
        "the paused model sees the new desired version",
        Duration::from_secs(20),
        || async { cluster.status("paused").await["desiredVersion"] == v2.as_str() },
    )
    .await;
    // The reconcile that wrote v2 as desired held the paused model; both models are
    // reconciled again (every 2 s) before checking that nothing moved.
    after_reconciles(&operator, 4).await;
    assert!(all_on(&cluster, "paused", &v1, 2).await, "pause overridden");
    assert!(all_on(&cluster, "pinned", &v1, 2).await, "pin overridden");
    assert_eq!(cluster.status("paused").await["servedVersion"], v1.as_str());
    assert_eq!(cluster.status("pinned").await["servedVersion"], v1.as_str());
    // Unpausing rolls forward.
    cluster
        .apply_fm(
            "paused",
            spec(
                &model,
                json!({"alias": "champion"}),
                2,
                fallback.path(),
                json!({"paused": false}),
            ),
        )
        .await;
    ready_on(&cluster, "paused", &v2, 2).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_killed_mid_rollout_converges_after_restart() {
    let Setup {
        model,
        v1,
        cluster,
        mut operator,
        fallback: _fallback,
    } = daily_serving_v1("fm-restart", 51, 3, json!({}), &[]).await;
    operator.kill();

    // What a crash after the first pod's reload leaves: one pod on v2, the rest on v1.
    let v2 = train_and_register(&model, 52, &["--alias", "champion"]).unwrap();
    let secret: k8s_openapi::api::core::v1::Secret =
        kube::Api::namespaced(cluster.client.clone(), &cluster.namespace)
            .get("daily-admin-token")
            .await
            .unwrap();
    let token = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();
    let first = cluster.pods("daily").await[0].clone();
    let ip = first.status.unwrap().pod_ip.unwrap();
    let (status, body) = post_json(
        &http(),
        &format!("http://{ip}:8080/reload-model"),
        &json!({"version": v2}),
        Some(&token),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let mixed: Vec<Option<String>> = cluster
        .pod_versions("daily")
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert!(
        mixed.contains(&Some(v1.clone())) && mixed.contains(&Some(v2.clone())),
        "{mixed:?}"
    );

    let _restarted = Operator::start(&cluster, &[]);
    ready_on(&cluster, "daily", &v2, 3).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_leader_of_two_replicas_acts_and_the_other_takes_over() {
    let model = unique_name("fm-leader");
    let v1 = train_and_register(&model, 61, &["--alias", "champion"]).unwrap();
    let cluster = TestCluster::start().await;
    let mut first = Operator::start(&cluster, &[("POD_NAME", "replica-a")]);
    const LEADER: &str = "forecast_operator_leader";
    wait_until("replica-a leads", Duration::from_secs(10), || async {
        operator_metric(&first, LEADER).await == 1.0
    })
    .await;
    let second = Operator::start(&cluster, &[("POD_NAME", "replica-b")]);
    let fallback = tempfile::tempdir().unwrap();
    cluster
        .apply_fm(
            "daily",
            spec(
                &model,
                json!({"alias": "champion"}),
                2,
                fallback.path(),
                json!({}),
            ),
        )
        .await;
    ready_on(&cluster, "daily", &v1, 2).await;
    let lease_holder = || async {
        let lease: k8s_openapi::api::coordination::v1::Lease =
            kube::Api::namespaced(cluster.client.clone(), &cluster.namespace)
                .get("forecast-operator-leader")
                .await
                .unwrap();
        lease.spec.and_then(|s| s.holder_identity)
    };
    assert_eq!(lease_holder().await.as_deref(), Some("replica-a"));
    // The standby is up (it serves its metrics) and does not lead.
    wait_until(
        "replica-b serves its metrics",
        Duration::from_secs(10),
        || async {
            get_text(&format!("{}/metrics", second.metrics_url))
                .await
                .is_ok()
        },
    )
    .await;
    assert_eq!(operator_metric(&second, LEADER).await, 0.0, "two leaders");
    assert_eq!(
        operator_metric(&second, "forecast_operator_reconciles_total{result=\"ok\"}").await,
        0.0,
        "the standby reconciled"
    );
    // A delivery the Service sends to the standby is relayed to the leader, which answers
    // (here: it refuses an unsigned delivery, as only the leader would say).
    let delivery = json!({"entity": "model_version_alias", "action": "created",
        "data": {"name": model, "alias": "champion", "version": "1"}});
    let answer = http()
        .post(format!("{}/webhooks/mlflow", second.webhook_url))
        .json(&delivery)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let text = answer.text().await.unwrap();
    assert!(text.contains("unsigned deliveries are refused"), "{text}");
    assert_eq!(
        operator_metric(
            &second,
            "forecast_operator_webhooks_total{result=\"relayed\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        operator_metric(
            &first,
            "forecast_operator_webhooks_total{result=\"rejected\"}"
        )
        .await,
        1.0
    );

    // The leader dies without releasing; the standby takes over after the lease expires.
    first.kill();
    wait_until("replica-b leads", Duration::from_secs(15), || async {
        lease_holder().await.as_deref() == Some("replica-b")
            && operator_metric(&second, LEADER).await == 1.0
    })
    .await;
    let v2 = train_and_register(&model, 62, &["--alias", "champion"]).unwrap();
    ready_on(&cluster, "daily", &v2, 2).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_the_forecast_model_removes_everything_it_owns() {
    let Setup {
        cluster,
        operator,
        fallback: _fallback,
        ..
    } = daily_serving_v1("fm-delete", 71, 2, json!({}), &[]).await;
    let served = format!(
        "forecast_operator_served_version{{namespace=\"{}\",name=\"daily\"",
        cluster.namespace
    );
    let metrics_url = format!("{}/metrics", operator.metrics_url);
    assert!(get_text(&metrics_url).await.unwrap().contains(&served));
    cluster
        .fms()
        .delete("daily", &DeleteParams::default())
        .await
        .unwrap();
    let client = cluster.client.clone();
    let ns = cluster.namespace.clone();
    wait_until(
        "owned objects and pods are gone",
        Duration::from_secs(20),
        || {
            let (client, ns) = (client.clone(), ns.clone());
            let cluster = &cluster;
            async move {
                let deploy: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
                    kube::Api::namespaced(client.clone(), &ns);
                let svc: kube::Api<k8s_openapi::api::core::v1::Service> =
                    kube::Api::namespaced(client.clone(), &ns);
                let cm: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
                    kube::Api::namespaced(client.clone(), &ns);
                let sec: kube::Api<k8s_openapi::api::core::v1::Secret> =
                    kube::Api::namespaced(client.clone(), &ns);
                deploy.get_opt("daily-predictor").await.unwrap().is_none()
                    && svc.get_opt("daily-predictor").await.unwrap().is_none()
                    && cm.get_opt("daily-served-version").await.unwrap().is_none()
                    && sec.get_opt("daily-admin-token").await.unwrap().is_none()
                    && cluster.pods("daily").await.is_empty()
            }
        },
    )
    .await;
    // Its series leave the operator's metrics with it.
    wait_until(
        "the deleted ForecastModel's series are gone",
        Duration::from_secs(20),
        || async {
            get_text(&metrics_url)
                .await
                .is_ok_and(|text| !text.contains(&served))
        },
    )
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edits_and_deletions_of_owned_objects_are_put_back() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Secret, Service};
    use kube::api::{Patch, PatchParams};

    let Setup {
        model,
        v1,
        cluster,
        operator: _operator,
        fallback: _fallback,
    } = daily_serving_v1("fm-drift", 81, 2, json!({}), &[]).await;
    let deployments: kube::Api<Deployment> =
        kube::Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let services: kube::Api<Service> =
        kube::Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let secrets: kube::Api<Secret> =
        kube::Api::namespaced(cluster.client.clone(), &cluster.namespace);

    // `kubectl scale` of the owned Deployment: the ForecastModel's replicas win.
    deployments
        .patch(
            "daily-predictor",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    wait_until(
        "the Deployment is back to the ForecastModel's 2 replicas",
        Duration::from_secs(20),
        || async {
            let d = deployments.get("daily-predictor").await.unwrap();
            d.spec.replicas == Some(2)
        },
    )
    .await;
    ready_on(&cluster, "daily", &v1, 2).await;

    // A deleted Service is recreated.
    services
        .delete("daily-predictor", &DeleteParams::default())
        .await
        .unwrap();
    wait_until(
        "the Service is recreated",
        Duration::from_secs(20),
        || async {
            services
                .get_opt("daily-predictor")
                .await
                .unwrap()
                .is_some_and(|s| s.metadata.deletion_timestamp.is_none())
        },
    )
    .await;
    let rows = json!([archive_row(3)]);
    wait_until(
        "predictions through the recreated Service",
        Duration::from_secs(20),
        || async { cluster.predict_via_service("daily", &rows).await.is_ok() },
    )
    .await;

    // A deleted admin-token Secret: a new pod cannot start without it, so it is recreated
    // with the token the running pod holds...
    let token = |s: Secret| {
        s.data
            .and_then(|d| d.get("token").map(|t| t.0.clone()))
            .unwrap_or_default()
    };
    let before = token(secrets.get("daily-admin-token").await.unwrap());
    secrets
        .delete("daily-admin-token", &DeleteParams::default())
        .await
        .unwrap();
    let first_pod = cluster.pods("daily").await[0].name_any();
    cluster
        .pods_api()
        .delete(&first_pod, &DeleteParams::default())
        .await
        .unwrap();
    ready_on(&cluster, "daily", &v1, 2).await;
    let after = token(secrets.get("daily-admin-token").await.unwrap());
    assert!(!before.is_empty());
    assert_eq!(before, after, "the recreated Secret keeps the token");
    // ...so the old and the new pod both accept the next rollout.
    let v2 = train_and_register(&model, 82, &[]).unwrap();
    move_champion(&model, &v2);
    ready_on(&cluster, "daily", &v2, 2).await;
    assert!(
        cluster.status("daily").await["failedVersions"]
            .as_array()
            .is_none_or(|f| f.is_empty())
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_credentials_secret_opens_an_authenticated_registry_to_the_operator_and_pods() {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::PostParams;

    let (auth_uri, user, password) = authenticated_registry();
    let model = unique_name("fm-auth");
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    train(&model_dir, 101).unwrap();
    let register = |extra: &[&str]| {
        let mut args = vec![
            "register",
            "--model-dir",
            model_dir.to_str().unwrap(),
            "--name",
            &model,
        ];
        args.extend_from_slice(extra);
        forecastctl_authenticated(&args, &user, &password).unwrap()
    };
    let out = register(&["--alias", "champion"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v1 = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // Without credentials the registry refuses, and says so.
    let refused = forecastctl_authenticated(&["status", "--name", &model], "", "").unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not authorised"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let cluster = TestCluster::start().await;
    let _operator = Operator::start(&cluster, &[]);
    let secrets: kube::Api<Secret> =
        kube::Api::namespaced(cluster.client.clone(), &cluster.namespace);
    for (name, pass) in [
        ("mlflow-creds", password.as_str()),
        ("wrong-creds", "not-the-password"),
    ] {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"forecast.dev/secret-type": "registry-credentials"}},
            "stringData": {"username": user, "password": pass},
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }
    let fallback = tempfile::tempdir().unwrap();
    let with_credentials = |secret: &str| {
        let mut s = spec(
            &model,
            json!({"alias": "champion"}),
            2,
            fallback.path(),
            json!({}),
        );
        s["registry"] = json!({"trackingUri": auth_uri, "credentialsSecret": secret});
        s
    };

    // The right credentials: the operator resolves the alias and the pods load from the
    // registry (their MLFLOW_TRACKING_USERNAME/PASSWORD come from the same Secret).
    cluster
        .apply_fm("daily", with_credentials("mlflow-creds"))
        .await;
    ready_on(&cluster, "daily", &v1, 2).await;
    for pod in cluster.pods("daily").await {
        let info = cluster.pod_info(&pod.name_any()).await.unwrap();
        assert_eq!(info["origin"], "registry", "{info}");
    }
    let out = register(&[]);
    let v2 = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let promoted = forecastctl_authenticated(
        &[
            "promote",
            "--name",
            &model,
            "--version",
            &v2,
            "--alias",
            "champion",
        ],
        &user,
        &password,
    )
    .unwrap();
    assert!(promoted.status.success());
    ready_on(&cluster, "daily", &v2, 2).await;

    // Wrong credentials: Degraded with the registry's refusal, nothing moves.
    cluster
        .apply_fm("nightly", with_credentials("wrong-creds"))
        .await;
    degraded_with(
        &cluster,
        "nightly",
        reasons::REGISTRY_UNAUTHORIZED,
        Duration::from_secs(20),
    )
    .await;
    let status = cluster.status("nightly").await;
    assert!(status["servedVersion"].is_null(), "{status}");
    let degraded = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Degraded"))
        .cloned()
        .unwrap_or_default();
    assert!(
        degraded["message"]
            .as_str()
            .is_some_and(|m| m.contains("not authorised")),
        "{degraded}"
    );
    // A credentialsSecret that does not exist: the registry is not asked, and the status
    // says so.
    cluster
        .apply_fm("weekly", with_credentials("absent-creds"))
        .await;
    wait_until(
        "Degraded=True (RegistryCredentials), RegistryReachable=Unknown",
        Duration::from_secs(20),
        || async {
            cluster
                .condition("weekly", "Degraded")
                .await
                .is_some_and(|(s, r)| s == "True" && r == reasons::REGISTRY_CREDENTIALS)
                && cluster
                    .condition("weekly", "RegistryReachable")
                    .await
                    .is_some_and(|(s, r)| s == "Unknown" && r == reasons::NOT_ASKED)
        },
    )
    .await;
    // The first model is untouched.
    assert!(all_on(&cluster, "daily", &v2, 2).await);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_registry_is_reported_while_pods_keep_serving_and_recovery_is_seen() {
    let registry = RegistrySwitch::start().await;
    let Setup {
        model,
        v1,
        cluster,
        operator: _operator,
        fallback,
    } = set_up("fm-down", 81, &[]).await;
    let mut s = spec(
        &model,
        json!({"alias": "champion"}),
        2,
        fallback.path(),
        json!({}),
    );
    s["registry"]["trackingUri"] = json!(registry.url);
    cluster.apply_fm("daily", s).await;
    ready_on(&cluster, "daily", &v1, 2).await;

    registry.set(false);
    wait_until(
        "RegistryReachable=False",
        Duration::from_secs(20),
        || async {
            cluster
                .condition("daily", "RegistryReachable")
                .await
                .is_some_and(|(s, r)| s == "False" && r == reasons::UNREACHABLE)
        },
    )
    .await;
    cluster
        .wait_for_events(reasons::REGISTRY_UNREACHABLE, 1)
        .await;
    for day in 0..5 {
        cluster
            .predict_via_service("daily", &json!([archive_row(day)]))
            .await
            .expect("pods keep serving");
    }
    let status = cluster.status("daily").await;
    assert_eq!(status["servedVersion"], v1.as_str());
    assert!(all_on(&cluster, "daily", &v1, 2).await);
    cluster.capture_fixture("daily", "registry-down").await;

    registry.set(true);
    wait_until(
        "RegistryReachable=True again",
        Duration::from_secs(20),
        || async {
            cluster
                .condition("daily", "RegistryReachable")
                .await
                .is_some_and(|(s, _)| s == "True")
        },
    )
    .await;
    // And it acts on the registry again.
    let v2 = train_and_register(&model, 82, &["--alias", "champion"]).unwrap();
    ready_on(&cluster, "daily", &v2, 2).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_mlflow_webhook_starts_the_rollout_without_waiting_for_the_poll() {
    let Setup {
        model,
        v1,
        cluster,
        operator,
        fallback,
    } = set_up("fm-hook", 91, &[("WEBHOOK_SECRET", "hook-s3cret")]).await;
    let mut s = spec(
        &model,
        json!({"alias": "champion"}),
        3,
        fallback.path(),
        json!({}),
    );
    s["pollInterval"] = json!("10m");
    cluster.apply_fm("daily", s).await;
    ready_on(&cluster, "daily", &v1, 3).await;

    // A forged delivery is refused.
    let forged = json!({"entity": "model_version_alias", "action": "created", "data": {"name": model, "alias": "champion", "version": "1"}});
    let now = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    );
    let r = http()
        .post(format!("{}/webhooks/mlflow", operator.webhook_url))
        .header("X-MLflow-Delivery-Id", "forged")
        .header("X-MLflow-Timestamp", now)
        .header("X-MLflow-Signature", "v1,bm90IGEgc2lnbmF0dXJl")
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let hook: Value = http()
        .post(format!("{}/api/2.0/mlflow/webhooks", tracking_uri()))
        .json(&json!({
            "name": unique_name("fm-hook"),
            "url": format!("{}/webhooks/mlflow", operator.webhook_url),
            "events": [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}],
            "secret": "hook-s3cret",
            "status": "ACTIVE",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hook_id = hook["webhook"]["webhook_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!hook_id.is_empty(), "webhook not created: {hook}");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let v2 = train_and_register(&model, 92, &[]).unwrap();
    move_champion(&model, &v2);
    let moved = Instant::now();
    // The poll interval is 10 minutes: only the webhook can explain a rollout now.
    wait_until(
        "every pod on the new version",
        Duration::from_secs(30),
        || all_on(&cluster, "daily", &v2, 3),
    )
    .await;
    eprintln!(
        "alias move -> all pods on v{v2} through the webhook in {:?}",
        moved.elapsed()
    );
    let metrics = get_text(&format!("{}/metrics", operator.metrics_url))
        .await
        .unwrap();
    assert!(
        metrics.contains("forecast_operator_webhooks_total{result=\"accepted\"}"),
        "{metrics}"
    );
    let _ = http()
        .delete(format!(
            "{}/api/2.0/mlflow/webhooks/{hook_id}",
            tracking_uri()
        ))
        .send()
        .await;
    cluster.stop().await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_manifests_render_and_a_cluster_accepts_them() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let render = |dir: &str| {
        let rendered = std::process::Command::new("kubectl")
            .args(["kustomize", &format!("{root}/{dir}")])
            .output()
            .unwrap();
        assert!(
            rendered.status.success(),
            "{dir}: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        String::from_utf8_lossy(&rendered.stdout).into_owned()
    };
    let has = |text: &str, kind: &str| text.contains(&format!("kind: {kind}\n"));
    // deploy/ is the operator only: no dev MLflow, no sample.
    let operator_only = render("deploy");
    for kind in [
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(has(&operator_only, kind), "{kind} missing from deploy/");
    }
    let sample = "apiVersion: forecast.dev/v1alpha1\nkind: ForecastModel\n";
    assert!(!operator_only.contains(sample), "a sample in deploy/");
    assert!(
        !operator_only.contains("mlflow server"),
        "a dev MLflow in deploy/"
    );
    // The namespaced overlay: rights in the watched namespace only.
    let namespaced = render("deploy/overlays/namespaced");
    assert!(!has(&namespaced, "ClusterRole"), "{namespaced}");
    assert!(!has(&namespaced, "ClusterRoleBinding"));
    assert!(
        namespaced.contains("name: WATCH_NAMESPACE\n          value: forecast-apps"),
        "{namespaced}"
    );
    // The optional NetworkPolicy component, added to the namespaced overlay as a user
    // would (in a copy of deploy/).
    let copy = tempfile::tempdir().unwrap();
    copy_dir(
        &std::path::Path::new(root).join("deploy"),
        &copy.path().join("deploy"),
    );
    copy_dir(
        &std::path::Path::new(root).join("crds"),
        &copy.path().join("crds"),
    );
    let overlay = copy.path().join("deploy/overlays/locked-down");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../namespaced\ncomponents:\n- ../../components/predictor-network-policy\n",
    )
    .unwrap();
    let locked = std::process::Command::new("kubectl")
        .args(["kustomize", &overlay.to_string_lossy()])
        .output()
        .unwrap();
    assert!(
        locked.status.success(),
        "{}",
        String::from_utf8_lossy(&locked.stderr)
    );
    let locked = String::from_utf8_lossy(&locked.stdout).into_owned();
    assert!(
        has(&locked, "NetworkPolicy") && !has(&locked, "ClusterRole"),
        "{locked}"
    );
    assert!(
        locked.contains("app.kubernetes.io/name: forecast-predictor"),
        "{locked}"
    );
    // The dev overlay adds MLflow and the sample.
    let text = render("deploy/overlays/dev");
    assert!(text.contains(sample) && text.contains("mlflow"));
    assert!(
        !text.contains("verbs:\n  - '*'") && !text.contains("- '*'"),
        "wildcard RBAC"
    );
    let cluster = TestCluster::start().await;
    let out = std::process::Command::new("kubectl")
        .args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "-k",
            &format!("{root}/deploy/overlays/dev"),
        ])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let fm: kube::Api<api::forecast_model::ForecastModel> =
        kube::Api::namespaced(cluster.client.clone(), "forecast-system");
    let sample = fm.get("archive-forecast").await.unwrap();
    assert_eq!(sample.spec.model.alias.as_deref(), Some("champion"));
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(cluster.client.clone(), "forecast-system");
    let op = deployments.get("forecast-operator").await.unwrap();
    assert_eq!(
        op.spec
            .template
            .spec
            .unwrap()
            .service_account_name
            .as_deref(),
        Some("forecast-operator")
    );
    if !cluster.simulated() {
        // The test node runs only the predictor image: the operator's pod is scheduled and
        // stays Pending on ErrImagePull with a Warning event, as an unpullable image does.
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(cluster.client.clone(), "forecast-system");
        let params =
            kube::api::ListParams::default().labels("app.kubernetes.io/name=forecast-operator");
        wait_until(
            "the operator pod waits on ErrImagePull",
            Duration::from_secs(60),
            || async {
                pods.list(&params).await.is_ok_and(|l| {
                    l.items.iter().any(|p| {
                        let status = serde_json::to_value(&p.status).unwrap_or_default();
                        status["phase"] == "Pending"
                            && status["containerStatuses"][0]["state"]["waiting"]["reason"]
                                == "ErrImagePull"
                    })
                })
            },
        )
        .await;
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(cluster.client.clone());
        let _ = namespaces
            .delete("forecast-system", &DeleteParams::default())
            .await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_rejects_a_model_with_none_or_two_selectors() {
    let cluster = TestCluster::start().await;
    let fallback = tempfile::tempdir().unwrap();
    for (name, selector) in [
        ("none", json!({})),
        ("two", json!({"alias": "champion", "version": "3"})),
    ] {
        let body = json!({"apiVersion": "forecast.dev/v1alpha1", "kind": "ForecastModel",
            "metadata": {"name": name}, "spec": spec("m", selector, 1, fallback.path(), json!({}))});
        let err = cluster
            .fms()
            .patch(
                name,
                &kube::api::PatchParams::apply("e2e"),
                &kube::api::Patch::Apply(&body),
            )
            .await
            .unwrap_err();
        match err {
            kube::Error::Api(s) => assert_eq!(
                (s.code, s.reason.as_str()),
                (422, "Invalid"),
                "{}",
                s.message
            ),
            other => panic!("{other:?}"),
        }
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_webhook_deliveries_are_refused_unless_allowed() {
    let cluster = TestCluster::start_without_pods().await;
    let delivery = json!({"entity": "model_version_alias", "action": "created",
        "data": {"name": "m", "alias": "champion", "version": "1"}});
    for (env, expected) in [
        (vec![], 401),
        (vec![("WEBHOOK_ALLOW_UNSIGNED", "true")], 200),
    ] {
        let operator = Operator::start(&cluster, &env);
        let url = format!("{}/webhooks/mlflow", operator.webhook_url);
        // Until it leads, a replica relays deliveries to the leader (here: the previous,
        // killed one, so 503); the leader answers itself.
        wait_until("the operator leads", Duration::from_secs(15), || async {
            operator_metric(&operator, "forecast_operator_leader").await == 1.0
        })
        .await;
        let status = http()
            .post(&url)
            .json(&delivery)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, expected, "with {env:?}");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_refuses_unknown_forecast_model_fields_by_path() {
    // What a user with a typo (or a field from a newer version) sees: kubectl validates
    // strictly by default, so nothing is silently dropped.
    let cluster = TestCluster::start_without_pods().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("fm.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: forecast.dev/v1alpha1\nkind: ForecastModel\nmetadata: {{name: typo, namespace: {}}}\n\
             spec:\n  registry: {{trackingUri: \"http://mlflow:5000\"}}\n  model: {{name: m, alias: champion}}\n  \
             bogus: 1\n  rollout: {{blueGreen: {{pods: 1}}}}\n",
            cluster.namespace
        ),
    )
    .unwrap();
    let out = std::process::Command::new("kubectl")
        .args(["apply", "--server-side", "-f"])
        .arg(&manifest)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .output()
        .expect("kubectl runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {err}");
    // kube-apiserver names the first unknown path (`.spec.bogus: field not declared in
    // schema`); kube-sim names each (`unknown field "spec.bogus"`): both say where.
    assert!(err.contains("spec.bogus"), "{err}");
    if cluster.simulated() {
        assert!(
            err.contains("unknown field \"spec.rollout.blueGreen\""),
            "{err}"
        );
    }
    assert!(cluster.fms().get_opt("typo").await.unwrap().is_none());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_restart_strategy_replaces_the_pods_onto_the_new_version() {
    let Setup {
        model,
        cluster,
        operator: _operator,
        fallback: _fallback,
        ..
    } = daily_serving_v1(
        "fm-restart-strategy",
        101,
        2,
        json!({"rollout": {"strategy": "Restart"}}),
        &[],
    )
    .await;
    let before = identities(&cluster, "daily").await;
    let v2 = train_and_register(&model, 102, &["--alias", "champion"]).unwrap();
    ready_on(&cluster, "daily", &v2, 2).await;
    let after = identities(&cluster, "daily").await;
    assert!(
        before.keys().all(|uid| !after.contains_key(uid)),
        "Restart must replace the pods"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_onto_a_version_that_does_not_come_up_goes_back_to_the_previous_one() {
    let Setup {
        model,
        v1,
        cluster,
        operator: _operator,
        fallback: _fallback,
    } = daily_serving_v1(
        "fm-restart-fail",
        111,
        2,
        json!({"rollout": {"strategy": "Restart", "verifyTimeout": "5s"}}),
        &[],
    )
    .await;
    // A version whose files do not load: new pods come up on their cached fallback (v1),
    // never on it.
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt");
    write_corrupt_model(&corrupt, 112).unwrap();
    let bad = register_raw(&model, &corrupt).await.unwrap();
    move_champion(&model, &bad);
    degraded_with(
        &cluster,
        "daily",
        reasons::ROLLOUT_FAILED,
        Duration::from_secs(60),
    )
    .await;
    let status = cluster.status("daily").await;
    assert_eq!(status["failedVersions"], json!([bad]), "{status}");
    assert_eq!(status["servedVersion"], v1.as_str(), "{status}");
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let served = cms.get("daily-served-version").await.unwrap();
    assert_eq!(served.data.unwrap()["version"], v1);
    cluster.wait_for_events(reasons::ROLLED_BACK, 1).await;
    // The pods restart back onto v1 and stay there (the bad version is not retried).
    ready_on(&cluster, "daily", &v1, 2).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transient_503_during_a_rollout_is_retried_and_never_marks_the_version_failed() {
    let Setup {
        model,
        v1,
        cluster,
        operator: _operator,
        fallback,
    } = set_up("fm-transient", 121, &[]).await;
    let faults = forecast_e2e::ArtifactFaults::start().await;
    let mut s = spec(
        &model,
        json!({"alias": "champion"}),
        2,
        fallback.path(),
        json!({"rollout": {"maxConcurrent": 1}}),
    );
    s["registry"]["trackingUri"] = json!(faults.url);
    cluster.apply_fm("daily", s).await;
    ready_on(&cluster, "daily", &v1, 2).await;

    // The artifact store answers 503 while v2 is rolled out: the registry API still says
    // where the alias points, but no pod can download the version.
    faults.set_failing(true);
    let v2 = train_and_register(&model, 122, &["--alias", "champion"]).unwrap();
    degraded_with(
        &cluster,
        "daily",
        reasons::ROLLOUT_INTERRUPTED,
        Duration::from_secs(30),
    )
    .await;
    let status = cluster.status("daily").await;
    assert_eq!(status["failedVersions"], json!(null), "{status}");
    assert_eq!(status["servedVersion"], v1.as_str(), "{status}");

    // The store recovers: the same version is tried again and reaches every pod.
    faults.set_failing(false);
    ready_on(&cluster, "daily", &v2, 2).await;
    let status = cluster.status("daily").await;
    assert_eq!(status["failedVersions"], json!(null), "{status}");
    assert_eq!(
        cluster.condition("daily", "Degraded").await,
        Some(("False".into(), reasons::AS_EXPECTED.into()))
    );
    cluster.stop().await;
}

#[test]
fn images_build_from_pinned_bases_and_a_small_context() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for image in ["operator", "predictor"] {
        let path = format!("{root}/deploy/docker/{image}.Dockerfile");
        let text = std::fs::read_to_string(&path).unwrap();
        let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
        assert!(!froms.is_empty(), "{path}");
        for from in froms {
            assert!(
                from.contains("@sha256:"),
                "{path}: not pinned by digest: {from}"
            );
        }
    }
    let ignored = std::fs::read_to_string(format!("{root}/.dockerignore")).unwrap();
    for dir in ["target/", ".venv/", ".git/"] {
        assert!(
            ignored.lines().any(|l| l.trim() == dir),
            ".dockerignore lacks {dir}"
        );
    }
}

#[test]
fn the_helm_chart_declares_the_documented_values() {
    // What helm would not notice: values a template uses that values.yaml does not declare
    // (tests/helm.rs installs the chart with the real helm).
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/forecast-operator");
    let chart: Value =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{root}/Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "forecast-operator");
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{root}/values.yaml")).unwrap())
            .unwrap();
    for key in [
        "image",
        "resources",
        "rbac",
        "metrics",
        "webhook",
        "leaderElection",
        "replicaCount",
    ] {
        assert!(!values[key].is_null(), "values.yaml lacks {key}");
    }
    // Every `.Values.x.y` a template uses is declared in values.yaml.
    for entry in std::fs::read_dir(format!("{root}/templates")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices(".Values.") {
            let rest = &text[i + 8..];
            let path_expr: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '.')
                .collect();
            let mut v = &values;
            for seg in path_expr.trim_end_matches('.').split('.') {
                v = &v[seg];
            }
            assert!(
                !v.is_null(),
                "{} uses .Values.{path_expr}, which values.yaml does not declare",
                path.display()
            );
        }
    }
}
