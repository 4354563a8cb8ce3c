use actix_web::{HttpRequest, HttpResponse, post, web};
use api::predictor::PredictResponse;

use crate::body::read_limited;
use crate::error::ApiError;
use crate::input::predict_rows;
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
    let (predictions, model) = score(&state, body.len(), move |schema, max| {
        predict_rows(&body, schema, max)
    })
    .await?;
    Ok(HttpResponse::Ok().json(PredictResponse {
        predictions,
        model_name: model.info.model_name.clone(),
        model_version: model.info.model_version.clone(),
    }))
}
