//! A route's body to its rows: the fast reader first (`stream.rs`, straight into the
//! matrix); a body it does not read goes to the tree reader (`serde_json::Value`, the
//! functions of `input`), which answers it — with the message it always gave, told where
//! the fast reader stopped when the JSON itself is at fault.

use serde_json::Value;

use super::matrix::Matrix;
use super::stream::{Route, Stopped, read_csv, read_json};
use super::{Schema, rows_from_columns, rows_from_csv, rows_from_instances, rows_from_split};
use crate::body::parse_json;
use crate::error::ApiError;

/// `/predict`'s `{"instances": [...]}`.
pub fn predict_rows(body: &[u8], schema: &Schema<'_>, max: usize) -> Result<Matrix, ApiError> {
    fast_else_tree(body, Route::Predict, schema, max, || {
        let request: api::predictor::PredictRequest = serde_json::from_value(parse_json(body)?)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
        rows_from_instances(&request.instances, schema, max).map_err(ApiError::BadRequest)
    })
}

/// `/invocations`' JSON formats.
pub fn invocation_rows(body: &[u8], schema: &Schema<'_>, max: usize) -> Result<Matrix, ApiError> {
    fast_else_tree(body, Route::Invocations, schema, max, || {
        rows_from_body(&parse_json(body)?, schema, max).map_err(ApiError::BadRequest)
    })
}

/// The fast reader's rows, else the tree reader's (`tree`) answer, located where the fast
/// reader stopped.
fn fast_else_tree(
    body: &[u8],
    route: Route,
    schema: &Schema<'_>,
    max: usize,
    tree: impl FnOnce() -> Result<Vec<Vec<f64>>, ApiError>,
) -> Result<Matrix, ApiError> {
    read_json(body, route, schema, max).or_else(|stopped| {
        tree()
            .map(|rows| Matrix::from_rows(rows, schema.features.len()))
            .map_err(|e| locate(e, stopped, schema))
    })
}

/// The tree reader alone, as every `/invocations` JSON body was read before the fast
/// reader (benchmarks compare the two).
pub fn invocation_rows_by_tree(
    body: &[u8],
    schema: &Schema<'_>,
    max: usize,
) -> Result<Matrix, ApiError> {
    rows_from_body(&parse_json(body)?, schema, max)
        .map(|rows| Matrix::from_rows(rows, schema.features.len()))
        .map_err(ApiError::BadRequest)
}

/// `/invocations`' CSV.
pub fn csv_rows(body: &[u8], schema: &Schema<'_>, max: usize) -> Result<Matrix, ApiError> {
    read_csv(body, schema, max).or_else(|_| {
        rows_from_csv(body, schema, max)
            .map(|rows| Matrix::from_rows(rows, schema.features.len()))
            .map_err(ApiError::BadRequest)
    })
}

/// Malformed JSON inside a row is told with the row and feature it was in.
fn locate(e: ApiError, stopped: Stopped, schema: &Schema<'_>) -> ApiError {
    match (e, stopped) {
        (ApiError::BadRequest(message), Some((row, feature)))
            if message.starts_with("malformed JSON") =>
        {
            let feature = feature
                .and_then(|f| schema.features.get(f))
                .map(|name| format!(", feature {name:?}"))
                .unwrap_or_default();
            ApiError::BadRequest(format!("instance {row}{feature}: {message}"))
        }
        (e, _) => e,
    }
}

const FORMATS: &str = "dataframe_split, dataframe_records, instances, inputs";

/// Rows from any of MLflow's JSON formats, or why not (the tree reader).
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

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
