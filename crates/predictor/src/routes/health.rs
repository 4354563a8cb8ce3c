use actix_web::{HttpResponse, get, web};
use api::predictor::StatusResponse;

use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health).service(ready);
}

/// Liveness: the process serves HTTP.
#[get("/health")]
async fn health(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(StatusResponse {
        status: "ok".into(),
        model_version: state.current().map(|m| m.info.model_version.clone()),
    })
}

/// Readiness: a model is loaded.
#[get("/ready")]
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.current() {
        Some(m) => HttpResponse::Ok().json(StatusResponse {
            status: "ready".into(),
            model_version: Some(m.info.model_version.clone()),
        }),
        None => HttpResponse::ServiceUnavailable().json(StatusResponse {
            status: "no model loaded".into(),
            model_version: None,
        }),
    }
}
