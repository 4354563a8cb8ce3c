//! Admin: the shadow challenger. `POST /shadow-model {"version": V}` loads V beside the
//! served model; `DELETE /shadow-model` unloads it. Its comparison shows in `/model/info`
//! and `/metrics`.

use actix_web::{HttpRequest, HttpResponse, delete, post, web};
use api::predictor::ShadowRequest;

use crate::body::read_limited;
use crate::error::ApiError;
use crate::routes::BodyLimit;
use crate::routes::admin::authorise;
use crate::state::AppState;

/// The largest `POST /shadow-model` body.
const MAX_BODY: usize = 4096;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(load_shadow).service(unload_shadow);
}

#[post("/shadow-model")]
async fn load_shadow(
    state: web::Data<AppState>,
    http: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_limited(&http, body, &BodyLimit(MAX_BODY)).await?;
    authorise(&state, &http, &body)?;
    let request: ShadowRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("malformed shadow request: {e}")))?;
    let response = state.load_shadow(request).await?;
    Ok(HttpResponse::Ok().json(response))
}

#[delete("/shadow-model")]
async fn unload_shadow(
    state: web::Data<AppState>,
    http: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorise(&state, &http, b"")?;
    Ok(HttpResponse::Ok().json(state.unload_shadow().await))
}
