//! What every importer hands to the model directory loader.

use crate::ensemble::TreeEnsemble;
use crate::error::ModelError;

/// A model converted to the serving evaluator, with what `/model/info` says about it.
#[derive(Debug, Clone)]
pub struct ImportedModel {
    pub ensemble: TreeEnsemble,
    /// The estimator as its library names it (`RandomForestRegressor`,
    /// `Pipeline(SimpleImputer, StandardScaler, GradientBoostingRegressor)`, `XGBRegressor`).
    pub estimator: String,
    /// Feature names the model itself carries (`feature_names_in_`, XGBoost's and
    /// LightGBM's `feature_names`), if any.
    pub feature_names: Option<Vec<String>>,
    /// Whether the library predicts rows with missing values (NaN) and how the trees
    /// route them is known; otherwise missing values are refused at the API.
    pub accepts_missing: bool,
}

/// A child index read from a model file, checked against the tree's node count;
/// `context` names the node (`tree node 4`).
pub(crate) fn child_index(
    value: i64,
    count: usize,
    context: &str,
    what: &str,
) -> Result<usize, ModelError> {
    usize::try_from(value)
        .ok()
        .filter(|&v| v < count)
        .ok_or_else(|| {
            ModelError::invalid(format!(
                "{context}: {what} {value} is out of range (the tree has {count} nodes)"
            ))
        })
}

/// A split's feature read from a model file, checked against the model's feature count.
pub(crate) fn split_feature(
    value: i64,
    n_features: usize,
    context: &str,
) -> Result<usize, ModelError> {
    usize::try_from(value)
        .ok()
        .filter(|&f| f < n_features)
        .ok_or_else(|| {
            ModelError::invalid(format!(
                "{context} splits on feature {value}, but the model has {n_features}"
            ))
        })
}
