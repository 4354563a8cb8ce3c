//! Liveness and readiness, in the old service's words and as `mlflow models serve`
//! answers them (`/ping`, `/version`), so its scoring clients work unchanged.

use actix_web::{HttpResponse, get, web};
use api::predictor::StatusResponse;

use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health)
        .service(ready)
        .service(ping)
        .service(version);
}

/// Liveness: the process serves HTTP (with or without a model).
#[get("/health")]
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let model = state.current();
    HttpResponse::Ok().json(StatusResponse {
        status: "healthy".into(),
        model_loaded: model.is_some(),
        model_version: model.map(|m| m.info.model_version.clone()),
    })
}

/// Readiness: a model is loaded.
#[get("/ready")]
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.current() {
        Some(m) => HttpResponse::Ok().json(StatusResponse {
            status: "ready".into(),
            model_loaded: true,
            model_version: Some(m.info.model_version.clone()),
        }),
        None => HttpResponse::ServiceUnavailable().json(StatusResponse {
            status: "no model loaded".into(),
            model_loaded: false,
            model_version: None,
        }),
    }
}

/// MLflow's scoring protocol: 200 once a model serves, else 503.
#[get("/ping")]
async fn ping(state: web::Data<AppState>) -> HttpResponse {
    if state.current().is_some() {
        HttpResponse::Ok()
            .content_type("application/json")
            .body("\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("application/json")
            .body("\n")
    }
}

/// MLflow's scoring protocol: the server's version as plain text.
#[get("/version")]
async fn version() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(env!("CARGO_PKG_VERSION"))
}
