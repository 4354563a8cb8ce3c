//! Route-level tests with `actix_web::test` (no registry: a bundled model on disk).

use std::sync::Arc;

use actix_web::{App, test, web};
use api::selector::Selector;
use model::ensemble::*;
use predictor::loader::Loader;
use predictor::state::AppState;
use serde_json::{Value, json};

fn bundled_model_dir() -> tempfile::TempDir {
    model_dir_with_leaves(1.0, 2.0, PostTransform::None)
}

/// A one-split model: `a <= 0.5` predicts `post(100 + left)`, else `post(100 + right)`.
fn model_dir_with_leaves(left: f64, right: f64, post: PostTransform) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ensemble = TreeEnsemble::new(&EnsembleSpec {
        n_features: 2,
        preprocess: Vec::new(),
        aggregate: Aggregate::Sum,
        base_value: 100.0,
        post_transform: post,
        input_precision: InputPrecision::F64,
        trees: vec![TreeSpec {
            covers: None,
            nodes: vec![
                NodeSpec::Split {
                    feature: 0,
                    rule: SplitRule::Leq,
                    threshold: 0.5,
                    yes: 1,
                    no: 2,
                    missing_yes: false,
                    missing_no: false,
                    nan_as_zero: false,
                    zero_is_missing: false,
                },
                NodeSpec::Leaf { leaf: left },
                NodeSpec::Leaf { leaf: right },
            ],
        }],
    })
    .unwrap();
    let names = vec!["a".to_string(), "b".to_string()];
    model::write_model_dir(dir.path(), &ensemble, &names, &Default::default()).unwrap();
    dir
}

async fn state_with_bundled_model(dir: &std::path::Path, token: Option<&str>) -> Arc<AppState> {
    let loader = Loader {
        registry: None,
        model_name: "unit".into(),
        fallback_dir: Some(dir.to_owned()),
        cache_versions: 3,
        max_model_bytes: model::MAX_MODEL_FILE_BYTES,
        drift: Default::default(),
    };
    let state = Arc::new(AppState::new(
        loader,
        Selector::Alias("champion".into()),
        token.map(str::to_owned),
        100,
    ));
    state.load_initial().await.unwrap();
    state
}

macro_rules! app {
    ($state:expr) => {
        test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    predictor::metrics::track_latency,
                ))
                .configure(predictor::configure_app(
                    web::Data::from($state.clone()),
                    256,
                )),
        )
        .await
    };
}

#[actix_web::test]
async fn predict_answers_with_the_bundled_model_and_counts_it() {
    let dir = bundled_model_dir();
    let state = state_with_bundled_model(dir.path(), None).await;
    let app = app!(state);
    let req = test::TestRequest::post()
        .uri("/predict")
        .set_json(json!({"instances": [[0, 9], {"a": 1, "b": 0}]}))
        .to_request();
    let body: Value = test::call_and_read_body_json(&app, req).await;
    assert_eq!(body["predictions"], json!([101.0, 102.0]));
    assert_eq!(body["model_version"], "bundled");

    let req = test::TestRequest::get().uri("/metrics").to_request();
    let text = String::from_utf8(test::call_and_read_body(&app, req).await.to_vec()).unwrap();
    assert!(text.contains("predictor_predictions_total 2"), "{text}");
    assert!(text.contains("route=\"/predict\""), "{text}");
    assert!(text.contains("model_version=\"bundled\""), "{text}");
}

