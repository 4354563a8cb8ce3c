use actix_web::{HttpResponse, get, web};

use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(model_info);
}

#[get("/model/info")]
async fn model_info(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let model = state.current().ok_or(ApiError::NoModel)?;
    let mut info = model.info.clone();
    info.shadow = state.shadow.info();
    info.drift = Some(model.drift.report());
    Ok(HttpResponse::Ok().json(info))
}
