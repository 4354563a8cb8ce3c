use actix_web::{HttpResponse, get, web};

use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(metrics);
}

#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // Drift is computed when asked for: counting a request only adds to its bins.
    match state.current() {
        Some(model) => state
            .metrics
            .set_drift(&model.info.model_version, &model.drift.report()),
        None => state.metrics.set_drift("", &Default::default()),
    }
    match state.metrics.encode() {
        Ok(text) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(text),
        Err(e) => HttpResponse::InternalServerError().body(format!("cannot encode metrics: {e}")),
    }
}
