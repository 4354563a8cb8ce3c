//! One prediction request, whatever its format: rows read with the served model's schema,
//! predicted on the HTTP worker when small or on the compute pool (`compute::Inline`),
//! recorded under the version that answered, and offered to the shadow challenger.

use std::sync::Arc;
use std::time::Instant;

use actix_web::ResponseError;

use crate::compute::Placement;
use crate::error::{ApiError, finite};
use crate::input::{Matrix, Schema};
use crate::loader::ServedModel;
use crate::metrics::versions::Outcome;
use crate::state::AppState;

/// The predictions and the model that made them (held for the whole request: a concurrent
/// reload cannot change it midway). `rows` reads the request's rows for a schema and a
/// maximum row count. A small request (`body_bytes`, then rows × trees) is read and
/// predicted on the HTTP worker; a larger one on the compute pool, under its deadline.
pub async fn score<F>(
    state: &AppState,
    body_bytes: usize,
    rows: F,
) -> Result<(Vec<f64>, Arc<ServedModel>), ApiError>
where
    F: FnOnce(&Schema<'_>, usize) -> Result<Matrix, ApiError> + Send + 'static,
{
    let model = state.current().ok_or(ApiError::NoModel)?;
    let started = Instant::now();
    let worker = model.clone();
    let max = state.max_instances;
    let inline = state.compute.inline();
    let answer = match inline.read_placement(body_bytes) {
        Placement::Inline => match rows(&model.schema(), max) {
            Err(e) => Err(e),
            Ok(rows) => match inline.predict_placement(rows.rows(), model.info.n_trees) {
                Placement::Inline => finite(model.predict(&rows)).map(|p| (rows, p)),
                _ => {
                    state
                        .compute
                        .run(move || {
                            let predictions = finite(worker.predict(&rows))?;
                            Ok((rows, predictions))
                        })
                        .await
                }
            },
        },
        _ => {
            state
                .compute
                .run(move || {
                    let rows = rows(&worker.schema(), max)?;
                    let predictions = finite(worker.predict(&rows))?;
                    Ok((rows, predictions))
                })
                .await
        }
    };
    let version = &model.info.model_version;
    let seconds = started.elapsed().as_secs_f64();
    let versions = &state.metrics.versions;
    match answer {
        Ok((rows, predictions)) => {
            versions.observe_request(version, Outcome::Ok, seconds, &predictions);
            state.metrics.count_predictions(predictions.len());
            model.drift.observe(&rows);
            state.shadow.offer(&model, rows, &predictions);
            Ok((predictions, model))
        }
        Err(e) => {
            // Only what the model did is the version's error: a deadline passed while the
            // pod was busy says nothing about the version (anyone who can flood a canary
            // pod would fail a good version with it, or dilute a bad one's errors).
            let outcome = match &e {
                ApiError::PredictTimeout(_) => Outcome::Timeout,
                e if e.status_code().is_server_error() => Outcome::Error,
                _ => Outcome::Rejected,
            };
            versions.observe_request(version, outcome, seconds, &[]);
            Err(e)
        }
    }
}
