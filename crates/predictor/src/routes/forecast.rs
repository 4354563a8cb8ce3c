//! `POST /forecast`: the next days of archive ingest from the days before, for a model
//! that takes the archive-forecast features.

use actix_web::{HttpRequest, HttpResponse, post, web};
use api::predictor::ForecastRequest;

use crate::body::read_limited;
use crate::error::ApiError;
use crate::forecasting::{forecast_days, history_from_json, layout_of};
use crate::routes::BodyLimit;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(forecast);
}

#[post("/forecast")]
async fn forecast(
    state: web::Data<AppState>,
    limit: web::Data<BodyLimit>,
    request: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // A model that cannot forecast is answered before the body is read.
    let model = state.current().ok_or(ApiError::NoModel)?;
    layout_of(&model)?;
    let body = read_limited(&request, body, &limit).await?;
    let asked: ForecastRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("malformed forecast request: {e}")))?;
    let history = history_from_json(&asked.history)?;
    let forecasted = forecast_days(&state, history, asked.horizon).await?;
    Ok(HttpResponse::Ok().json(forecasted.response()))
}
