//! `POST /invocations`: MLflow's scoring-server formats (JSON, and CSV with a header row),
//! so clients of `mlflow models serve` switch unchanged.

use actix_web::guard::GuardContext;
use actix_web::{HttpRequest, HttpResponse, post, web};
use api::predictor::InvocationsResponse;

use crate::body::read_limited;
use crate::error::ApiError;
use crate::input::{Matrix, Schema, csv_rows, invocation_rows};
use crate::scoring::score;
use crate::state::AppState;

/// The largest request body, in bytes (`PREDICTOR_MAX_BODY_BYTES`).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

pub fn configure(cfg: &mut web::ServiceConfig) {
    // The CSV route first: it only takes `Content-Type: text/csv`.
    cfg.service(invocations_csv).service(invocations);
}

/// Whether a request's `Content-Type` is `text/csv` (its parameters aside).
pub(super) fn is_csv(ctx: &GuardContext) -> bool {
    ctx.header::<actix_web::http::header::ContentType>()
        .is_some_and(|ct| ct.essence_str() == "text/csv")
}

/// Reads the rows with `rows`, scores them (`scoring::score`), and answers MLflow's
/// `{"predictions": [...]}`.
async fn answer(
    state: &AppState,
    body_bytes: usize,
    rows: impl FnOnce(&Schema<'_>, usize) -> Result<Matrix, ApiError> + Send + 'static,
) -> Result<HttpResponse, ApiError> {
    let (predictions, _) = score(state, body_bytes, rows).await?;
    Ok(HttpResponse::Ok().json(InvocationsResponse { predictions }))
}

#[post("/invocations", guard = "is_csv")]
async fn invocations_csv(
    state: web::Data<AppState>,
    limit: web::Data<BodyLimit>,
    request: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_limited(&request, body, &limit).await?;
    answer(&state, body.len(), move |schema, max| {
        csv_rows(&body, schema, max)
    })
    .await
}

#[post("/invocations")]
async fn invocations(
    state: web::Data<AppState>,
    limit: web::Data<BodyLimit>,
    request: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_limited(&request, body, &limit).await?;
    answer(&state, body.len(), move |schema, max| {
        invocation_rows(&body, schema, max)
    })
    .await
}