#[actix_web::test]
async fn reload_needs_the_bearer_token_and_without_a_registry_keeps_the_model() {
    let dir = bundled_model_dir();
    let state = state_with_bundled_model(dir.path(), Some("s3cret")).await;
    let app = app!(state);
    let req = test::TestRequest::post().uri("/reload-model").to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers().get("www-authenticate").unwrap(), "Bearer");

    let req = test::TestRequest::post()
        .uri("/reload-model")
        .insert_header(("authorization", "Bearer s3cret"))
        .set_payload("{\"version\": 3}")
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 409);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["error"], "no_registry");

    let req = test::TestRequest::post()
        .uri("/reload-model")
        .insert_header(("authorization", "Bearer s3cret"))
        .set_payload("{\"verison\": 3}")
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 400);

    // The scheme in any case; a version that is not a number never goes further.
    let req = test::TestRequest::post()
        .uri("/reload-model")
        .insert_header(("authorization", "bearer s3cret"))
        .set_payload("{\"version\": \"../../etc\"}")
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 400);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["error"], "invalid_version", "{body}");

    let req = test::TestRequest::get().uri("/model/info").to_request();
    let info: Value = test::call_and_read_body_json(&app, req).await;
    assert_eq!(info["model_version"], "bundled");
    assert_eq!(info["origin"], "fallback");
}

#[actix_web::test]
async fn the_operators_signature_is_good_once_for_its_request_and_this_pods_address() {
    use api::admin_signature::SignedRequest;
    let dir = bundled_model_dir();
    let mut state = Arc::try_unwrap(state_with_bundled_model(dir.path(), Some("s3cret")).await)
        .unwrap_or_else(|_| panic!("the state is not shared yet"));
    state.own_address = Some("10.0.0.7".into());
    let state = Arc::new(state);
    let app = app!(state);
    let body = br#"{"version": "3"}"#;
    let now = chrono::Utc::now().timestamp();
    let signed = |key: &str, authority: &str, body: &[u8], nonce: &str| {
        SignedRequest {
            method: "POST",
            path: "/reload-model",
            authority,
            body,
        }
        .sign(key, now, nonce)
    };
    let send = |header: String, host: &str, body: &'static [u8]| {
        test::TestRequest::post()
            .uri("/reload-model")
            .insert_header(("host", host.to_owned()))
            .insert_header(("authorization", header))
            .set_payload(body)
            .to_request()
    };
    // Signed for this pod: accepted (409: this pod has no registry to reload from).
    let header = signed("s3cret", "10.0.0.7:8080", body, "n1");
    let resp = test::call_service(&app, send(header.clone(), "10.0.0.7:8080", body)).await;
    assert_eq!(resp.status(), 409);
    // The same signature again: a replay.
    let resp = test::call_service(&app, send(header, "10.0.0.7:8080", body)).await;
    assert_eq!(resp.status(), 401);
    // Signed for another pod and sent here (with the Host it was signed for, or this one).
    let other = signed("s3cret", "10.0.0.8:8080", body, "n2");
    let resp = test::call_service(&app, send(other.clone(), "10.0.0.8:8080", body)).await;
    assert_eq!(resp.status(), 401);
    let resp = test::call_service(&app, send(other, "10.0.0.7:8080", body)).await;
    assert_eq!(resp.status(), 401);
    // Another body than the one signed, or another key.
    let header = signed("s3cret", "10.0.0.7:8080", body, "n3");
    let resp =
        test::call_service(&app, send(header, "10.0.0.7:8080", br#"{"version": "4"}"#)).await;
    assert_eq!(resp.status(), 401);
    let header = signed("guess", "10.0.0.7:8080", body, "n4");
    let resp = test::call_service(&app, send(header, "10.0.0.7:8080", body)).await;
    assert_eq!(resp.status(), 401);
    // People keep the bearer token.
    let resp = test::call_service(&app, send("Bearer s3cret".into(), "10.0.0.7:8080", body)).await;
    assert_eq!(resp.status(), 409);
}

#[actix_web::test]
async fn without_an_admin_token_only_local_clients_may_reload() {
    let dir = bundled_model_dir();
    let state = state_with_bundled_model(dir.path(), None).await;
    let app = app!(state);
    let from = |peer: &str| {
        test::TestRequest::post()
            .uri("/reload-model")
            .peer_addr(peer.parse().unwrap())
            .set_payload("{\"version\": 3}")
            .to_request()
    };
    let resp = test::call_service(&app, from("10.1.2.3:40000")).await;
    assert_eq!(resp.status(), 401);
    // A local client passes (and then meets the missing registry).
    let resp = test::call_service(&app, from("127.0.0.1:40000")).await;
    assert_eq!(resp.status(), 409);
}

#[actix_web::test]
async fn oversized_and_non_json_bodies_get_json_errors() {
    let dir = bundled_model_dir();
    let state = state_with_bundled_model(dir.path(), None).await;
    let app = app!(state);
    let big = format!("{{\"instances\": [{}]}}", vec!["[1, 2]"; 100].join(","));
    let req = test::TestRequest::post()
        .uri("/predict")
        .insert_header(("content-type", "application/json"))
        .set_payload(big)
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 413);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["error"], "payload_too_large");

    let req = test::TestRequest::post()
        .uri("/predict")
        .insert_header(("content-type", "application/json"))
        .set_payload("instances=1,2")
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 400);
    let body: Value = test::read_body_json(resp).await;
    assert!(body["message"].as_str().unwrap().contains("malformed JSON"));
}

