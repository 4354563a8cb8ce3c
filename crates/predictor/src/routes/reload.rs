use actix_web::{HttpRequest, HttpResponse, post, web};
use api::predictor::ReloadRequest;

use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(reload_model);
}

/// Admin: load a version (or the configured selector again), verify, swap atomically.
/// The body is optional.
#[post("/reload-model")]
async fn reload_model(
    state: web::Data<AppState>,
    http: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorise(&state, &http)?;
    let request: ReloadRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReloadRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("malformed reload request: {e}")))?
    };
    let response = state.reload(request).await?;
    Ok(HttpResponse::Ok().json(response))
}

fn authorise(state: &AppState, http: &HttpRequest) -> Result<(), ApiError> {
    let Some(expected) = state.admin_token.as_deref() else {
        return Ok(());
    };
    let given = http
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Compares without an early exit so the time taken does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
