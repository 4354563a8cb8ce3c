//! Input drift in a real predictor process serving a model from the real MLflow: the
//! reference `forecastctl train` writes beside the model (and `register` uploads), live
//! traffic like the training data against traffic shifted on one feature, seen in
//! `/metrics` and `/model/info`; a malformed reference refused with a message and the
//! first rows served taken instead; and the operator judging the pods' drift as the
//! `Drifting` condition on the real control plane (or kube-sim).

use std::path::Path;
use std::time::Duration;

use forecast_e2e::cluster::wait_until;
use forecast_e2e::fleet::{daily_serving_v1, operator_metric};
use forecast_e2e::*;
use model::features::{FEATURE_NAMES, feature_matrix};
use serde_json::{Value, json};

/// The archive-forecast rows of a synthetic history like the training data's: the same
/// days (the training part, before the held-out fifth: volumes grow over time, and later
/// days are drift of their own) and generator, another seed.
fn like_training(seed: u64) -> Vec<Vec<f64>> {
    let start = chrono::NaiveDate::from_ymd_opt(2021, 1, 1).unwrap();
    let history = model::dataset::synthetic_history(seed, 900, start);
    let mut rows = feature_matrix(&history).0;
    let held_out = (rows.len() as f64 * 0.2).round() as usize;
    rows.truncate(rows.len() - held_out);
    rows
}

