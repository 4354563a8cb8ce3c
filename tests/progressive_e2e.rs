//! Progressive delivery end to end: canary pods judged on live traffic against the others,
//! a shadow challenger scored beside the champion, and the rollout's progress and history
//! in the status. Real MLflow, kube-sim (or a real cluster), the operator and predictor
//! processes; models logged with scikit-learn and `mlflow.sklearn.log_model`.

use std::collections::BTreeMap;
use std::time::Duration;

use api::reasons;
use forecast_e2e::cluster::{Operator, TestCluster, wait_until};
use forecast_e2e::fleet::*;
use forecast_e2e::*;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// Registers scikit-learn forests (`SEED:SCALE` each) as versions of `name`; the first gets
/// the alias `champion`.
fn register_sklearn(name: &str, versions: &str) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/register_sklearn.py");
    let out = std::process::Command::new(python())
        .args([script, "--name", name, "--versions", versions])
        .env("MLFLOW_TRACKING_URI", tracking_uri())
        .output()
        .expect("running register_sklearn.py");
    assert!(
        out.status.success(),
        "register_sklearn.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // MLflow prints its own lines first; the script's answer is the last one.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{e}: not a JSON list of versions:\n{stdout}"))
}

/// Pod → `loaded_at` of what it serves.
async fn loaded_at(cluster: &TestCluster, fm: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (pod, _) in cluster.pod_versions(fm).await {
        if let Some(info) = cluster.pod_info(&pod).await {
            out.insert(
                pod,
                info["loaded_at"].as_str().unwrap_or_default().to_owned(),
            );
        }
    }
    out
}

fn time(text: &str) -> Timestamp {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not a time: {e}"))
}

async fn rollout_phase(cluster: &TestCluster, fm: &str, phase: &str) -> Value {
    wait_until(
        &format!("{fm}: status.rollout.phase {phase}"),
        Duration::from_secs(60),
        || async { cluster.status(fm).await["rollout"]["phase"] == phase },
    )
    .await;
    cluster.status(fm).await["rollout"].clone()
}

/// A cluster, the operator and `daily` serving the first of `versions` with this canary.
async fn canary_fleet(
    model: &str,
    v1: &str,
    replicas: i32,
    canary: Value,
) -> (TestCluster, Operator, tempfile::TempDir) {
    let cluster = TestCluster::start().await;
    let operator = Operator::start(&cluster, &[]);
    let fallback = tempfile::tempdir().unwrap();
    let extra = json!({"rollout": {"canary": canary}});
    cluster
        .apply_fm(
            "daily",
            spec(
                model,
                json!({"alias": "champion"}),
                replicas,
                fallback.path(),
                extra,
            ),
        )
        .await;
    ready_on(&cluster, "daily", v1, usize::try_from(replicas).unwrap()).await;
    (cluster, operator, fallback)
}

