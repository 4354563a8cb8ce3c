//! The predictor against a real MLflow server, as real processes over HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use forecast_e2e::*;
use serde_json::{Value, json};

const TOKEN: &str = "e2e-admin-token";

fn registry_env(name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MLFLOW_TRACKING_URI", tracking_uri()),
        ("MODEL_NAME", name.to_owned()),
    ]
}

async fn model_info(c: &reqwest::Client, p: &Predictor) -> Value {
    let (status, info) = get_json(c, &format!("{}/model/info", p.url)).await.unwrap();
    assert_eq!(status, 200, "{info}");
    info
}

async fn predict(c: &reqwest::Client, p: &Predictor, rows: Value) -> (u16, Value) {
    post_json(
        c,
        &format!("{}/predict", p.url),
        &json!({ "instances": rows }),
        None,
    )
    .await
    .unwrap()
}

/// Waits until `count` reaches `at_least` (requests counted by a client loop), with the
/// project's one waiting helper.
async fn wait_for_count(count: &AtomicUsize, at_least: usize) {
    let what = format!("{at_least} successful requests");
    forecast_e2e::cluster::wait_until(&what, Duration::from_secs(30), || async {
        count.load(Ordering::Relaxed) >= at_least
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moving_the_alias_and_reloading_switches_versions_without_failing_a_request() {
    let name = unique_name("alias-reload");
    let v1 = train_and_register(&name, 1, &["--alias", "champion"]).unwrap();
    let mut env = registry_env(&name);
    env.push(("MODEL_ALIAS", "champion".into()));
    env.push(("PREDICTOR_ADMIN_TOKEN", TOKEN.into()));
    let predictor = Predictor::start(&env).unwrap();
    let c = http();

    let info = model_info(&c, &predictor).await;
    assert_eq!(info["model_version"], v1.as_str());
    assert_eq!(info["origin"], "registry");
    assert_eq!(info["selector"], "alias:champion");
    assert_eq!(info["flavor"], "forecast_tree_ensemble");
    assert_eq!(info["feature_names"].as_array().unwrap().len(), 8);
    assert!(info["digest"].as_str().unwrap().starts_with("sha256:"));
    let (status, ready) = get_json(&c, &format!("{}/ready", predictor.url))
        .await
        .unwrap();
    assert_eq!(
        (status, ready["model_version"].as_str()),
        (200, Some(v1.as_str()))
    );

    let v2 = train_and_register(&name, 2, &[]).unwrap();
    forecastctl(&[
        "promote",
        "--name",
        &name,
        "--version",
        &v2,
        "--alias",
        "champion",
    ])
    .unwrap();

    // A client predicting throughout the reload.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for worker in 0..4u32 {
        let (stop, ok, failed, url, c) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            format!("{}/predict", predictor.url),
            c.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut day = worker;
            while !stop.load(Ordering::Relaxed) {
                day += 1;
                let body = json!({ "instances": [archive_row(day)] });
                match post_json(&c, &url, &body, None).await {
                    Ok((200, v)) if v["predictions"][0].as_f64().is_some_and(f64::is_finite) => {
                        ok.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // Requests are flowing before the reload.
    wait_for_count(&ok, 20).await;

    // Without the admin token the reload is refused and nothing changes.
    let reload_url = format!("{}/reload-model", predictor.url);
    let (status, body) = post_raw(&c, &reload_url, "", None).await.unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, body) = post_raw(&c, &reload_url, "", Some("wrong")).await.unwrap();
    assert_eq!(status, 401, "{body}");

    let (status, body) = post_raw(&c, &reload_url, "", Some(TOKEN)).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["old_version"], v1.as_str());
    assert_eq!(body["new_version"], v2.as_str());
    assert_eq!(body["changed"], true);
    // And keep flowing after it.
    let after_reload = ok.load(Ordering::Relaxed) + 20;
    wait_for_count(&ok, after_reload).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the reload"
    );

    let info = model_info(&c, &predictor).await;
    assert_eq!(info["model_version"], v2.as_str());
    let (_, served) = predict(&c, &predictor, json!([archive_row(3)])).await;
    assert_eq!(served["model_version"], v2.as_str());

    let metrics = get_text(&format!("{}/metrics", predictor.url))
        .await
        .unwrap();
    assert!(
        metrics.contains("predictor_reloads_total{result=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("predictor_served_version {v2}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("predictor_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_the_old_model_when_the_new_version_is_corrupt_or_has_other_features() {
    let name = unique_name("bad-versions");
    let good = train_and_register(&name, 3, &[]).unwrap();
    let mut env = registry_env(&name);
    env.push(("MODEL_VERSION", good.clone()));
    let predictor = Predictor::start(&env).unwrap();
    let c = http();
    let (_, before) = predict(&c, &predictor, json!([archive_row(5)])).await;

    // forecastctl refuses to register a corrupt directory...
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt");
    write_corrupt_model(&corrupt, 4).unwrap();
    let out = forecastctl_output(&[
        "register",
        "--model-dir",
        corrupt.to_str().unwrap(),
        "--name",
        &name,
    ])
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a servable model"));

    // ...but one can still reach the registry by other means: upload it raw.
    let corrupt_version = register_raw(&name, &corrupt).await.unwrap();

    let reload = format!("{}/reload-model", predictor.url);
    let (status, body) = post_json(&c, &reload, &json!({"version": corrupt_version}), None)
        .await
        .unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "invalid_model");
    assert!(
        body["message"].as_str().unwrap().contains("ensemble.json"),
        "{body}"
    );

    // A valid model of 5 features cannot silently replace the 8-feature one.
    let narrow = dir.path().join("narrow");
    write_narrow_model(&narrow);
    let narrow_version = forecastctl(&[
        "register",
        "--model-dir",
        narrow.to_str().unwrap(),
        "--name",
        &name,
    ])
    .unwrap();
    let (status, body) = post_json(&c, &reload, &json!({"version": narrow_version}), None)
        .await
        .unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "schema_mismatch");

    // An unknown version is a 404 that names it.
    let (status, body) = post_json(&c, &reload, &json!({"version": "999"}), None)
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("version_not_found")),
        "{body}"
    );

    // The good version kept serving, with the same answers.
    let info = model_info(&c, &predictor).await;
    assert_eq!(info["model_version"], good.as_str());
    let (status, after) = predict(&c, &predictor, json!([archive_row(5)])).await;
    assert_eq!(status, 200);
    assert_eq!(after["predictions"], before["predictions"]);
    let metrics = get_text(&format!("{}/metrics", predictor.url))
        .await
        .unwrap();
    assert!(
        metrics.contains("predictor_reloads_total{result=\"failure\"} 3"),
        "{metrics}"
    );
}

fn write_narrow_model(dir: &std::path::Path) {
    use model::ensemble::*;
    let leaf = |v| NodeSpec::Leaf { leaf: v };
    let ensemble = TreeEnsemble::new(&EnsembleSpec {
        n_features: 5,
        preprocess: Vec::new(),
        aggregate: Aggregate::Sum,
        base_value: 0.0,
        post_transform: PostTransform::None,
        input_precision: InputPrecision::F64,
        trees: vec![TreeSpec {
            covers: None,
            nodes: vec![
                NodeSpec::Split {
                    feature: 4,
                    rule: SplitRule::Leq,
                    threshold: 1.0,
                    yes: 1,
                    no: 2,
                    missing_yes: false,
                    missing_no: false,
                    nan_as_zero: false,
                    zero_is_missing: false,
                },
                leaf(1.0),
                leaf(2.0),
            ],
        }],
    })
    .unwrap();
    let names: Vec<String> = (0..5).map(|i| format!("g{i}")).collect();
    model::write_model_dir(dir, &ensemble, &names, &Default::default()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_predictor_serves_the_cached_model_when_the_registry_is_down() {
    let name = unique_name("fallback");
    let version = train_and_register(&name, 5, &["--alias", "champion"]).unwrap();
    let fallback = tempfile::tempdir().unwrap();
    let c = http();

    let mut env = registry_env(&name);
    env.push(("MODEL_ALIAS", "champion".into()));
    env.push(("MODEL_FALLBACK_DIR", fallback.path().display().to_string()));
    let online = Predictor::start(&env).unwrap();
    let online_info = model_info(&c, &online).await;
    let (_, online_prediction) = predict(&c, &online, json!([archive_row(9)])).await;
    drop(online);

    // The registry is down (nothing listens there).
    let down = format!("http://127.0.0.1:{}", closed_port());
    let offline_env = vec![
        ("MLFLOW_TRACKING_URI", down),
        ("MODEL_NAME", name.clone()),
        ("MODEL_ALIAS", "champion".into()),
        ("MODEL_FALLBACK_DIR", fallback.path().display().to_string()),
    ];
    let offline = Predictor::start(&offline_env).unwrap();
    let info = model_info(&c, &offline).await;
    assert_eq!(info["origin"], "fallback");
    assert_eq!(info["model_version"], version.as_str());
    assert_eq!(info["digest"], online_info["digest"]);
    assert!(info["selector"].as_str().unwrap().starts_with("fallback:"));
    let (status, prediction) = predict(&c, &offline, json!([archive_row(9)])).await;
    assert_eq!(status, 200);
    assert_eq!(prediction["predictions"], online_prediction["predictions"]);
    let logs = offline.drain_logs().join("\n");
    assert!(logs.contains("serving the fallback model"), "{logs}");
    assert!(logs.contains("unreachable"), "{logs}");
    // A reload while the registry is down fails and keeps the fallback model.
    let (status, body) = post_raw(&c, &format!("{}/reload-model", offline.url), "", None)
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("registry_unreachable")),
        "{body}"
    );
    assert_eq!(
        model_info(&c, &offline).await["model_version"],
        version.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predictor_on_its_fallback_returns_to_the_registry_when_it_is_back() {
    let name = unique_name("comeback");
    let version = train_and_register(&name, 8, &["--alias", "champion"]).unwrap();
    let fallback = tempfile::tempdir().unwrap();
    train(fallback.path(), 9).unwrap(); // the bundled model of an image
    let registry = RegistrySwitch::start().await;
    registry.set(false);
    let env = vec![
        ("MLFLOW_TRACKING_URI", registry.url.clone()),
        ("MODEL_NAME", name.clone()),
        ("MODEL_ALIAS", "champion".into()),
        ("MODEL_FALLBACK_DIR", fallback.path().display().to_string()),
        ("PREDICTOR_RETRY_SECONDS", "1".into()),
    ];
    let predictor = Predictor::start(&env).unwrap();
    let c = http();
    let info = model_info(&c, &predictor).await;
    assert_eq!(
        (info["origin"].as_str(), info["model_version"].as_str()),
        (Some("fallback"), Some("bundled"))
    );

    registry.set(true);
    let mut info = Value::Null;
    for _ in 0..75 {
        info = model_info(&c, &predictor).await;
        if info["origin"] == "registry" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        (info["origin"].as_str(), info["model_version"].as_str()),
        (Some("registry"), Some(version.as_str())),
        "the predictor stayed on its fallback after the registry came back"
    );
    let (status, _) = predict(&c, &predictor, json!([archive_row(4)])).await;
    assert_eq!(status, 200);
    let logs = predictor.drain_logs().join("\n");
    assert!(logs.contains("the registry is back"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_registry_or_fallback_the_predictor_is_alive_but_not_ready() {
    let empty = tempfile::tempdir().unwrap();
    let env = vec![
        (
            "MLFLOW_TRACKING_URI",
            format!("http://127.0.0.1:{}", closed_port()),
        ),
        ("MODEL_FALLBACK_DIR", empty.path().display().to_string()),
    ];
    let mut predictor = Predictor::start(&env).unwrap();
    let c = http();
    let (status, _) = get_json(&c, &format!("{}/health", predictor.url))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, _) = get_json(&c, &format!("{}/ready", predictor.url))
        .await
        .unwrap();
    assert_eq!(status, 503);
    let (status, body) = predict(&c, &predictor, json!([archive_row(1)])).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("no_model")));

    // Once a bundled model appears in the fallback directory, the retry loop serves it.
    train(empty.path(), 6).unwrap();
    let mut ready = false;
    for _ in 0..50 {
        if get_json(&c, &format!("{}/ready", predictor.url))
            .await
            .unwrap()
            .0
            == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "the predictor never picked up the bundled model");
    let info = model_info(&c, &predictor).await;
    assert_eq!(
        (info["origin"].as_str(), info["model_version"].as_str()),
        (Some("fallback"), Some("bundled"))
    );
    assert!(predictor.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scikit_learn_forest_exported_to_onnx_is_served_natively_and_matches() {
    let name = unique_name("sklearn-onnx");
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let out = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/python/log_sklearn_onnx.py"
        ))
        .args(["--name", &name, "--out"])
        .arg(&report_path)
        .env("MLFLOW_TRACKING_URI", tracking_uri())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let version = report["version"].as_str().unwrap().to_owned();

    let mut env = registry_env(&name);
    env.push(("MODEL_VERSION", version.clone()));
    let predictor = Predictor::start(&env).unwrap();
    let c = http();
    let info = model_info(&c, &predictor).await;
    assert_eq!(info["flavor"], "onnx");
    assert_eq!(info["model_version"], version.as_str());
    assert_eq!(info["n_trees"], 100);
    assert_eq!(info["feature_names"], report["feature_names"]);

    let rows = report["rows"].clone();
    let expected: Vec<f64> = report["expected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let (status, body) = predict(&c, &predictor, rows.clone()).await;
    assert_eq!(status, 200, "{body}");
    let got: Vec<f64> = body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), expected.len());
    let worst = got
        .iter()
        .zip(&expected)
        .map(|(g, e)| (g - e).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 1e-3,
        "largest difference from scikit-learn: {worst}"
    );

    // The same rows through MLflow's scoring format give the same answers.
    let columns = report["feature_names"].clone();
    let (status, body) = post_json(
        &c,
        &format!("{}/invocations", predictor.url),
        &json!({"dataframe_split": {"columns": columns, "data": rows}}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let same: Vec<f64> = body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(same, got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_selection_serves_the_latest_production_version() {
    let name = unique_name("stages");
    let v1 = train_and_register(&name, 7, &["--stage", "Production"]).unwrap();
    let v2 = train_and_register(&name, 8, &["--stage", "Staging"]).unwrap();
    let mut env = registry_env(&name);
    env.push(("MODEL_STAGE", "Production".into()));
    let predictor = Predictor::start(&env).unwrap();
    let c = http();
    let info = model_info(&c, &predictor).await;
    assert_eq!(info["model_version"], v1.as_str());
    assert_eq!(info["selector"], "stage:Production");

    forecastctl(&[
        "promote",
        "--name",
        &name,
        "--version",
        &v2,
        "--stage",
        "Production",
    ])
    .unwrap();
    let (status, body) = post_raw(&c, &format!("{}/reload-model", predictor.url), "", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        model_info(&c, &predictor).await["model_version"],
        v2.as_str()
    );
    let status = forecastctl(&["status", "--name", &name]).unwrap();
    assert!(
        status.contains(&format!("{v2}        Production")),
        "{status}"
    );
    assert!(status.contains("Archived"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_json_4xx_errors_and_the_server_keeps_serving() {
    let name = unique_name("bad-input");
    let version = train_and_register(&name, 9, &[]).unwrap();
    let mut env = registry_env(&name);
    env.push(("MODEL_VERSION", version));
    env.push(("PREDICTOR_MAX_BODY_BYTES", "4096".into()));
    let mut predictor = Predictor::start(&env).unwrap();
    let c = http();
    let url = format!("{}/predict", predictor.url);
    let mut record = json!({
        "day_of_week": 1, "day_of_month": 2, "month": 3, "is_weekend": 0,
        "is_month_end": 0, "lag_1": 900, "lag_7": 880, "rolling_mean_7": 870
    });
    record["colour"] = json!(1);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "malformed JSON",
            "{\"instances\": [[1, 2,".into(),
            400,
            "malformed JSON",
        ),
        ("not an object", "[1, 2, 3]".into(), 400, "malformed JSON"),
        (
            "a feature named twice",
            r#"{"instances": [{"day_of_week": 1, "day_of_month": 2, "month": 3, "is_weekend": 0, "is_month_end": 0, "lag_1": 900, "lag_7": 880, "rolling_mean_7": 870, "lag_1": 1}]}"#.into(),
            400,
            "the key \"lag_1\" appears twice",
        ),
        (
            "wrong feature count",
            json!({"instances": [[1, 2, 3]]}).to_string(),
            400,
            "has 3 values",
        ),
        (
            "unknown feature",
            json!({"instances": [record]}).to_string(),
            400,
            "unknown feature \"colour\"",
        ),
        (
            "missing feature",
            json!({"instances": [{"day_of_week": 1}]}).to_string(),
            400,
            "lacks feature",
        ),
        (
            // Python clients send missing values as a bare NaN; this model takes none.
            "NaN literal",
            "{\"instances\": [[NaN, 1, 1, 1, 1, 1, 1, 1]]}".into(),
            400,
            "does not accept missing values",
        ),
        (
            "Infinity literal",
            "{\"instances\": [[Infinity, 1, 1, 1, 1, 1, 1, 1]]}".into(),
            400,
            "Infinity is not a finite number",
        ),
        (
            "huge number",
            "{\"instances\": [[1e999, 1, 1, 1, 1, 1, 1, 1]]}".into(),
            400,
            "malformed JSON",
        ),
        (
            "string value",
            json!({"instances": [[1, 2, 3, 4, 5, 6, 7, "eight"]]}).to_string(),
            400,
            "expected a number",
        ),
        (
            "null value",
            json!({"instances": [[1, 2, 3, 4, 5, 6, 7, null]]}).to_string(),
            400,
            "null",
        ),
        (
            "empty instances",
            json!({"instances": []}).to_string(),
            400,
            "no instances",
        ),
        (
            "no instances key",
            json!({"rows": [[1]]}).to_string(),
            400,
            "malformed JSON",
        ),
        (
            "oversized body",
            format!(
                "{{\"instances\": [{}]}}",
                vec!["[1,2,3,4,5,6,7,8]"; 400].join(",")
            ),
            413,
            "limit",
        ),
    ];
    for (what, body, status, needle) in cases {
        let (got, answer) = post_raw(&c, &url, body, None).await.unwrap();
        assert_eq!(got, status, "{what}: {answer}");
        assert!(answer["error"].is_string(), "{what}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{what}: {message}");
    }
    // CSV bodies get the same kind of answers.
    let invocations = format!("{}/invocations", predictor.url);
    let header = model::features::FEATURE_NAMES.join(",");
    let csv_cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "CSV without rows",
            format!("{header}\n"),
            400,
            "no instances",
        ),
        ("empty CSV", String::new(), 400, "header row"),
        (
            "CSV row too short",
            format!("{header}\n1,2,3\n"),
            400,
            "malformed CSV at data row 0",
        ),
        (
            "CSV text value",
            format!("{header}\n1,2,3,0,0,900,880,lots\n"),
            400,
            "expected a number",
        ),
        (
            "CSV unknown column",
            format!("{},colour\n1,2,3,0,0,900,880,870,1\n", header),
            400,
            "unknown feature \"colour\"",
        ),
        (
            "CSV column named twice",
            format!("{header},lag_1\n1,2,3,0,0,900,880,870,1\n"),
            400,
            "the column \"lag_1\" appears twice",
        ),
        (
            "oversized CSV",
            format!("{header}\n{}", "1,2,3,0,0,900,880,870\n".repeat(300)),
            413,
            "limit",
        ),
    ];
    for (what, body, status, needle) in csv_cases {
        let (got, answer) = post_typed(&c, &invocations, "text/csv", body, None)
            .await
            .unwrap();
        assert_eq!(got, status, "{what}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{what}: {message}");
    }
    // /invocations rejects unknown formats the same way.
    let (status, answer) = post_json(
        &c,
        &format!("{}/invocations", predictor.url),
        &json!({"dataframe_columns": []}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("dataframe_split")
    );

    // A gzip bomb: ~1 KiB on the wire (under the 4 KiB limit, so only the decoded size
    // can refuse it), 1 MiB once inflated.
    let bomb = {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(br#"{"instances": ["#).unwrap();
        gz.write_all(&vec![b' '; 1024 * 1024]).unwrap();
        gz.write_all(b"]}").unwrap();
        gz.finish().unwrap()
    };
    assert!(bomb.len() < 2 * 1024, "{} bytes on the wire", bomb.len());
    let r = c
        .post(&url)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["error"], "payload_too_large", "{answer}");

    assert!(predictor.is_running(), "the predictor died");
    let (status, ok) = predict(&c, &predictor, json!([archive_row(1), archive_row(2)])).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["predictions"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mlflow_scoring_format_gives_the_predict_answer() {
    let name = unique_name("invocations");
    let version = train_and_register(&name, 10, &[]).unwrap();
    let mut env = registry_env(&name);
    env.push(("MODEL_VERSION", version));
    let predictor = Predictor::start(&env).unwrap();
    let c = http();
    let names = model::features::FEATURE_NAMES;
    let rows = vec![archive_row(1), archive_row(6)];
    let (_, expected) = predict(&c, &predictor, json!(rows)).await;
    let records: Vec<Value> = rows
        .iter()
        .map(|r| {
            names
                .iter()
                .zip(r.as_array().unwrap())
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect();
    let columns: serde_json::Map<String, Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), json!([rows[0][i], rows[1][i]])))
        .collect();
    let bodies = [
        json!({"dataframe_split": {"columns": names, "data": rows}}),
        json!({"dataframe_records": records}),
        json!({"instances": rows}),
        json!({"inputs": rows}),
        json!({"inputs": columns}),
    ];
    for body in bodies {
        let (status, answer) =
            post_json(&c, &format!("{}/invocations", predictor.url), &body, None)
                .await
                .unwrap();
        assert_eq!(status, 200, "{body}: {answer}");
        assert_eq!(answer["predictions"], expected["predictions"], "{body}");
    }
    // CSV with a header row, columns in any order (as pandas.read_csv takes it).
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.reverse();
    let mut csv = order
        .iter()
        .map(|&i| names[i])
        .collect::<Vec<_>>()
        .join(",");
    for row in &rows {
        csv.push('\n');
        csv.push_str(
            &order
                .iter()
                .map(|&i| row[i].to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    let (status, answer) = post_typed(
        &c,
        &format!("{}/invocations", predictor.url),
        "text/csv; charset=utf-8",
        csv.clone(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{csv}: {answer}");
    assert_eq!(answer["predictions"], expected["predictions"], "{csv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reloads_leave_one_consistent_model() {
    let name = unique_name("concurrent");
    let v1 = train_and_register(&name, 11, &[]).unwrap();
    let v2 = train_and_register(&name, 12, &[]).unwrap();
    let mut env = registry_env(&name);
    env.push(("MODEL_VERSION", v1.clone()));
    let predictor = Predictor::start(&env).unwrap();
    let c = http();
    let url = format!("{}/reload-model", predictor.url);
    let mut digests = std::collections::HashMap::new();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let version = if i % 2 == 0 { v1.clone() } else { v2.clone() };
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            post_json(&c, &url, &json!({ "version": version }), None)
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        let d = digests
            .entry(body["new_version"].as_str().unwrap().to_owned())
            .or_insert_with(|| body["digest"].clone());
        assert_eq!(*d, body["digest"], "one version, two digests");
    }
    let info = model_info(&c, &predictor).await;
    let served = info["model_version"].as_str().unwrap();
    assert_eq!(info["digest"], digests[served], "info mixes two versions");
    let (_, p) = predict(&c, &predictor, json!([archive_row(2)])).await;
    assert_eq!(p["model_version"], served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecastctl_errors_say_what_failed() {
    let out = forecastctl_output(&[
        "promote",
        "--name",
        &unique_name("none"),
        "--version",
        "1",
        "--alias",
        "x",
    ])
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not found"), "{stderr}");

    let out = std::process::Command::new(bin("forecastctl"))
        .args(["status", "--name", "x"])
        .env(
            "MLFLOW_TRACKING_URI",
            format!("http://127.0.0.1:{}", closed_port()),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unreachable"), "{stderr}");

    let out = forecastctl_output(&["promote", "--name", "x", "--version", "1"]).unwrap();
    assert!(
        !out.status.success(),
        "promote without --alias or --stage must fail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_answers_while_sixteen_clients_send_ten_thousand_row_requests() {
    let name = unique_name("heavy");
    let version = train_and_register(&name, 19, &[]).unwrap();
    let mut env = registry_env(&name);
    env.push(("MODEL_VERSION", version));
    // Requests queue for a core here; their deadline is not what this test is about.
    env.push(("PREDICTOR_PREDICT_TIMEOUT_MS", "300000".into()));
    let predictor = Predictor::start(&env).unwrap();
    let rows: Vec<Value> = (0..10_000).map(archive_row).collect();
    let body = Arc::new(json!({ "instances": rows }).to_string());
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (body, stop, served) = (body.clone(), stop.clone(), served.clone());
        let url = format!("{}/predict", predictor.url);
        clients.push(tokio::spawn(async move {
            let c = http();
            while !stop.load(Ordering::Relaxed) {
                let r = c
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.as_str().to_owned())
                    .send()
                    .await;
                if let Ok(r) = r {
                    assert_eq!(r.status(), 200, "a heavy request failed");
                    let _ = r.bytes().await;
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Every core is busy predicting before /health is timed.
    wait_for_count(&served, 16).await;
    let c = http();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = std::time::Instant::now();
        let r = c
            .get(format!("{}/health", predictor.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    // A generous bound: it guards starvation (a /health queued behind predictions takes
    // seconds), not speed.
    assert!(
        slowest < Duration::from_secs(1),
        "/health took {slowest:?} while predictions ran"
    );
}

/// A proxy that records the first line of every request it gets and answers 502.
struct RecordingProxy {
    url: String,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
}

impl RecordingProxy {
    async fn start() -> RecordingProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = vec![0u8; 4096];
                    let n = stream.read(&mut head).await.unwrap_or(0);
                    let line = String::from_utf8_lossy(&head[..n])
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock().unwrap().push(line);
                    let _ = stream
                        .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        RecordingProxy { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_calls_ignore_the_proxy_environment_and_go_only_through_mlflow_proxy() {
    let name = unique_name("proxy");
    let v1 = train_and_register(&name, 1, &["--alias", "champion"]).unwrap();
    let proxy = RecordingProxy::start().await;
    let mut env = registry_env(&name);
    env.push(("MODEL_ALIAS", "champion".into()));
    // What a ForecastModel author could once put in the predictor's environment: the
    // registry calls, with their Authorization header, would go to this proxy.
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "all_proxy",
    ] {
        env.push((var, proxy.url.clone()));
    }
    let predictor = Predictor::start(&env).unwrap();
    let c = http();
    let info = model_info(&c, &predictor).await;
    assert_eq!(
        (info["origin"].as_str(), info["model_version"].as_str()),
        (Some("registry"), Some(v1.as_str())),
        "{info}"
    );
    assert!(
        proxy.requests().is_empty(),
        "registry calls went through the environment's proxy: {:?}",
        proxy.requests()
    );

    // The one proxy the predictor takes is MLFLOW_PROXY (set by the operator from its own
    // PREDICTOR_REGISTRY_PROXY).
    let mut env = registry_env(&name);
    env.push(("MODEL_ALIAS", "champion".into()));
    env.push(("MLFLOW_PROXY", proxy.url.clone()));
    let _through_proxy = Predictor::start(&env).unwrap();
    forecast_e2e::cluster::wait_until(
        "a registry call through MLFLOW_PROXY",
        Duration::from_secs(30),
        || async { !proxy.requests().is_empty() },
    )
    .await;
    assert!(
        proxy.requests()[0].contains(&name) || proxy.requests()[0].contains("registered-models"),
        "{:?}",
        proxy.requests()
    );
}