async fn send(c: &reqwest::Client, p: &Predictor, rows: &[Vec<f64>]) {
    for chunk in rows.chunks(100) {
        let (status, body) = post_json(
            c,
            &format!("{}/predict", p.url),
            &json!({ "instances": chunk }),
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
    }
}

/// `predictor_feature_drift_psi` per feature, from `/metrics`.
async fn psi_metrics(p: &Predictor, version: &str) -> Vec<(String, f64)> {
    let text = get_text(&format!("{}/metrics", p.url)).await.unwrap();
    FEATURE_NAMES
        .iter()
        .map(|f| {
            let prefix =
                format!("predictor_feature_drift_psi{{version=\"{version}\",feature=\"{f}\"}} ");
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
            ((*f).to_owned(), value.parse().unwrap())
        })
        .collect()
}

async fn drift_info(c: &reqwest::Client, p: &Predictor) -> Value {
    let (status, info) = get_json(c, &format!("{}/model/info", p.url)).await.unwrap();
    assert_eq!(status, 200, "{info}");
    info
}

fn start(name: &str, version: &str, extra: &[(&str, String)]) -> Predictor {
    let mut env = vec![
        ("MLFLOW_TRACKING_URI", tracking_uri()),
        ("MODEL_NAME", name.to_owned()),
        ("MODEL_VERSION", version.to_owned()),
    ];
    env.extend(extra.iter().cloned());
    Predictor::start(&env).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shifting_one_feature_raises_its_psi_and_only_its() {
    let name = unique_name("drift");
    let version = train_and_register(&name, 11, &[]).unwrap();
    let predictor = start(&name, &version, &[]);
    let c = http();

    let info = drift_info(&c, &predictor).await;
    assert_eq!(info["drift"]["origin"], "reference", "{info}");
    assert!(info["drift"].get("reference_error").is_none(), "{info}");
    assert_eq!(info["drift"]["window_seconds"], 3600);

    let rows = like_training(12);
    send(&c, &predictor, &rows).await;
    for (feature, psi) in psi_metrics(&predictor, &version).await {
        assert!(
            psi < 0.1,
            "{feature}: PSI {psi} for traffic like the training data"
        );
    }

    // The same days, with yesterday's volume three times what it was.
    let lag_1 = FEATURE_NAMES.iter().position(|f| *f == "lag_1").unwrap();
    let shifted: Vec<Vec<f64>> = like_training(13)
        .into_iter()
        .map(|mut r| {
            r[lag_1] *= 3.0;
            r
        })
        .collect();
    send(&c, &predictor, &shifted).await;
    for (feature, psi) in psi_metrics(&predictor, &version).await {
        if feature == "lag_1" {
            assert!(psi > 0.25, "lag_1 was shifted, yet its PSI is {psi}");
        } else {
            assert!(psi < 0.1, "{feature} was not shifted, yet its PSI is {psi}");
        }
    }
    let metrics = get_text(&format!("{}/metrics", predictor.url))
        .await
        .unwrap();
    let window_rows = format!(
        "predictor_drift_window_rows{{version=\"{version}\"}} {}",
        rows.len() + shifted.len()
    );
    assert!(
        metrics.lines().any(|l| l == window_rows),
        "{window_rows} in\n{metrics}"
    );
    let info = drift_info(&c, &predictor).await;
    assert_eq!(
        info["model_version"],
        version.as_str(),
        "drift never changes what is served"
    );
    assert_eq!(
        info["drift"]["rows"].as_u64(),
        Some((rows.len() + shifted.len()) as u64)
    );
    let lag = info["drift"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "lag_1")
        .unwrap();
    assert!(lag["psi"].as_f64().unwrap() > 0.25, "{info}");
    assert_eq!(lag["missing_ratio"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_reference_is_refused_and_the_first_rows_served_are_the_baseline() {
    let name = unique_name("drift-bad");
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    train(&model_dir, 21).unwrap();
    let file = model_dir.join(model::drift_reference::DRIFT_REFERENCE_FILE);
    let mut reference: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    reference["features"].as_array_mut().unwrap().pop();
    std::fs::write(&file, reference.to_string()).unwrap();
    let version = register(&name, &model_dir);
    let predictor = start(
        &name,
        &version,
        &[("PREDICTOR_DRIFT_BASELINE_ROWS", "300".into())],
    );
    let c = http();

    let info = drift_info(&c, &predictor).await;
    let drift = &info["drift"];
    assert_eq!(drift["origin"], "collecting", "{info}");
    let why = drift["reference_error"].as_str().unwrap();
    assert!(why.contains("7 features, but the model takes 8"), "{why}");
    assert_eq!(drift["baseline_rows"], 300);

    let rows = like_training(22);
    send(&c, &predictor, &rows[..300]).await;
    let info = drift_info(&c, &predictor).await;
    assert_eq!(info["drift"]["origin"], "traffic", "{info}");
    send(&c, &predictor, &rows[300..]).await;
    assert!(drift_info(&c, &predictor).await["drift"]["rows"].as_u64() > Some(0));
    // Against those first rows (the start of the history), the later days' volumes have
    // grown; the calendar has not moved.
    let day_of_week = psi_metrics(&predictor, &version).await[0].1;
    assert!(day_of_week < 0.1, "day_of_week PSI {day_of_week}");
}

fn register(name: &str, model_dir: &Path) -> String {
    forecastctl(&[
        "register",
        "--model-dir",
        model_dir.to_str().unwrap(),
        "--name",
        name,
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_python_lines_give_a_model_its_reference() {
    let name = unique_name("drift-py");
    let out = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/python/log_with_drift_reference.py"
        ))
        .args(["--name", &name])
        .env("MLFLOW_TRACKING_URI", tracking_uri())
        .output()
        .expect("running log_with_drift_reference.py");
    assert!(
        out.status.success(),
        "log_with_drift_reference.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The last line: MLflow prints links to the run before it.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let version = stdout.lines().last().unwrap_or_default().trim().to_owned();
    let predictor = start(&name, &version, &[]);
    let info = drift_info(&http(), &predictor).await;
    assert_eq!(info["drift"]["origin"], "reference", "{info}");
    let features = info["drift"]["features"].as_array().unwrap();
    assert_eq!(features.len(), 6, "{info}");
}

/// The operator reads the pod's drift each poll: Unknown before enough rows, False on
/// traffic like the training data, True naming `lag_1` once it is shifted — an event, the
/// operator's gauge over the limit, and the served version unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operator_reports_drifting_when_live_traffic_moves_and_never_changes_the_version() {
    let setup = daily_serving_v1(
        "drift-fm",
        41,
        1,
        json!({"monitoring": {"drift": {"maxPsi": 0.25, "minRows": 300}}}),
        &[],
    )
    .await;
    let cluster = &setup.cluster;
    let v1 = setup.v1.as_str();
    let drifting = || async { cluster.condition("daily", "Drifting").await };
    wait_until(
        "Drifting=Unknown (no rows yet)",
        Duration::from_secs(60),
        || async { drifting().await == Some(("Unknown".into(), "TooFewRows".into())) },
    )
    .await;

    let predict_all = |rows: Vec<Vec<f64>>| async move {
        for chunk in rows.chunks(50) {
            let answer = cluster
                .predict_via_service("daily", &json!(chunk))
                .await
                .unwrap();
            assert_eq!(answer["model_version"], v1);
        }
    };
    predict_all(like_training(42)).await;
    wait_until(
        "Drifting=False on traffic like training",
        Duration::from_secs(60),
        || async { drifting().await == Some(("False".into(), "NoDrift".into())) },
    )
    .await;

    let lag_1 = FEATURE_NAMES.iter().position(|f| *f == "lag_1").unwrap();
    let shifted: Vec<Vec<f64>> = like_training(43)
        .into_iter()
        .map(|mut r| {
            r[lag_1] *= 3.0;
            r
        })
        .collect();
    predict_all(shifted).await;
    wait_until(
        "Drifting=True once lag_1 moved",
        Duration::from_secs(60),
        || async { drifting().await == Some(("True".into(), "DriftDetected".into())) },
    )
    .await;
    let status = cluster.status("daily").await;
    let message = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Drifting")
        .and_then(|c| c["message"].as_str())
        .unwrap()
        .to_owned();
    assert!(message.starts_with("lag_1 (PSI "), "{message}");
    assert!(!message.contains("month"), "{message}");
    assert_eq!(
        status["servedVersion"],
        setup.v1.as_str(),
        "drift never changes what is served"
    );
    cluster.wait_for_events("DriftDetected", 1).await;
    assert!(
        cluster
            .event_notes("DriftDetected")
            .await
            .iter()
            .any(|n| n.contains("lag_1"))
    );
    let gauge = operator_metric(
        &setup.operator,
        &format!(
            "forecast_operator_drift_psi{{namespace=\"{}\",name=\"daily\",feature=\"lag_1\"}}",
            cluster.namespace
        ),
    )
    .await;
    assert!(
        gauge > 0.25,
        "forecast_operator_drift_psi for lag_1: {gauge}"
    );
    for (pod, version) in cluster.pod_versions("daily").await {
        assert_eq!(version.as_deref(), Some(setup.v1.as_str()), "{pod}");
    }
}
