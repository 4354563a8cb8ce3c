//! `POST /explain` against `shap.TreeExplainer`: one model per library (scikit-learn RF,
//! ExtraTrees, GBR, HGB and a Pipeline; XGBoost; LightGBM Booster and LGBMRegressor),
//! logged by MLflow's own `log_model` into the real MLflow server and served by a real
//! predictor process; the answers compared with what shap computes in the test
//! virtualenv for the same rows. And what cannot be explained, bad input, and a body too
//! big for the deadline.

use std::sync::OnceLock;

use forecast_e2e::*;
use serde_json::{Value, json};

const TOKEN: &str = "explain-admin-token";

/// What `tests/python/log_explained.py` logged (once per test binary).
struct Logged {
    name: String,
    report: Value,
}

fn logged() -> &'static Logged {
    static LOGGED: OnceLock<Logged> = OnceLock::new();
    LOGGED.get_or_init(|| {
        let name = unique_name("explain");
        let (_dir, report) = python_report("log_explained.py", &name, &[]);
        Logged { name, report }
    })
}

fn start_on(version: &str, extra: &[(&str, String)]) -> Predictor {
    let mut env = vec![
        ("MLFLOW_TRACKING_URI", tracking_uri()),
        ("MODEL_NAME", logged().name.clone()),
        ("MODEL_VERSION", version.to_owned()),
        ("PREDICTOR_ADMIN_TOKEN", TOKEN.into()),
        ("PREDICTOR_MAX_BODY_BYTES", (8 * 1024 * 1024).to_string()),
    ];
    env.extend(extra.iter().cloned());
    Predictor::start(&env).unwrap()
}

fn case(label: &str) -> &'static Value {
    logged().report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == label)
        .unwrap_or_else(|| panic!("no logged case {label:?}"))
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, found {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("not a number: {x}")))
        .collect()
}

