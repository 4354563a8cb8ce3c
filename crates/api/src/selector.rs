//! How a version of a registered model is chosen — the one selector type of the project:
//! the ForecastModel's `spec.model`, the predictor's `MODEL_ALIAS` / `MODEL_STAGE` /
//! `MODEL_VERSION`, and what the operator and the predictor ask the registry.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Selector {
    /// The version an alias points at (MLflow 3's preferred way).
    Alias(String),
    /// The latest version in a stage (`Production`, `Staging`; deprecated in MLflow).
    Stage(String),
    /// A pinned version number.
    Version(String),
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Alias(a) => write!(f, "alias:{a}"),
            Selector::Stage(s) => write!(f, "stage:{s}"),
            Selector::Version(v) => write!(f, "version:{v}"),
        }
    }
}