// Latency is judged in the analysis unit tests: here a p99 of a few dozen debug-build
// requests on a shared 2-core machine is decided by one slow request, so the limit is wide.
const WIDE_LATENCY: f64 = 100.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_good_canary_bakes_on_live_traffic_then_every_pod_follows() {
    let model = unique_name("canary-pass");
    let v = register_sklearn(&model, "1:1,2:1");
    let (v1, v2) = (&v[0], &v[1]);
    let canary = json!({"pods": 1, "bake": "4s", "minRequests": 30, "maxBake": "60s", "analysis": {"maxLatencyRatio": WIDE_LATENCY}});
    let (cluster, operator, _fallback) = canary_fleet(&model, v1, 3, canary).await;
    let before = loaded_at(&cluster, "daily").await;
    let traffic = Traffic::start(&cluster, "daily");

    move_champion(&model, v2);
    let baking = rollout_phase(&cluster, "daily", "Baking").await;
    let canary_pods: Vec<String> = serde_json::from_value(baking["canaryPods"].clone()).unwrap();
    assert_eq!(canary_pods.len(), 1, "{baking}");
    assert_eq!(baking["version"], v2.as_str());
    let bake_started = time(baking["bakeStartedAt"].as_str().unwrap());
    // During the bake the baseline pods serve v1, untouched.
    let during = cluster.pod_versions("daily").await;
    let now = loaded_at(&cluster, "daily").await;
    for (pod, version) in &during {
        if canary_pods.contains(pod) {
            assert_eq!(version.as_deref(), Some(v2.as_str()));
        } else {
            assert_eq!(version.as_deref(), Some(v1.as_str()), "{pod}");
            assert_eq!(
                now[pod], before[pod],
                "baseline pod {pod} was reloaded during the bake"
            );
        }
    }
    assert_eq!(
        cluster.condition("daily", "Progressing").await.map(|c| c.1),
        Some(reasons::CANARY_BAKING.to_owned())
    );
    // Ready (the baseline serves), and yet not done: GitOps tools must wait.
    assert_eq!(
        cluster.condition("daily", "Reconciling").await,
        Some(("True".into(), reasons::CANARY_BAKING.into()))
    );
    cluster.capture_fixture("daily", "baking").await;

    ready_on(&cluster, "daily", v2, 3).await;
    assert_eq!(
        traffic.stop().await.failed,
        0,
        "predictions failed during the canary rollout"
    );
    let after = loaded_at(&cluster, "daily").await;
    for (pod, at) in &after {
        if !canary_pods.contains(pod) {
            assert!(
                time(at) >= bake_started + Duration::from_secs(4),
                "baseline pod {pod} was reloaded at {at}, before the bake ({bake_started} + 4s) ended"
            );
        }
    }
    let status = cluster.status("daily").await;
    assert_eq!(status["rollout"]["phase"], "Idle");
    let record = &status["history"][0];
    assert_eq!(
        (record["from"].as_str(), record["to"].as_str()),
        (Some(v1.as_str()), Some(v2.as_str()))
    );
    assert_eq!(record["result"], "Succeeded");
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("canary passed"),
        "{record}"
    );
    assert_eq!(cluster.wait_for_events(reasons::CANARY_STARTED, 1).await, 1);
    cluster.wait_for_events(reasons::CANARY_PASSED, 1).await;
    let passed = cluster.event_notes(reasons::CANARY_PASSED).await;
    assert!(
        passed.iter().any(|n| n.contains("prediction shift")),
        "{passed:?}"
    );
    assert_eq!(
        operator_metric(
            &operator,
            "forecast_operator_canary_verdicts_total{result=\"pass\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_that_predicts_three_times_the_champion_fails_and_only_its_pod_moved() {
    let model = unique_name("canary-fail");
    let v = register_sklearn(&model, "1:1,2:3");
    let (v1, tripled) = (&v[0], &v[1]);
    let canary = json!({"pods": 1, "bake": "3s", "minRequests": 30, "maxBake": "60s", "analysis": {"maxLatencyRatio": WIDE_LATENCY}});
    let (cluster, operator, _fallback) = canary_fleet(&model, v1, 3, canary).await;
    let before = loaded_at(&cluster, "daily").await;
    let traffic = Traffic::start(&cluster, "daily");

    move_champion(&model, tripled);
    let baking = rollout_phase(&cluster, "daily", "Baking").await;
    let canary_pod = baking["canaryPods"][0].as_str().unwrap().to_owned();
    degraded_with(
        &cluster,
        "daily",
        reasons::ANALYSIS_FAILED,
        Duration::from_secs(90),
    )
    .await;
    ready_on(&cluster, "daily", v1, 3).await;
    assert_eq!(
        traffic.stop().await.failed,
        0,
        "predictions failed while the canary was judged and reverted"
    );

    let after = loaded_at(&cluster, "daily").await;
    for (pod, at) in &after {
        if *pod == canary_pod {
            assert_ne!(
                *at, before[pod],
                "the canary pod was reloaded (to the version and back)"
            );
        } else {
            assert_eq!(*at, before[pod], "pod {pod} outside the canary was touched");
        }
    }
    let status = cluster.status("daily").await;
    assert_eq!(status["failedVersions"], json!([tripled]));
    assert_eq!(status["servedVersion"], v1.as_str());
    assert_eq!(
        cluster.condition("daily", "Stalled").await,
        Some(("True".into(), reasons::ANALYSIS_FAILED.into()))
    );
    cluster.capture_fixture("daily", "canary-failed").await;
    let record = &status["history"][0];
    assert_eq!(
        (record["result"].as_str(), record["reason"].as_str()),
        (Some("Failed"), Some(reasons::ANALYSIS_FAILED))
    );
    cluster.wait_for_events(reasons::ANALYSIS_FAILED, 1).await;
    let notes = cluster.event_notes(reasons::ANALYSIS_FAILED).await;
    let note = notes.first().expect("an AnalysisFailed event");
    assert!(
        note.contains("prediction shift")
            && note.contains("(max 0.25)")
            && note.contains("error rate"),
        "{note}"
    );
    let shift = operator_metric(
        &operator,
        &format!(
            "forecast_operator_canary_prediction_shift{{namespace=\"{}\",name=\"daily\"}}",
            cluster.namespace
        ),
    )
    .await;
    assert!(
        (1.5..2.5).contains(&shift),
        "a 3× model shifts the mean by about 2, measured {shift}"
    );
    assert_eq!(
        operator_metric(
            &operator,
            "forecast_operator_canary_verdicts_total{result=\"fail\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn too_little_traffic_extends_the_bake_then_fails_inconclusive() {
    let model = unique_name("canary-quiet");
    let v = register_sklearn(&model, "1:1,2:1");
    let (v1, v2) = (&v[0], &v[1]);
    let canary = json!({"pods": 1, "bake": "2s", "minRequests": 1000, "maxBake": "8s"});
    let (cluster, operator, _fallback) = canary_fleet(&model, v1, 2, canary).await;

    move_champion(&model, v2);
    let baking = rollout_phase(&cluster, "daily", "Baking").await;
    let bake_started = time(baking["bakeStartedAt"].as_str().unwrap());
    for day in 0..10 {
        cluster
            .predict_via_service("daily", &json!([archive_row(day)]))
            .await
            .unwrap();
    }
    // Past the bake, still baking, with the figures so far in the status.
    wait_until(
        "the bake extended past 2s with too few requests",
        Duration::from_secs(30),
        || async {
            let rollout = cluster.status("daily").await["rollout"].clone();
            rollout["phase"] == "Baking"
                && rollout["analysis"]["requests"]
                    .as_i64()
                    .is_some_and(|r| r < 1000)
                && Timestamp::now() > bake_started + Duration::from_secs(3)
        },
    )
    .await;
    degraded_with(
        &cluster,
        "daily",
        reasons::ANALYSIS_INCONCLUSIVE,
        Duration::from_secs(60),
    )
    .await;
    ready_on(&cluster, "daily", v1, 2).await;
    let status = cluster.status("daily").await;
    let record = &status["history"][0];
    assert_eq!(record["reason"], reasons::ANALYSIS_INCONCLUSIVE);
    // `finishedAt` is a Kubernetes time, to the second: compare at that precision.
    let finished = time(record["finishedAt"].as_str().unwrap());
    let max_bake_over = bake_started + Duration::from_secs(8);
    let max_bake_over = Timestamp::from_second(max_bake_over.as_second()).unwrap();
    assert!(
        finished >= max_bake_over,
        "judged at {finished}, before maxBake ({bake_started} + 8s)"
    );
    assert_eq!(status["failedVersions"], json!([v2]));
    cluster
        .wait_for_events(reasons::ANALYSIS_INCONCLUSIVE, 1)
        .await;
    let notes = cluster.event_notes(reasons::ANALYSIS_INCONCLUSIVE).await;
    assert!(
        notes.iter().any(|n| n.contains("(needs 1000)")),
        "{notes:?}"
    );
    assert_eq!(
        operator_metric(
            &operator,
            "forecast_operator_canary_verdicts_total{result=\"inconclusive\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_restarted_mid_bake_resumes_the_bake_from_status() {
    let model = unique_name("canary-resume");
    let v = register_sklearn(&model, "1:1,2:1");
    let (v1, v2) = (&v[0], &v[1]);
    let canary = json!({"pods": 1, "bake": "8s", "minRequests": 10, "maxBake": "60s", "analysis": {"maxLatencyRatio": WIDE_LATENCY}});
    let (cluster, mut operator, _fallback) = canary_fleet(&model, v1, 2, canary).await;
    let traffic = Traffic::start(&cluster, "daily");

    move_champion(&model, v2);
    let baking = rollout_phase(&cluster, "daily", "Baking").await;
    let bake_started = time(baking["bakeStartedAt"].as_str().unwrap());
    let canary_pod = baking["canaryPods"][0].as_str().unwrap().to_owned();
    operator.kill();
    let successor = Operator::start(&cluster, &[]);
    ready_on(&cluster, "daily", v2, 2).await;
    assert_eq!(traffic.stop().await.failed, 0);

    // The successor judged the same canary (no second canary started) after the bake that
    // started before the restart (not skipped).
    assert_eq!(
        cluster.events(reasons::CANARY_STARTED).await,
        1,
        "the bake started over"
    );
    assert_eq!(
        operator_metric(
            &successor,
            "forecast_operator_canary_verdicts_total{result=\"pass\"}"
        )
        .await,
        1.0
    );
    let after = loaded_at(&cluster, "daily").await;
    for (pod, at) in &after {
        if *pod != canary_pod {
            assert!(
                time(at) >= bake_started + Duration::from_secs(8),
                "baseline pod {pod} moved at {at}, before the bake ended"
            );
        }
    }
    let record = &cluster.status("daily").await["history"][0];
    assert!(
        time(record["startedAt"].as_str().unwrap()) <= bake_started,
        "{record}"
    );
    assert_eq!(record["result"], "Succeeded");
}

/// `shadow` becomes the `challenger` alias; a two-pod ForecastModel serves `champion`
/// (`served`) with `challenger` as its shadow, under a running operator.
async fn shadow_fleet(
    model: &str,
    served: &str,
    shadow: &str,
) -> (TestCluster, Operator, tempfile::TempDir) {
    forecastctl(&[
        "promote",
        "--name",
        model,
        "--version",
        shadow,
        "--alias",
        "challenger",
    ])
    .unwrap();
    let cluster = TestCluster::start().await;
    let operator = Operator::start(&cluster, &[]);
    let fallback = tempfile::tempdir().unwrap();
    let selector = json!({"alias": "champion", "shadow": {"alias": "challenger"}});
    cluster
        .apply_fm(
            "daily",
            spec(model, selector, 2, fallback.path(), json!({})),
        )
        .await;
    ready_on(&cluster, "daily", served, 2).await;
    (cluster, operator, fallback)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shadow_alias_is_compared_in_status_and_removing_it_unloads_every_pod() {
    let model = unique_name("shadow-fm");
    let v = register_sklearn(&model, "1:1,2:1");
    let (v1, v2) = (&v[0], &v[1]);
    let (cluster, _operator, fallback) = shadow_fleet(&model, v1, v2).await;
    wait_until(
        "every pod holds the shadow",
        Duration::from_secs(60),
        || async {
            let pods = cluster.pod_versions("daily").await;
            let mut holding = 0;
            for (pod, _) in &pods {
                if let Some(info) = cluster.pod_info(pod).await {
                    holding += usize::from(info["shadow"]["version"] == v2.as_str());
                }
            }
            holding == 2
        },
    )
    .await;

    // Live requests through the Service; the champion's answers.
    let rows: Vec<Value> = (1..=40).map(archive_row).collect();
    let mut served = Vec::new();
    for row in &rows {
        let answer = cluster
            .predict_via_service("daily", &json!([row]))
            .await
            .unwrap();
        assert_eq!(answer["model_version"], v1.as_str());
        served.push(answer["predictions"][0].as_f64().unwrap());
    }
    // The challenger's own answers on the same rows, from a predictor serving it.
    let challenger = Predictor::start(&[
        ("MLFLOW_TRACKING_URI", tracking_uri()),
        ("MODEL_NAME", model.clone()),
        ("MODEL_VERSION", v2.clone()),
    ])
    .unwrap();
    let (status, answer) = post_json(
        &http(),
        &format!("{}/predict", challenger.url),
        &json!({"instances": rows}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    let own: Vec<f64> = answer["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let expected = own
        .iter()
        .zip(&served)
        .map(|(s, c)| (s - c).abs())
        .sum::<f64>()
        / rows.len() as f64;
    assert!(expected > 0.0);

    wait_until(
        "status.shadow compared all 40 requests",
        Duration::from_secs(30),
        || async { cluster.status("daily").await["shadow"]["compared"].as_u64() == Some(40) },
    )
    .await;
    let shadow = cluster.status("daily").await["shadow"].clone();
    assert_eq!(
        (shadow["version"].as_str(), shadow["pods"].as_i64()),
        (Some(v2.as_str()), Some(2))
    );
    let mean = shadow["meanAbsDiff"].as_f64().unwrap();
    assert!(
        (mean - expected).abs() <= expected * 0.01,
        "status says {mean}, the versions' own predictions differ by {expected}"
    );
    assert!(
        shadow["p99AbsDiff"].as_f64().is_some_and(|p| p > 0.0),
        "{shadow}"
    );
    assert_eq!(shadow["errors"], 0);

    // Removing the shadow from the spec unloads it from every pod.
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
    wait_until(
        "no pod holds a shadow and the status has none",
        Duration::from_secs(60),
        || async {
            let mut holding = 0;
            for (pod, _) in cluster.pod_versions("daily").await {
                if let Some(info) = cluster.pod_info(&pod).await {
                    holding += usize::from(info.get("shadow").is_some());
                }
            }
            holding == 0 && cluster.status("daily").await.get("shadow").is_none()
        },
    )
    .await;
    // The operator publishes its events after it writes the status: wait for the event
    // itself, not for the status that precedes it.
    wait_until(
        "a ShadowUnloaded event",
        Duration::from_secs(30),
        || async { cluster.events(reasons::SHADOW_UNLOADED).await >= 1 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shadow_version_that_fails_its_first_pod_is_loaded_into_no_other() {
    let model = unique_name("shadow-bad");
    let v = register_sklearn(&model, "1:1");
    let v1 = &v[0];
    // The challenger is a broken upload: no pod can load it.
    let broken = tempfile::tempdir().unwrap();
    write_corrupt_model(broken.path(), 2).unwrap();
    let v2 = register_raw(&model, broken.path()).await.unwrap();
    let (cluster, _operator, _fallback) = shadow_fleet(&model, v1, &v2).await;
    wait_until(
        "status.shadow.loadFailed",
        Duration::from_secs(60),
        || async { cluster.status("daily").await["shadow"]["loadFailed"].is_string() },
    )
    .await;
    let shadow = cluster.status("daily").await["shadow"].clone();
    assert_eq!(shadow["version"].as_str(), Some(v2.as_str()), "{shadow}");
    cluster
        .wait_for_events(reasons::SHADOW_LOAD_FAILED, 1)
        .await;
    let notes = cluster.event_notes(reasons::SHADOW_LOAD_FAILED).await;
    let pods: Vec<String> = cluster
        .pod_versions("daily")
        .await
        .into_iter()
        .map(|(pod, _)| pod)
        .collect();
    assert_eq!(pods.len(), 2);
    for note in &notes {
        assert!(note.contains("is loaded into no other"), "{note}");
        let named = pods.iter().filter(|p| note.contains(p.as_str())).count();
        assert_eq!(named, 1, "one pod was asked, not every pod: {note}");
    }
    // Neither pod holds it, and both still serve the champion.
    for pod in &pods {
        let info = cluster.pod_info(pod).await.expect("pod info");
        assert!(info["shadow"].is_null(), "{pod}: {info}");
        assert_eq!(info["model_version"], v1.as_str());
    }
}
