use actix_web::{HttpResponse, post, web};
use api::predictor::{PredictRequest, PredictResponse};

use crate::body::{parse_json, read_limited};
use crate::error::ApiError;
use crate::input::rows_from_instances;
use crate::routes::BodyLimit;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(predict);
}

#[post("/predict")]
async fn predict(
    state: web::Data<AppState>,
    limit: web::Data<BodyLimit>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_limited(body, &limit).await?;
    // Hold this model for the whole request: a concurrent reload cannot change it midway.
    let model = state.current();
    let max_instances = state.max_instances;
    let (predictions, model) = state
        .compute
        .run(move || {
            let request: PredictRequest = serde_json::from_value(parse_json(&body)?)
                .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
            let model = model.ok_or(ApiError::NoModel)?;
            let rows = rows_from_instances(&request.instances, &model.schema(), max_instances)
                .map_err(ApiError::BadRequest)?;
            Ok((crate::error::finite(model.predict(&rows))?, model))
        })
        .await?;
    state.metrics.count_predictions(predictions.len());
    Ok(HttpResponse::Ok().json(PredictResponse {
        predictions,
        model_name: model.info.model_name.clone(),
        model_version: model.info.model_version.clone(),
    }))
}
