//! Input drift in a real predictor process serving a model from the real MLflow: the
//! reference `forecastctl train` writes beside the model (and `register` uploads), live
//! traffic like the training data against traffic shifted on one feature, seen in
//! `/metrics` and `/model/info`; a malformed reference refused with a message and the
//! first rows served taken instead.

use std::path::Path;

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
