//! `POST /invocations`: MLflow's scoring-server formats (JSON, and CSV with a header row),
//! so clients of `mlflow models serve` switch unchanged.

use actix_web::guard::GuardContext;
use actix_web::{HttpResponse, post, web};
use api::predictor::InvocationsResponse;
use serde_json::Value;

use crate::body::{parse_json, read_limited};
use crate::error::ApiError;
use crate::input::{rows_from_columns, rows_from_csv, rows_from_instances, rows_from_split};
use crate::loader::ServedModel;
use crate::state::AppState;

/// The largest request body, in bytes (`PREDICTOR_MAX_BODY_BYTES`).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

pub fn configure(cfg: &mut web::ServiceConfig) {
    // The CSV route first: it only takes `Content-Type: text/csv`.
    cfg.service(invocations_csv).service(invocations);
}

fn is_csv(ctx: &GuardContext) -> bool {
    ctx.header::<actix_web::http::header::ContentType>()
        .is_some_and(|ct| ct.essence_str() == "text/csv")
}

fn answer(
    state: &AppState,
    model: &ServedModel,
    rows: &[Vec<f64>],
) -> Result<HttpResponse, ApiError> {
    let predictions = crate::error::finite(model.predict(rows))?;
    state.metrics.count_predictions(predictions.len());
    Ok(HttpResponse::Ok().json(InvocationsResponse { predictions }))
}

#[post("/invocations", guard = "is_csv")]
async fn invocations_csv(
    state: web::Data<AppState>,
    limit: web::Data<BodyLimit>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_limited(body, &limit).await?;
    let model = state.current().ok_or(ApiError::NoModel)?;
    let rows =
        rows_from_csv(&body, &model.schema(), state.max_instances).map_err(ApiError::BadRequest)?;
    answer(&state, &model, &rows)
}

const FORMATS: &str = "dataframe_split, dataframe_records, instances, inputs";

#[post("/invocations")]
async fn invocations(
    state: web::Data<AppState>,
    limit: web::Data<BodyLimit>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = parse_json(&read_limited(body, &limit).await?)?;
    let model = state.current().ok_or(ApiError::NoModel)?;
    let features = &model.schema();
    let max = state.max_instances;
    let object = body.as_object().ok_or_else(|| {
        ApiError::BadRequest(format!("expected a JSON object with one of: {FORMATS}"))
    })?;
    let keys: Vec<&str> = object
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "params")
        .collect();
    let rows = match keys.as_slice() {
        ["dataframe_split"] => {
            let split = object["dataframe_split"].as_object().ok_or_else(|| {
                ApiError::BadRequest("dataframe_split must be an object with `data`".into())
            })?;
            let data = split.get("data").and_then(Value::as_array).ok_or_else(|| {
                ApiError::BadRequest("dataframe_split.data must be an array".into())
            })?;
            let columns = match split.get("columns") {
                None => None,
                Some(Value::Array(c)) => Some(c.as_slice()),
                Some(_) => {
                    return Err(ApiError::BadRequest(
                        "dataframe_split.columns must be an array".into(),
                    ));
                }
            };
            rows_from_split(columns, data, features, max)
        }
        ["dataframe_records"] => match &object["dataframe_records"] {
            Value::Array(records) => rows_from_instances(records, features, max),
            _ => Err("dataframe_records must be an array of objects".into()),
        },
        ["instances"] => match &object["instances"] {
            Value::Array(instances) => rows_from_instances(instances, features, max),
            _ => Err("instances must be an array".into()),
        },
        ["inputs"] => match &object["inputs"] {
            Value::Array(instances) => rows_from_instances(instances, features, max),
            Value::Object(columns) => rows_from_columns(columns, features, max),
            _ => Err("inputs must be an array of rows or an object of columns".into()),
        },
        _ => Err(format!(
            "expected exactly one of: {FORMATS}; found: [{}]",
            keys.join(", ")
        )),
    }
    .map_err(ApiError::BadRequest)?;
    answer(&state, &model, &rows)
}
