//! `POST /invocations`: MLflow's scoring-server formats (JSON, and CSV with a header row),
//! so clients of `mlflow models serve` switch unchanged.

use actix_web::guard::GuardContext;
use actix_web::{HttpRequest, HttpResponse, post, web};
use api::predictor::InvocationsResponse;
use serde_json::Value;

use crate::body::{parse_json, read_limited};
use crate::error::ApiError;
use crate::input::{
    Schema, rows_from_columns, rows_from_csv, rows_from_instances, rows_from_split,
};
use crate::scoring::score;
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

/// Reads the rows with `rows`, scores them (`scoring::score`), and answers MLflow's
/// `{"predictions": [...]}`.
async fn answer(
    state: &AppState,
    rows: impl FnOnce(&Schema<'_>, usize) -> Result<Vec<Vec<f64>>, ApiError> + Send + 'static,
) -> Result<HttpResponse, ApiError> {
    let (predictions, _) = score(state, rows).await?;
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
    answer(&state, move |schema, max| {
        rows_from_csv(&body, schema, max).map_err(ApiError::BadRequest)
    })
    .await
}

const FORMATS: &str = "dataframe_split, dataframe_records, instances, inputs";

#[post("/invocations")]
async fn invocations(
    state: web::Data<AppState>,
    limit: web::Data<BodyLimit>,
    request: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_limited(&request, body, &limit).await?;
    answer(&state, move |features, max| {
        rows_from_body(&parse_json(&body)?, features, max).map_err(ApiError::BadRequest)
    })
    .await
}

/// Rows from any of MLflow's JSON formats, or why not.
fn rows_from_body(
    body: &Value,
    features: &Schema<'_>,
    max: usize,
) -> Result<Vec<Vec<f64>>, String> {
    let object = body
        .as_object()
        .ok_or_else(|| format!("expected a JSON object with one of: {FORMATS}"))?;
    let keys: Vec<&str> = object
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "params")
        .collect();
    match keys.as_slice() {
        ["dataframe_split"] => {
            let split = object["dataframe_split"]
                .as_object()
                .ok_or("dataframe_split must be an object with `data`")?;
            let data = split
                .get("data")
                .and_then(Value::as_array)
                .ok_or("dataframe_split.data must be an array")?;
            let columns = match split.get("columns") {
                None => None,
                Some(Value::Array(c)) => Some(c.as_slice()),
                Some(_) => return Err("dataframe_split.columns must be an array".into()),
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
}
