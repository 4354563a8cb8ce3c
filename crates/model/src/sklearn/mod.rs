//! Importer for scikit-learn regressors (MLflow's `sklearn` flavor: skops, cloudpickle,
//! pickle; plain joblib files) into the native evaluator.
//!
//! Served: `DecisionTreeRegressor`, `RandomForestRegressor`, `ExtraTreesRegressor`,
//! `GradientBoostingRegressor`, `HistGradientBoostingRegressor` (numeric features), and a
//! `Pipeline` of `SimpleImputer`/`StandardScaler` steps ending in one of them. Numerics
//! follow scikit-learn: trees compare `float32` inputs with `float64` thresholds
//! (histogram boosting compares in `float64`), leaves are summed in `f64`.

mod hist_gradient_boosting;
mod pipeline;
mod trees;

use crate::error::ModelError;
use crate::imported::ImportedModel;
use crate::python::{Attrs, Id, Objects, pickle, skops};

/// How the estimator was serialised (MLflow's `serialization_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SklearnFormat {
    Skops,
    /// `pickle`, `cloudpickle` and plain `joblib` files: all pickles.
    Pickle,
}

impl SklearnFormat {
    /// From MLflow's `serialization_format` value (absent → guessed from the content).
    pub fn from_mlflow(format: Option<&str>, bytes: &[u8]) -> Result<Self, ModelError> {
        match format {
            Some("skops") => Ok(SklearnFormat::Skops),
            Some("pickle" | "cloudpickle" | "joblib") => Ok(SklearnFormat::Pickle),
            Some(other) => Err(ModelError::unsupported(format!(
                "sklearn serialization_format {other:?} (served: skops, cloudpickle, pickle)"
            ))),
            None if bytes.starts_with(b"PK\x03\x04") => Ok(SklearnFormat::Skops),
            None => Ok(SklearnFormat::Pickle),
        }
    }

    /// Reads the file's object graph (nothing executed); returns it and its root.
    pub fn read_objects(self, bytes: &[u8], max_bytes: u64) -> Result<(Objects, Id), ModelError> {
        match self {
            SklearnFormat::Skops => skops::read_skops(bytes, max_bytes),
            SklearnFormat::Pickle => pickle::read_pickle(bytes),
        }
    }
}

/// Reads a serialised scikit-learn regressor.
pub fn import_sklearn(
    bytes: &[u8],
    format: SklearnFormat,
    max_bytes: u64,
) -> Result<ImportedModel, ModelError> {
    let (objects, root) = format.read_objects(bytes, max_bytes)?;
    import_estimator(&objects, root, &NodeBudget::for_input(bytes.len()))
}

/// How many tree nodes an import may still produce. A file can point many trees at one
/// shared node array (pickle's memo, skops' ids); real files spend at least a few bytes per
/// node, so the total is bounded by the file's size.
pub struct NodeBudget(std::cell::Cell<usize>);

impl NodeBudget {
    pub fn for_input(bytes: usize) -> Self {
        NodeBudget(std::cell::Cell::new(bytes / 2 + (1 << 20)))
    }

    fn take(&self, nodes: usize) -> Result<(), ModelError> {
        let left = self.0.get();
        if nodes > left {
            return Err(ModelError::invalid(
                "the trees hold more nodes than the file could (arrays shared between trees?)",
            ));
        }
        self.0.set(left - nodes);
        Ok(())
    }
}

/// Converts the estimator at `root` of an object graph.
pub fn import_estimator(
    objects: &Objects,
    root: Id,
    budget: &NodeBudget,
) -> Result<ImportedModel, ModelError> {
    let class = objects.class_of(root).ok_or_else(|| {
        ModelError::invalid(format!(
            "expected a scikit-learn estimator, found {}",
            objects.describe(root)
        ))
    })?;
    let attrs = Attrs::of(objects, root)?;
    let mut imported = match short(&class) {
        "Pipeline" => pipeline::import(&attrs, budget)?,
        _ => final_estimator(&attrs, budget)?,
    };
    if imported.feature_names.is_none() {
        imported.feature_names = attrs.feature_names_in();
    }
    Ok(imported)
}

/// A tree-based regressor that can end a pipeline.
fn final_estimator(attrs: &Attrs<'_>, budget: &NodeBudget) -> Result<ImportedModel, ModelError> {
    match attrs.short_class() {
        "DecisionTreeRegressor" | "ExtraTreeRegressor" => trees::import_single_tree(attrs, budget),
        "RandomForestRegressor" | "ExtraTreesRegressor" => trees::import_forest(attrs, budget),
        "GradientBoostingRegressor" => trees::import_gradient_boosting(attrs, budget),
        "HistGradientBoostingRegressor" => hist_gradient_boosting::import(attrs, budget),
        _ => Err(unsupported_class(&attrs.class)),
    }
}

pub(crate) fn unsupported_class(class: &str) -> ModelError {
    ModelError::unsupported(format!(
        "scikit-learn estimator {class} (served: DecisionTreeRegressor, RandomForestRegressor, \
         ExtraTreesRegressor, GradientBoostingRegressor, HistGradientBoostingRegressor, and a \
         Pipeline of SimpleImputer/StandardScaler steps ending in one of them)"
    ))
}

fn short(class: &str) -> &str {
    class.rsplit('.').next().unwrap_or(class)
}

/// `n_features_in_` of a fitted estimator.
fn n_features(attrs: &Attrs<'_>) -> Result<usize, ModelError> {
    let n = attrs.i64("n_features_in_")?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n > 0 && n <= usize::from(u16::MAX))
        .ok_or_else(|| ModelError::invalid(format!("{} has {n} features", attrs.short_class())))
}
