use actix_web::{HttpRequest, HttpResponse, post, web};
use api::predictor::{PredictRequest, PredictResponse};

use crate::body::{parse_json, read_limited};
use crate::error::ApiError;
use crate::input::rows_from_instances;
use crate::routes::BodyLimit;
use crate::scoring::score;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(predict);
}

#[post("/predict")]
async fn predict(
    state: web::Data<AppState>,
    limit: web::Data<BodyLimit>,
    request: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_limited(&request, body, &limit).await?;
    let (predictions, model) = score(&state, move |schema, max| {
        let request: PredictRequest = serde_json::from_value(parse_json(&body)?)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
        rows_from_instances(&request.instances, schema, max).map_err(ApiError::BadRequest)
    })
    .await?;
    Ok(HttpResponse::Ok().json(PredictResponse {
        predictions,
        model_name: model.info.model_name.clone(),
        model_version: model.info.model_version.clone(),
    }))
}
