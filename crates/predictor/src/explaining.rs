//! One explanation request, whatever its format: rows read with the served model's
//! schema and explained on the compute pool (explaining a row costs far more than
//! predicting it: every node of every tree is visited), under the deadline. The work stops
//! at the deadline rather than finishing in the background, so a 10,000-row body holds a
//! core no longer than any other request may.

use std::sync::Arc;
use std::time::Instant;

use api::predictor::RowExplanation;
use model::TreeEnsemble;

use crate::error::ApiError;
use crate::input::{Matrix, Schema};
use crate::loader::ServedModel;
use crate::state::AppState;

/// Every row's explanation, the expected value, and the model that made them.
pub struct Explained {
    pub expected_value: f64,
    pub rows: Vec<RowExplanation>,
    pub model: Arc<ServedModel>,
}

/// Reads the rows with `rows` (for a schema and a maximum row count) and explains them.
/// A model that cannot be explained is answered before the body is read.
pub async fn explain<F>(state: &AppState, rows: F) -> Result<Explained, ApiError>
where
    F: FnOnce(&Schema<'_>, usize) -> Result<Matrix, ApiError> + Send + 'static,
{
    let model = state.current().ok_or(ApiError::NoModel)?;
    if let Some(why) = model.model.ensemble.explanations_unavailable() {
        return Err(ApiError::ExplanationsUnavailable(why));
    }
    let max = state.max_instances;
    let deadline = state.compute.deadline();
    let worker = model.clone();
    let started = Instant::now();
    let (expected_value, explained) = state
        .compute
        .run(move || {
            let rows = rows(&worker.schema(), max)?;
            explain_rows(&worker.model.ensemble, &rows, || {
                started.elapsed() > deadline
            })
            .map_err(|e| e.into_api(deadline))
        })
        .await?;
    state.metrics.count_explanations(explained.len());
    Ok(Explained {
        expected_value,
        rows: explained,
        model,
    })
}

/// Why explaining stopped.
#[derive(Debug, PartialEq)]
pub enum ExplainStop {
    /// `past_deadline` said so before the rows were done.
    Deadline,
    /// Row `0`'s prediction or a contribution is not finite.
    NotFinite(usize),
    /// The model refused (it cannot be explained, or a row is the wrong length).
    Model(String),
}

impl ExplainStop {
    fn into_api(self, deadline: std::time::Duration) -> ApiError {
        match self {
            ExplainStop::Deadline => ApiError::PredictTimeout(deadline),
            ExplainStop::NotFinite(row) => ApiError::NonFinitePrediction(row),
            ExplainStop::Model(why) => ApiError::ExplanationsUnavailable(why),
        }
    }
}

/// The expected value and each row's explanation; `past_deadline` is asked before each
/// row.
pub fn explain_rows(
    ensemble: &TreeEnsemble,
    rows: &Matrix,
    past_deadline: impl Fn() -> bool,
) -> Result<(f64, Vec<RowExplanation>), ExplainStop> {
    let mut explainer = ensemble
        .explainer()
        .map_err(|e| ExplainStop::Model(e.to_string()))?;
    let n = rows.n_features();
    let mut out = Vec::with_capacity(rows.rows());
    for (i, row) in rows.iter_rows().enumerate() {
        if past_deadline() {
            return Err(ExplainStop::Deadline);
        }
        let mut contributions = vec![0.0; n];
        let e = explainer
            .explain_row(row, &mut contributions)
            .map_err(|e| ExplainStop::Model(e.to_string()))?;
        if !e.prediction.is_finite() || contributions.iter().any(|c| !c.is_finite()) {
            return Err(ExplainStop::NotFinite(i));
        }
        out.push(RowExplanation {
            prediction: e.prediction,
            expected_value: e.expected_value,
            contributions,
        });
    }
    Ok((explainer.expected_value(), out))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use model::ensemble::{
        Aggregate, EnsembleSpec, InputPrecision, NodeSpec, PostTransform, SplitRule, TreeSpec,
    };

    use super::*;

    /// `x0 <= 0.5 ? 1 : 3` over 3 and 1 training rows; its expected value is 1.5.
    fn stump(covers: Option<Vec<f64>>, post_transform: PostTransform) -> TreeEnsemble {
        TreeEnsemble::new(&EnsembleSpec {
            n_features: 2,
            preprocess: Vec::new(),
            aggregate: Aggregate::Sum,
            base_value: 0.0,
            post_transform,
            input_precision: InputPrecision::F64,
            trees: vec![TreeSpec {
                nodes: vec![
                    NodeSpec::Split {
                        feature: 0,
                        rule: SplitRule::Leq,
                        threshold: 0.5,
                        yes: 1,
                        no: 2,
                        missing_yes: true,
                        missing_no: false,
                        nan_as_zero: false,
                        zero_is_missing: false,
                    },
                    NodeSpec::Leaf { leaf: 1.0 },
                    NodeSpec::Leaf { leaf: 3.0 },
                ],
                covers,
            }],
        })
        .unwrap()
    }

    fn rows() -> Matrix {
        Matrix::new(vec![0.0, 7.0, 1.0, 7.0, 0.2, -1.0], 2)
    }

    #[test]
    fn every_row_is_explained_against_the_expected_value() {
        let model = stump(Some(vec![4.0, 3.0, 1.0]), PostTransform::None);
        let (expected, rows) = explain_rows(&model, &rows(), || false).unwrap();
        assert_eq!(expected, 1.5);
        let answers: Vec<(f64, Vec<f64>)> = rows
            .iter()
            .map(|r| (r.prediction, r.contributions.clone()))
            .collect();
        let want = [(1.0, [-0.5, 0.0]), (3.0, [1.5, 0.0]), (1.0, [-0.5, 0.0])];
        assert_eq!(answers.len(), want.len());
        for ((p, c), (wp, wc)) in answers.iter().zip(&want) {
            // Exact TreeSHAP, up to the rounding of its quadrature.
            assert_eq!(p, wp);
            assert!(
                c.iter().zip(wc).all(|(a, b)| (a - b).abs() <= 1e-12),
                "{answers:?}"
            );
        }
        assert!(rows.iter().all(|r| r.expected_value == 1.5));
    }

    #[test]
    fn the_work_stops_at_the_deadline_rather_than_finishing() {
        let model = stump(Some(vec![4.0, 3.0, 1.0]), PostTransform::None);
        let asked = Cell::new(0);
        let stop = explain_rows(&model, &rows(), || {
            asked.set(asked.get() + 1);
            asked.get() > 2
        });
        assert_eq!(stop.err(), Some(ExplainStop::Deadline));
        // Asked before each row: the third row was never explained.
        assert_eq!(asked.get(), 3);
    }

    #[test]
    fn a_model_that_cannot_be_explained_says_why() {
        for (model, why) in [
            (stump(None, PostTransform::None), "covers"),
            (stump(Some(vec![4.0, 3.0, 1.0]), PostTransform::Exp), "Exp"),
        ] {
            match explain_rows(&model, &rows(), || false) {
                Err(ExplainStop::Model(message)) => assert!(message.contains(why), "{message}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
