//! The shadow challenger in a real predictor process against a real MLflow server: loaded
//! beside the served model, scored on live requests, compared exactly, promoted without a
//! download, unloaded.

use std::time::Duration;

use forecast_e2e::*;
use serde_json::{Value, json};

const TOKEN: &str = "e2e-admin-token";

async fn shadow_call(
    c: &reqwest::Client,
    p: &Predictor,
    method: reqwest::Method,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = c.request(method, format!("{}/shadow-model", p.url));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let answer = request.send().await.expect("the predictor answers");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("a JSON answer"))
}

async fn info(c: &reqwest::Client, p: &Predictor) -> Value {
    let (status, info) = get_json(c, &format!("{}/model/info", p.url)).await.unwrap();
    assert_eq!(status, 200, "{info}");
    info
}

async fn predictions(c: &reqwest::Client, p: &Predictor, rows: &[Value]) -> (String, Vec<f64>) {
    let url = format!("{}/predict", p.url);
    let (status, answer) = post_json(c, &url, &json!({ "instances": rows }), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    let values = answer["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    (answer["model_version"].as_str().unwrap().to_owned(), values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_is_scored_on_live_requests_compared_exactly_and_promoted_without_a_download() {
    let name = unique_name("shadow");
    let v1 = train_and_register(&name, 1, &["--alias", "champion"]).unwrap();
    let v2 = train_and_register(&name, 2, &[]).unwrap();
    let registry = RegistrySwitch::start().await;
    let predictor = Predictor::start(&[
        ("MLFLOW_TRACKING_URI", registry.url.clone()),
        ("MODEL_NAME", name.clone()),
        ("MODEL_ALIAS", "champion".into()),
        ("PREDICTOR_ADMIN_TOKEN", TOKEN.into()),
    ])
    .unwrap();
    let c = http();
    let post = reqwest::Method::POST;
    let delete = reqwest::Method::DELETE;
    assert!(info(&c, &predictor).await.get("shadow").is_none());

    // Admin only; bad requests are refused and load nothing.
    let body = json!({ "version": v2 });
    let (status, _) = shadow_call(&c, &predictor, post.clone(), Some(body.clone()), None).await;
    assert_eq!(status, 401);
    let (status, _) = shadow_call(&c, &predictor, delete.clone(), None, Some("wrong")).await;
    assert_eq!(status, 401);
    for (bad, code) in [
        (json!({}), "invalid_input"),
        (json!({ "version": "../1" }), "invalid_version"),
        (json!({ "version": v2, "extra": 1 }), "invalid_input"),
    ] {
        let (status, answer) =
            shadow_call(&c, &predictor, post.clone(), Some(bad.clone()), Some(TOKEN)).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some(code)),
            "{bad}: {answer}"
        );
    }
    let (status, answer) = shadow_call(
        &c,
        &predictor,
        post.clone(),
        Some(json!({ "version": "999" })),
        Some(TOKEN),
    )
    .await;
    assert!(status >= 400, "{answer}");
    assert!(info(&c, &predictor).await.get("shadow").is_none());

    let (status, answer) = shadow_call(
        &c,
        &predictor,
        post.clone(),
        Some(body.clone()),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["version"].as_str(), answer["changed"].as_bool()),
        (Some(v2.as_str()), Some(true))
    );
    let (_, again) = shadow_call(&c, &predictor, post.clone(), Some(body), Some(TOKEN)).await;
    assert_eq!(again["changed"], false, "{again}");
    let shadow = &info(&c, &predictor).await["shadow"];
    assert_eq!(
        (shadow["version"].as_str(), shadow["compared"].as_u64()),
        (Some(v2.as_str()), Some(0))
    );

    // Live traffic: single rows and one batch, answered by the served version.
    let mut served = Vec::new();
    let mut sent = Vec::new();
    for day in 1..=20 {
        let rows = vec![archive_row(day)];
        let (version, values) = predictions(&c, &predictor, &rows).await;
        assert_eq!(version, v1);
        served.extend(values);
        sent.extend(rows);
    }
    let batch: Vec<Value> = (21..=30).map(archive_row).collect();
    let (_, values) = predictions(&c, &predictor, &batch).await;
    served.extend(values);
    sent.extend(batch);
    let requests = 21;
    cluster::wait_until(
        "the shadow compared every request",
        Duration::from_secs(30),
        || async { info(&c, &predictor).await["shadow"]["compared"].as_u64() == Some(requests) },
    )
    .await;
    let shadow = info(&c, &predictor).await["shadow"].clone();
    assert_eq!(shadow["dropped"], 0, "{shadow}");
    assert_eq!(shadow["errors"], 0, "{shadow}");

    let metrics = get_text(&format!("{}/metrics", predictor.url))
        .await
        .unwrap();
    for line in [
        format!("predictor_shadow_compared_total{{version=\"{v2}\"}} {requests}"),
        format!(
            "predictor_shadow_abs_diff_count{{version=\"{v2}\"}} {}",
            sent.len()
        ),
        format!("predictor_model_requests_total{{version=\"{v1}\",outcome=\"ok\"}} {requests}"),
        format!(
            "predictor_model_predictions_total{{version=\"{v1}\"}} {}",
            sent.len()
        ),
    ] {
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
    }

    // Promotion to the shadow's version with the registry unreachable: no download needed.
    registry.set(false);
    let (status, reloaded) = post_json(
        &c,
        &format!("{}/reload-model", predictor.url),
        &json!({ "version": v2 }),
        Some(TOKEN),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{reloaded}");
    assert_eq!(
        (
            reloaded["old_version"].as_str(),
            reloaded["new_version"].as_str()
        ),
        (Some(v1.as_str()), Some(v2.as_str()))
    );
    let (version, challenger) = predictions(&c, &predictor, &sent).await;
    assert_eq!(version, v2);
    let diffs: Vec<f64> = challenger
        .iter()
        .zip(&served)
        .map(|(s, c)| (s - c).abs())
        .collect();
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let max = diffs.iter().copied().fold(0.0, f64::max);
    assert!(
        mean > 0.0,
        "two differently trained versions predict differently"
    );
    let reported = shadow["mean_abs_diff"].as_f64().unwrap();
    assert!(
        (reported - mean).abs() <= mean * 0.01,
        "shadow said {reported}, the versions' own predictions differ by {mean}"
    );
    let reported_max = shadow["max_abs_diff"].as_f64().unwrap();
    assert!(
        (reported_max - max).abs() <= max * 0.01,
        "{reported_max} vs {max}"
    );

    // Unloading: the shadow is gone; unloading again changes nothing.
    let (status, gone) = shadow_call(&c, &predictor, delete.clone(), None, Some(TOKEN)).await;
    assert_eq!(
        (
            status,
            gone["old_version"].as_str(),
            gone["changed"].as_bool()
        ),
        (200, Some(v2.as_str()), Some(true)),
        "{gone}"
    );
    assert!(info(&c, &predictor).await.get("shadow").is_none());
    let (_, again) = shadow_call(&c, &predictor, delete, None, Some(TOKEN)).await;
    assert_eq!(again["changed"], false);
    registry.set(true);
}