#[actix_web::test]
async fn health_ping_and_version_answer_as_the_old_service_and_mlflow_serve_do() {
    let dir = bundled_model_dir();
    let state = state_with_bundled_model(dir.path(), None).await;
    let app = app!(state);
    let req = test::TestRequest::get().uri("/health").to_request();
    let body: Value = test::call_and_read_body_json(&app, req).await;
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["model_loaded"], true);
    let req = test::TestRequest::get().uri("/ping").to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 200);
    let req = test::TestRequest::get().uri("/version").to_request();
    let version = test::call_and_read_body(&app, req).await;
    assert_eq!(version, env!("CARGO_PKG_VERSION").as_bytes());

    // Without any model: alive, but not ready and ping fails.
    let empty = tempfile::tempdir().unwrap();
    let loader = Loader {
        registry: None,
        model_name: "unit".into(),
        fallback_dir: Some(empty.path().to_owned()),
        cache_versions: 3,
        max_model_bytes: model::MAX_MODEL_FILE_BYTES,
        drift: Default::default(),
    };
    let state = Arc::new(AppState::new(
        loader,
        Selector::Alias("champion".into()),
        None,
        100,
    ));
    assert!(state.load_initial().await.is_err());
    let app = app!(state);
    let req = test::TestRequest::get().uri("/health").to_request();
    let body: Value = test::call_and_read_body_json(&app, req).await;
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["model_loaded"], false);
    let req = test::TestRequest::get().uri("/ping").to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 503);
}

#[actix_web::test]
async fn python_nan_tokens_are_missing_values_refused_by_a_model_without_missing_support() {
    let dir = bundled_model_dir();
    let state = state_with_bundled_model(dir.path(), None).await;
    let app = app!(state);
    let req = test::TestRequest::post()
        .uri("/invocations")
        .insert_header(("content-type", "application/json; charset=utf-8"))
        .set_payload(r#"{"inputs": [[NaN, 1.0]], "params": {"x": 1}}"#)
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 400);
    let body: Value = test::read_body_json(resp).await;
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("does not accept missing values"),
        "{message}"
    );
    let req = test::TestRequest::post()
        .uri("/invocations")
        .insert_header(("content-type", "application/json; charset=utf-8"))
        .set_payload(r#"{"inputs": [[0.0, 1.0]], "params": {"x": 1}}"#)
        .to_request();
    let body: Value = test::call_and_read_body_json(&app, req).await;
    assert_eq!(body["predictions"], json!([101.0]));
}

