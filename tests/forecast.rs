//! `POST /forecast` against the library's own recursion: archive-forecast models trained
//! with scikit-learn and logged by MLflow's `log_model` (`tests/python/log_forecasters.py`),
//! served by a real predictor process from the real MLflow server. The forest's forecast
//! and its band match what scikit-learn and numpy compute for the same 30 days; a boosted
//! model has no band; a model with other features, and every bad history, is refused with
//! a message naming why.

use forecast_e2e::forecasters::forecasters;
use forecast_e2e::*;
use serde_json::{Value, json};

fn start(kind: &str) -> Predictor {
    forecasters().serve(kind, &[])
}

fn request() -> Value {
    let report = &forecasters().report;
    json!({"history": report["history"], "horizon": report["horizon"]})
}

fn close(ours: f64, theirs: f64) -> bool {
    (ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0)
}

#[tokio::test]
async fn a_forest_forecasts_each_day_as_scikit_learn_does_with_its_trees_band() {
    let p = start("forest");
    let (status, answer) = post_json(&http(), &format!("{}/forecast", p.url), &request(), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["band"], "per_step_tree_percentiles");
    assert_eq!(
        answer["model_version"],
        forecasters().report["versions"]["forest"]
    );
    let ours = answer["forecasts"].as_array().unwrap();
    let theirs = forecasters().report["forest"].as_array().unwrap();
    assert_eq!(ours.len(), 30);
    for (day, (o, t)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(o["date"], t["date"], "day {day}");
        for field in ["forecast", "p10", "p90"] {
            let (a, b) = (o[field].as_f64().unwrap(), t[field].as_f64().unwrap());
            assert!(close(a, b), "day {day} {field}: ours {a}, scikit-learn {b}");
        }
        assert!(o["p10"].as_f64() <= o["p90"].as_f64(), "day {day}: {o}");
    }
    // The forecast is recursive: later days differ from a flat copy of the first.
    let distinct: std::collections::BTreeSet<String> =
        ours.iter().map(|d| d["forecast"].to_string()).collect();
    assert!(distinct.len() > 5, "{distinct:?}");
    let metrics = get_text(&format!("{}/metrics", p.url)).await.unwrap();
    assert!(
        metrics.contains("predictor_forecast_days_total 30"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_boosted_model_forecasts_without_a_band() {
    let p = start("boosting");
    let (status, answer) = post_json(&http(), &format!("{}/forecast", p.url), &request(), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("band").is_none(), "{answer}");
    let ours = answer["forecasts"].as_array().unwrap();
    let theirs = forecasters().report["boosting"].as_array().unwrap();
    for (day, (o, t)) in ours.iter().zip(theirs).enumerate() {
        let (a, b) = (
            o["forecast"].as_f64().unwrap(),
            t["forecast"].as_f64().unwrap(),
        );
        assert!(close(a, b), "day {day}: ours {a}, scikit-learn {b}");
        assert!(o.get("p10").is_none() && o.get("p90").is_none(), "{o}");
    }
}

#[tokio::test]
async fn a_model_with_other_features_is_refused_naming_why() {
    let p = start("other");
    let (status, answer) = post_json(&http(), &format!("{}/forecast", p.url), &request(), None)
        .await
        .unwrap();
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"], "forecast_unavailable");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("lacks day_of_week") && message.contains("takes temperature, pressure"),
        "{message}"
    );
}

#[tokio::test]
async fn bad_histories_and_horizons_are_refused_with_what_is_wrong() {
    let p = start("forest");
    let url = format!("{}/forecast", p.url);
    let history = forecasters().report["history"].as_array().unwrap().clone();
    let with =
        |history: Vec<Value>, horizon: Value| json!({"history": history, "horizon": horizon});
    let mut gap = history.clone();
    gap.remove(30);
    let mut duplicate = history.clone();
    duplicate[31] = duplicate[30].clone();
    let mut unsorted = history.clone();
    unsorted.swap(10, 11);
    let mut negative = history.clone();
    negative[3]["gigabytes"] = json!(-5.0);
    let mut bad_date = history.clone();
    bad_date[0]["date"] = json!("05/01/2026");
    let cases = [
        (with(gap, json!(30)), "gap: 1 day(s) missing between"),
        (with(duplicate, json!(30)), "appears twice"),
        (with(unsorted, json!(30)), "send the days in date order"),
        (
            with(history[..6].to_vec(), json!(30)),
            "has 6 days; a forecast needs at least 7",
        ),
        (
            with(history.clone(), json!(367)),
            "horizon 367 is out of range: ask for 1 to 366 days",
        ),
        (with(history.clone(), json!(0)), "horizon 0 is out of range"),
        (
            with(negative, json!(30)),
            "gigabytes must be a finite number >= 0",
        ),
        (
            with(bad_date, json!(30)),
            "date `05/01/2026` is not a YYYY-MM-DD date",
        ),
        (
            json!({"history": history, "horizon": 3, "extra": 1}),
            "unknown field `extra`",
        ),
        (
            json!({"history": "yesterday", "horizon": 3}),
            "malformed forecast request",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = post_json(&http(), &url, &body, None).await.unwrap();
        assert_eq!(status, 400, "{expected}: {answer}");
        assert_eq!(answer["error"], "invalid_input");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains(expected),
            "want {expected:?}, got {message:?}"
        );
    }
    // Nothing was lost: the same predictor still forecasts.
    let (status, _) = post_json(&http(), &url, &request(), None).await.unwrap();
    assert_eq!(status, 200);
}
