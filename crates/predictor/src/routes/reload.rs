use actix_web::{HttpRequest, HttpResponse, post, web};
use api::predictor::ReloadRequest;

use crate::body::read_limited;
use crate::error::ApiError;
use crate::routes::BodyLimit;
use crate::routes::admin::authorise;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(reload_model);
}

/// Admin: load a version (or the configured selector again), verify, swap atomically.
/// The body is optional.
#[post("/reload-model")]
async fn reload_model(
    state: web::Data<AppState>,
    limit: web::Data<BodyLimit>,
    http: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_limited(&http, body, &limit).await?;
    authorise(&state, &http, &body)?;
    let request: ReloadRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReloadRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("malformed reload request: {e}")))?
    };
    let response = state.reload(request).await?;
    Ok(HttpResponse::Ok().json(response))
}