/// Checks one `/explain` answer against shap's values for the case's rows: returns the
/// worst difference of a contribution or expected value relative to the row's scale (the
/// largest of |expected value| and |contribution|, as shap's own tests compare).
fn compare_with_shap(label: &str, case: &Value, answer: &Value) -> f64 {
    let shap_rows = case["shap_values"].as_array().unwrap();
    let predictions = numbers(&case["predictions"]);
    let shap_expected = case["expected_value"].as_f64().unwrap();
    let explained = answer["explanations"].as_array().unwrap();
    assert_eq!(explained.len(), shap_rows.len(), "{label}");
    let mut worst: f64 = 0.0;
    for (i, (ours, theirs)) in explained.iter().zip(shap_rows).enumerate() {
        let contributions = numbers(&ours["contributions"]);
        let theirs = numbers(theirs);
        let prediction = ours["prediction"].as_f64().unwrap();
        let expected = ours["expected_value"].as_f64().unwrap();
        // Additive: expected value + contributions = the prediction.
        let total = expected + contributions.iter().sum::<f64>();
        assert!(
            (total - prediction).abs() <= 1e-9 * prediction.abs().max(1.0),
            "{label} row {i}: {expected} + {contributions:?} = {total}, not {prediction}"
        );
        // The prediction is the library's.
        assert!(
            (prediction - predictions[i]).abs() <= 1e-5 * predictions[i].abs().max(1.0),
            "{label} row {i}: predicted {prediction}, the library {}",
            predictions[i]
        );
        let scale = theirs
            .iter()
            .fold(shap_expected.abs(), |m, v| m.max(v.abs()))
            .max(1e-12);
        worst = worst.max((expected - shap_expected).abs() / scale);
        assert_eq!(contributions.len(), theirs.len(), "{label} row {i}");
        for (a, b) in contributions.iter().zip(&theirs) {
            worst = worst.max((a - b).abs() / scale);
        }
    }
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explanations_match_shap_tree_explainer_for_every_library() {
    let report = &logged().report;
    let cases = report["cases"].as_array().unwrap();
    let predictor = start_on(cases[0]["version"].as_str().unwrap(), &[]);
    let c = http();
    let mut reached = Vec::new();
    for case in cases {
        let label = case["label"].as_str().unwrap();
        let version = case["version"].as_str().unwrap();
        let (status, body) = post_json(
            &c,
            &format!("{}/reload-model", predictor.url),
            &json!({"version": version, "allow_schema_change": true}),
            Some(TOKEN),
        )
        .await
        .unwrap();
        assert_eq!(
            (status, &body["status"]),
            (200, &json!("success")),
            "{label}: {body}"
        );
        let rows = &report["rows"][case["rows"].as_str().unwrap()];
        let (status, answer) = post_json(
            &c,
            &format!("{}/explain", predictor.url),
            &json!({ "instances": rows }),
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{label}: {answer}");
        assert_eq!(answer["model_version"], version, "{label}");
        assert_eq!(
            answer["feature_names"].as_array().map(Vec::len),
            rows[0].as_array().map(Vec::len),
            "{label}"
        );
        let worst = compare_with_shap(label, case, &answer);
        // shap's XGBoost and LightGBM values come from the libraries' own TreeSHAP, which
        // XGBoost computes in float32.
        let tolerance = if case["flavor"] == "xgboost" {
            1e-5
        } else {
            1e-6
        };
        assert!(
            worst <= tolerance,
            "{label}: a contribution differs from shap's by {worst:e} of the row's scale"
        );
        reached.push(format!("{label}: {worst:.1e}"));
    }
    eprintln!(
        "worst difference from shap.TreeExplainer, relative to the row's scale:\n  {}",
        reached.join("\n  ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_body_format_of_predict_and_invocations_is_explained_alike() {
    let case = case("RandomForestRegressor");
    let predictor = start_on(case["version"].as_str().unwrap(), &[]);
    let c = http();
    let rows = logged().report["rows"]["missing"].as_array().unwrap();
    let rows: Vec<Value> = rows[..5].to_vec();
    let url = format!("{}/explain", predictor.url);
    let (status, by_instances) = post_json(&c, &url, &json!({ "instances": rows }), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{by_instances}");
    let columns = by_instances["feature_names"].clone();
    let records: Vec<Value> = rows
        .iter()
        .map(|r| {
            let object: serde_json::Map<String, Value> = columns
                .as_array()
                .unwrap()
                .iter()
                .zip(r.as_array().unwrap())
                .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone()))
                .collect();
            Value::Object(object)
        })
        .collect();
    let csv = {
        let header: Vec<&str> = columns
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let mut text = header.join(",") + "\n";
        for r in &rows {
            let cells: Vec<String> = r
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().map(|f| f.to_string()).unwrap_or_default())
                .collect();
            text += &(cells.join(",") + "\n");
        }
        text
    };
    let bodies = [
        json!({"dataframe_split": {"columns": columns, "data": rows}}),
        json!({"dataframe_records": records}),
        json!({"instances": records}),
    ];
    for body in &bodies {
        let (status, answer) = post_json(&c, &url, body, None).await.unwrap();
        assert_eq!(status, 200, "{body}: {answer}");
        assert_eq!(
            answer["explanations"], by_instances["explanations"],
            "{body}"
        );
    }
    let (status, answer) = post_typed(&c, &url, "text/csv", csv.clone(), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{csv}: {answer}");
    assert_eq!(answer["explanations"], by_instances["explanations"]);

    // Bad input: the error /predict gives, and the model keeps explaining.
    let mut bad = rows[0].clone();
    bad[1] = json!("many");
    let (status, answer) = post_json(&c, &url, &json!({ "instances": [bad] }), None)
        .await
        .unwrap();
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_input")),
        "{answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains(columns[1].as_str().unwrap()),
        "{answer}"
    );
    let (status, answer) = post_json(&c, &url, &json!({ "instances": [[1.0, 2.0]] }), None)
        .await
        .unwrap();
    assert_eq!(status, 400, "{answer}");
    let (status, again) = post_json(&c, &url, &json!({ "instances": rows }), None)
        .await
        .unwrap();
    assert_eq!(
        (status, &again["explanations"]),
        (200, &by_instances["explanations"])
    );

    let metrics = get_text(&format!("{}/metrics", predictor.url))
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "predictor_explanations_total 30"),
        "six answered requests of five rows:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_cannot_be_explained_answers_422_naming_why_and_still_predicts() {
    let unexplainable = &logged().report["unexplainable"];
    let predictor = start_on(unexplainable["version"].as_str().unwrap(), &[]);
    let c = http();
    let rows = &logged().report["rows"]["missing"];
    let (status, answer) = post_json(
        &c,
        &format!("{}/explain", predictor.url),
        &json!({ "instances": rows }),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"], "explanations_unavailable", "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains(unexplainable["contains"].as_str().unwrap()),
        "{message}"
    );
    let (status, answer) = post_json(
        &c,
        &format!("{}/predict", predictor.url),
        &json!({ "instances": rows }),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
}

/// 10,000 rows: with a deadline they fit in, every row is explained (and adds up); with
/// a deadline the body cannot meet, 503 `predict_timeout` as `/predict` answers, and the
/// pod goes on answering. (The work itself stops at the deadline: unit-tested in
/// `explaining.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10000_row_body_is_explained_within_the_deadline_or_answered_503() {
    let c = http();
    let body = |label: &str| {
        let case = case(label);
        let base = logged().report["rows"][case["rows"].as_str().unwrap()]
            .as_array()
            .unwrap();
        let rows: Vec<Value> = base.iter().cycle().take(10_000).cloned().collect();
        (
            case["version"].as_str().unwrap(),
            json!({ "instances": rows }),
        )
    };

    let (version, rows) = body("GradientBoostingRegressor");
    let patient = start_on(
        version,
        &[("PREDICTOR_PREDICT_TIMEOUT_MS", "600000".into())],
    );
    let (status, answer) = post_json(&c, &format!("{}/explain", patient.url), &rows, None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    let explained = answer["explanations"].as_array().unwrap();
    assert_eq!(explained.len(), 10_000);
    for e in explained {
        let total = e["expected_value"].as_f64().unwrap()
            + numbers(&e["contributions"]).iter().sum::<f64>();
        let prediction = e["prediction"].as_f64().unwrap();
        assert!((total - prediction).abs() <= 1e-9 * prediction.abs());
    }

    let (version, rows) = body("RandomForestRegressor");
    let hurried = start_on(version, &[("PREDICTOR_PREDICT_TIMEOUT_MS", "5".into())]);
    let (status, answer) = post_json(&c, &format!("{}/explain", hurried.url), &rows, None)
        .await
        .unwrap();
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("predict_timeout")),
        "{answer}"
    );
    let (status, _) = get_json(&c, &format!("{}/health", hurried.url))
        .await
        .unwrap();
    assert_eq!(status, 200);
}
