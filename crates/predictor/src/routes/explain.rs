//! `POST /explain`: why each prediction is what it is — the bodies of `/predict` and
//! `/invocations` (JSON, and CSV with a header row), answered with exact TreeSHAP
//! contributions per feature.

use actix_web::{HttpRequest, HttpResponse, post, web};
use api::predictor::ExplainResponse;

use crate::body::read_limited;
use crate::error::ApiError;
use crate::explaining::{Explained, explain};
use crate::input::{csv_rows, invocation_rows};
use crate::routes::BodyLimit;
use crate::routes::invocations::is_csv;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    // The CSV route first: it only takes `Content-Type: text/csv`.
    cfg.service(explain_csv).service(explain_json);
}

fn answer(explained: Explained) -> HttpResponse {
    let info = &explained.model.info;
    HttpResponse::Ok().json(ExplainResponse {
        model_name: info.model_name.clone(),
        model_version: info.model_version.clone(),
        feature_names: info.feature_names.clone(),
        expected_value: explained.expected_value,
        explanations: explained.rows,
    })
}

#[post("/explain", guard = "is_csv")]
async fn explain_csv(
    state: web::Data<AppState>,
    limit: web::Data<BodyLimit>,
    request: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_limited(&request, body, &limit).await?;
    let explained = explain(&state, move |schema, max| csv_rows(&body, schema, max)).await?;
    Ok(answer(explained))
}

/// `/predict`'s `{"instances": ...}` and `/invocations`' `dataframe_split`,
/// `dataframe_records` and `inputs`.
#[post("/explain")]
async fn explain_json(
    state: web::Data<AppState>,
    limit: web::Data<BodyLimit>,
    request: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_limited(&request, body, &limit).await?;
    let explained = explain(&state, move |schema, max| {
        invocation_rows(&body, schema, max)
    })
    .await?;
    Ok(answer(explained))
}