#[actix_web::test]
async fn invented_methods_and_paths_share_one_metrics_label() {
    let dir = bundled_model_dir();
    let state = state_with_bundled_model(dir.path(), None).await;
    let app = app!(state);
    for i in 0..20 {
        let method = actix_web::http::Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        let req = test::TestRequest::default()
            .method(method)
            .uri(&format!("/random/{i}"))
            .to_request();
        let _ = test::call_service(&app, req).await;
    }
    let req = test::TestRequest::get().uri("/metrics").to_request();
    let text = String::from_utf8(test::call_and_read_body(&app, req).await.to_vec()).unwrap();
    assert!(
        !text.contains("BREW") && !text.contains("/random/"),
        "{text}"
    );
    assert!(text.contains("method=\"other\""), "{text}");
}

#[actix_web::test]
async fn a_non_finite_prediction_is_an_error_never_null() {
    // exp(100 - 100) = 1 on the left; exp(1100) overflows to infinity on the right.
    let dir = model_dir_with_leaves(-100.0, 1000.0, PostTransform::Exp);
    let state = state_with_bundled_model(dir.path(), None).await;
    let app = app!(state);
    let ok = test::TestRequest::post()
        .uri("/predict")
        .set_json(json!({"instances": [[0.0, 0.0]]}))
        .to_request();
    let body: Value = test::call_and_read_body_json(&app, ok).await;
    assert_eq!(body["predictions"], json!([1.0]));
    for (uri, payload) in [
        ("/predict", json!({"instances": [[0.0, 0.0], [1.0, 0.0]]})),
        (
            "/invocations",
            json!({"instances": [[0.0, 0.0], [1.0, 0.0]]}),
        ),
    ] {
        let req = test::TestRequest::post()
            .uri(uri)
            .set_json(&payload)
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(resp.status(), 500, "{uri}");
        let body: Value = test::read_body_json(resp).await;
        assert_eq!(body["error"], "prediction_not_finite", "{uri}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("row 1"),
            "{body}"
        );
    }
    // What the model did wrong is the version's error (canary analysis counts it).
    let req = test::TestRequest::get().uri("/metrics").to_request();
    let text = String::from_utf8(test::call_and_read_body(&app, req).await.to_vec()).unwrap();
    assert!(
        text.contains(r#"predictor_model_requests_total{version="bundled",outcome="error"} 2"#),
        "{text}"
    );
}

#[actix_web::test]
async fn a_missed_deadline_is_a_timeout_never_the_versions_error() {
    let dir = bundled_model_dir();
    let loader = Loader {
        registry: None,
        model_name: "unit".into(),
        fallback_dir: Some(dir.path().to_owned()),
        cache_versions: 3,
        max_model_bytes: model::MAX_MODEL_FILE_BYTES,
        drift: Default::default(),
    };
    let mut state = AppState::new(loader, Selector::Alias("champion".into()), None, 100);
    // Every request on the pool (small ones are answered on the HTTP worker otherwise).
    state.compute = predictor::compute::Compute::new(std::time::Duration::from_millis(20), 1)
        .with_inline(predictor::compute::Inline::never());
    let state = Arc::new(state);
    state.load_initial().await.unwrap();
    // A pod too busy to answer in time: work that never ends holds the only compute slot
    // (past its own deadline it keeps the slot), so every prediction misses its deadline.
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let busy = state.compute.run(move || {
        let _ = wait.recv();
        Ok(())
    });
    assert!(busy.await.is_err(), "the busy work outlived its deadline");
    let app = app!(state);
    for _ in 0..3 {
        let req = test::TestRequest::post()
            .uri("/predict")
            .set_json(json!({"instances": [[0, 9]]}))
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(resp.status(), 503);
        let body: Value = test::read_body_json(resp).await;
        assert_eq!(body["error"], "predict_timeout", "{body}");
    }
    let req = test::TestRequest::get().uri("/metrics").to_request();
    let text = String::from_utf8(test::call_and_read_body(&app, req).await.to_vec()).unwrap();
    assert!(
        text.contains(r#"predictor_model_requests_total{version="bundled",outcome="timeout"} 3"#),
        "{text}"
    );
    assert!(
        !text.contains(r#"outcome="error""#),
        "a timeout counted as the version's error: {text}"
    );
    release.send(()).unwrap();
}
