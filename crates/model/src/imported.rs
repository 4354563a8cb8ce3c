//! What every importer hands to the model directory loader.

use crate::ensemble::TreeEnsemble;

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
