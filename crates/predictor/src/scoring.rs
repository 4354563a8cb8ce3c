//! One prediction request, whatever its format: rows read with the served model's schema,
//! predicted on the HTTP worker when small or on the compute pool, recorded under the version that answered, and offered to
//! the shadow challenger.

use std::sync::Arc;
use std::time::Instant;

use actix_web::ResponseError;

use crate::error::{ApiError, finite};
use crate::input::{Matrix, Schema};
use crate::loader::ServedModel;
use crate::metrics::versions::Outcome;
use crate::state::AppState;

/// Bodies up to this many bytes are read on the HTTP worker that received them: parsing
/// a few KiB costs microseconds, less than handing the work to the compute pool and back
/// (which halved single-row throughput when every request paid it).
pub const INLINE_BODY_BYTES: usize = 16 * 1024;

/// Rows × trees up to which a request read on the HTTP worker is also predicted there:
/// 16,384 tree walks is ~0.25 ms of a worker (about 160 rows of a 100-tree forest), while
/// the hand-off to the pool and back costs ~30 µs (measured: 64 rows of a 100-tree forest
/// took 5.5 µs per row through the pool, 5.0 inline). Past it the rows go to the compute
/// pool under the deadline, so `/health` and small requests never wait behind big ones.
pub const INLINE_TREE_WALKS: usize = 16_384;

/// Where a request's work runs, decided from what is known before and after reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Read and predicted on the HTTP worker.
    Inline,
    /// Read on the HTTP worker, predicted on the compute pool.
    PredictOnPool,
    /// Read and predicted on the compute pool.
    Pool,
}

/// Where a body of `body_bytes` is read: small ones inline, the rest on the pool.
pub fn read_placement(body_bytes: usize) -> Placement {
    if body_bytes <= INLINE_BODY_BYTES {
        Placement::Inline
    } else {
        Placement::Pool
    }
}

/// Where `rows` read inline are predicted, for a model of `trees` trees.
pub fn predict_placement(rows: usize, trees: usize) -> Placement {
    if rows.saturating_mul(trees.max(1)) <= INLINE_TREE_WALKS {
        Placement::Inline
    } else {
        Placement::PredictOnPool
    }
}

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
    let answer = match read_placement(body_bytes) {
        Placement::Inline => match rows(&model.schema(), max) {
            Err(e) => Err(e),
            Ok(rows) => match predict_placement(rows.rows(), model.info.n_trees) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_and_few_tree_walks_stay_on_the_worker() {
        assert_eq!(read_placement(200), Placement::Inline);
        assert_eq!(read_placement(INLINE_BODY_BYTES), Placement::Inline);
        assert_eq!(read_placement(INLINE_BODY_BYTES + 1), Placement::Pool);
        assert_eq!(predict_placement(1, 100), Placement::Inline);
        assert_eq!(predict_placement(163, 100), Placement::Inline);
        assert_eq!(predict_placement(164, 100), Placement::PredictOnPool);
        assert_eq!(predict_placement(16_384, 0), Placement::Inline);
        assert_eq!(predict_placement(usize::MAX, 2), Placement::PredictOnPool);
    }
}
