//! The forecast predictor: an actix-web service that serves one model from the MLflow
//! registry (or the fallback directory) and swaps it atomically on reload.

pub mod body;
pub mod compute;
pub mod config;
pub mod drift;
pub mod error;
pub mod explaining;
pub mod forecasting;
pub mod input;
pub mod loader;
pub mod metrics;
pub mod nonces;
pub mod routes;
pub mod scoring;
pub mod shadow;
pub mod state;
pub mod ui;

use actix_web::web;

/// Registers the state, the JSON limits and every route; used by `main` and by tests.
pub fn configure_app(
    state: web::Data<state::AppState>,
    max_body_bytes: usize,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        let ui = state.ui;
        cfg.app_data(state)
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body_bytes)
                    .content_type_required(false)
                    .error_handler(error::json_error),
            )
            .app_data(web::PayloadConfig::default().limit(max_body_bytes))
            .app_data(web::Data::new(routes::BodyLimit(max_body_bytes)))
            .configure(routes::configure);
        if ui {
            cfg.configure(ui::configure);
        }
    }
}
