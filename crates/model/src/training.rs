//! Training the archive-forecast random forest with smartcore.

use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_regressor::RandomForestRegressorParameters;
use smartcore::linalg::basic::matrix::DenseMatrix;

use crate::ensemble::TreeEnsemble;
use crate::error::ModelError;
use crate::smartcore_forest::{SmartcoreForest, import_smartcore_forest};

/// Hyper-parameters of the forest (logged as MLflow params).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForestParams {
    pub n_trees: u16,
    pub max_depth: u16,
    pub min_samples_leaf: usize,
    pub seed: u64,
    /// The last fraction of the rows (in time order) held out for the metrics.
    pub holdout_fraction: f64,
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams {
            n_trees: 100,
            max_depth: 10,
            min_samples_leaf: 1,
            seed: crate::dataset::DEFAULT_SEED,
            holdout_fraction: 0.2,
        }
    }
}

/// Hold-out quality of a trained model (logged as MLflow metrics).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub mae: f64,
    pub rmse: f64,
    pub r2: f64,
    pub train_rows: usize,
    pub test_rows: usize,
}

pub struct TrainedForest {
    pub ensemble: TreeEnsemble,
    pub metrics: Metrics,
}

/// Fits a forest on the first rows, measures it on the held-out tail, and converts it to
/// the serving evaluator.
pub fn train_forest(
    x: &[Vec<f64>],
    y: &[f64],
    params: &ForestParams,
) -> Result<TrainedForest, ModelError> {
    if x.len() != y.len() {
        return Err(ModelError::Training(format!(
            "{} rows but {} targets",
            x.len(),
            y.len()
        )));
    }
    let n_features = x.first().map(Vec::len).unwrap_or(0);
    if n_features == 0 || x.iter().any(|r| r.len() != n_features) {
        return Err(ModelError::Training(
            "rows are empty or of unequal length".into(),
        ));
    }
    if !(0.0..1.0).contains(&params.holdout_fraction) {
        return Err(ModelError::Training(
            "holdout_fraction must be in [0, 1)".into(),
        ));
    }
    let test_rows = ((x.len() as f64) * params.holdout_fraction).round() as usize;
    let train_rows = x.len() - test_rows;
    if train_rows < 10 {
        return Err(ModelError::Training(format!(
            "{train_rows} training rows are too few; at least 10 are needed"
        )));
    }
    let matrix = DenseMatrix::from_2d_vec(&x[..train_rows].to_vec())
        .map_err(|e| ModelError::Training(e.to_string()))?;
    let forest_params = RandomForestRegressorParameters::default()
        .with_n_trees(usize::from(params.n_trees))
        .with_max_depth(params.max_depth)
        .with_min_samples_leaf(params.min_samples_leaf)
        .with_m(n_features)
        .with_seed(params.seed);
    let forest = SmartcoreForest::fit(&matrix, &y[..train_rows].to_vec(), forest_params)
        .map_err(|e| ModelError::Training(e.to_string()))?;
    let ensemble = import_smartcore_forest(&forest, n_features, &x[..train_rows])?;
    let metrics = evaluate(&ensemble, &x[train_rows..], &y[train_rows..], train_rows);
    Ok(TrainedForest { ensemble, metrics })
}

fn evaluate(ensemble: &TreeEnsemble, x: &[Vec<f64>], y: &[f64], train_rows: usize) -> Metrics {
    let n = y.len().max(1) as f64;
    let predictions: Vec<f64> = x.iter().map(|r| ensemble.predict_row(r)).collect();
    let mae = predictions
        .iter()
        .zip(y)
        .map(|(p, t)| (p - t).abs())
        .sum::<f64>()
        / n;
    let sse: f64 = predictions
        .iter()
        .zip(y)
        .map(|(p, t)| (p - t).powi(2))
        .sum();
    let mean = y.iter().sum::<f64>() / n;
    let sst: f64 = y.iter().map(|t| (t - mean).powi(2)).sum();
    Metrics {
        mae,
        rmse: (sse / n).sqrt(),
        r2: if sst > 0.0 { 1.0 - sse / sst } else { 0.0 },
        train_rows,
        test_rows: y.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::synthetic_history;
    use crate::features::feature_matrix;

    #[test]
    fn converted_forest_predicts_exactly_what_smartcore_predicts() {
        let history =
            synthetic_history(3, 300, chrono::NaiveDate::from_ymd_opt(2023, 1, 1).unwrap());
        let (x, y) = feature_matrix(&history);
        let matrix = DenseMatrix::from_2d_vec(&x).unwrap();
        let params = RandomForestRegressorParameters::default()
            .with_n_trees(10)
            .with_max_depth(6)
            .with_m(8)
            .with_seed(5);
        let forest = SmartcoreForest::fit(&matrix, &y, params).unwrap();
        let expected = forest.predict(&matrix).unwrap();
        let ensemble = import_smartcore_forest(&forest, 8, &x).unwrap();
        for (row, want) in x.iter().zip(&expected) {
            let got = ensemble.predict_row(row);
            assert!((got - want).abs() < 1e-9, "{got} != {want}");
        }
    }

    #[test]
    fn the_forest_learns_the_weekly_pattern() {
        let history = synthetic_history(
            42,
            800,
            chrono::NaiveDate::from_ymd_opt(2022, 1, 1).unwrap(),
        );
        let (x, y) = feature_matrix(&history);
        let params = ForestParams {
            n_trees: 20,
            max_depth: 8,
            ..ForestParams::default()
        };
        let trained = train_forest(&x, &y, &params).unwrap();
        assert!(trained.metrics.r2 > 0.7, "{:?}", trained.metrics);
        assert_eq!(
            trained.metrics.train_rows + trained.metrics.test_rows,
            x.len()
        );
    }

    #[test]
    fn a_trained_forest_explains_against_its_mean_training_prediction() {
        let history =
            synthetic_history(8, 400, chrono::NaiveDate::from_ymd_opt(2023, 1, 1).unwrap());
        let (x, y) = feature_matrix(&history);
        let params = ForestParams {
            n_trees: 12,
            max_depth: 7,
            holdout_fraction: 0.25,
            ..ForestParams::default()
        };
        let trained = train_forest(&x, &y, &params).unwrap();
        let ensemble = &trained.ensemble;
        assert_eq!(ensemble.explanations_unavailable(), None);
        // Covers counted from the training rows: each tree's expected value is its mean
        // over them, so the forest's is the mean training prediction.
        let train = &x[..trained.metrics.train_rows];
        let mean = train.iter().map(|r| ensemble.predict_row(r)).sum::<f64>() / train.len() as f64;
        let mut contributions = vec![0.0; 8];
        for row in &x[trained.metrics.train_rows..] {
            let e = ensemble.explain_row(row, &mut contributions).unwrap();
            assert!(
                (e.expected_value - mean).abs() < 1e-9 * mean.abs(),
                "{e:?} vs {mean}"
            );
            let total = e.expected_value + contributions.iter().sum::<f64>();
            assert!(
                (total - e.prediction).abs() < 1e-9 * e.prediction.abs(),
                "{total} vs {e:?}"
            );
        }
    }

    #[test]
    fn too_little_data_is_a_clear_error() {
        let err = train_forest(&vec![vec![1.0]; 5], &[1.0; 5], &ForestParams::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("too few"), "{err}");
    }
}
