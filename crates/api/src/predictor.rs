//! The predictor's HTTP API wire types (JSON, snake_case as the original service used).

use serde::{Deserialize, Deserializer, Serialize};

/// The default registered model name.
pub const DEFAULT_MODEL_NAME: &str = "archive-forecast-rf";
/// The default HTTP port.
pub const DEFAULT_PORT: u16 = 8080;

/// Where the served model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelOrigin {
    /// Downloaded from the MLflow registry.
    Registry,
    /// Read from `MODEL_FALLBACK_DIR` (a cached registry model or the bundled one).
    Fallback,
}

/// `GET /model/info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub model_name: String,
    pub model_version: String,
    /// How the version was chosen: `alias:<a>`, `stage:<s>`, `version:<v>`, or
    /// `fallback:<path>`.
    pub selector: String,
    /// Where the files came from (`mlflow-artifacts:/...` or a local path).
    pub source: String,
    /// `sha256:<hex>` over the model's files.
    pub digest: String,
    pub flavor: String,
    pub feature_names: Vec<String>,
    /// RFC 3339 time the model was loaded.
    pub loaded_at: String,
    pub origin: ModelOrigin,
    #[serde(default)]
    pub n_trees: usize,
    /// The estimator as its library names it (`RandomForestRegressor`,
    /// `XGBRegressor (reg:squarederror)`, `Pipeline(StandardScaler, ...)`).
    #[serde(default)]
    pub estimator: String,
    /// Whether a missing value (`null`, `NaN`) may be sent for a feature.
    #[serde(default)]
    pub accepts_missing: bool,
    /// The shadow challenger scored beside this model, when one is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowInfo>,
    /// How far live inputs have moved from the reference, per feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftInfo>,
}

/// `GET /model/info` → `drift`: the served version's live inputs over the window against
/// its reference.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DriftInfo {
    /// `reference` (the version's `drift_reference.json`), `traffic` (the first rows it
    /// served), or `collecting` (those rows are still being collected).
    pub origin: String,
    /// Why the version's `drift_reference.json` was refused, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_error: Option<String>,
    /// Rows the traffic baseline takes, and how many it has (while `collecting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_rows: Option<u64>,
    #[serde(default)]
    pub baseline_collected: u64,
    pub window_seconds: u64,
    /// Rows counted in the window.
    pub rows: u64,
    pub features: Vec<FeatureDrift>,
}

/// One feature's drift over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    pub name: String,
    /// Population stability index of the window's non-missing values against the
    /// reference (none before a value was counted).
    pub psi: Option<f64>,
    /// Share of the window's rows with this feature missing (none before a row).
    pub missing_ratio: Option<f64>,
}

/// `GET /model/info` → `shadow`: the challenger and how its predictions compare with the
/// served model's on the same requests since it was loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowInfo {
    pub version: String,
    /// `sha256:<hex>` over the shadow model's files.
    #[serde(default)]
    pub digest: String,
    /// RFC 3339 time the shadow was loaded.
    #[serde(default)]
    pub loaded_at: String,
    /// Requests scored by both models.
    pub compared: u64,
    /// Requests not scored by the shadow because its queue was full.
    pub dropped: u64,
    /// Requests the shadow could not score (a non-finite value, another feature schema).
    #[serde(default)]
    pub errors: u64,
    /// Mean over compared rows of |shadow − served| (0 before any).
    pub mean_abs_diff: f64,
    /// Largest |shadow − served| of a compared row.
    pub max_abs_diff: f64,
}

/// `POST /predict` body: `{"instances": [[...], ...]}` or `{"instances": [{"feature": v}, ...]}`.
/// Instances stay raw JSON here so the predictor can say exactly which value is wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    pub instances: Vec<serde_json::Value>,
}

/// `POST /predict` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictResponse {
    pub predictions: Vec<f64>,
    pub model_name: String,
    pub model_version: String,
}

/// `POST /explain` answer: per row, the prediction split into the model's expected value
/// and one contribution per feature (exact TreeSHAP), such that `expected_value` + the
/// sum of `contributions` = `prediction`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainResponse {
    pub model_name: String,
    pub model_version: String,
    /// The order of every row's `contributions`.
    pub feature_names: Vec<String>,
    /// The model's mean prediction over its training data (the same for every row).
    pub expected_value: f64,
    pub explanations: Vec<RowExplanation>,
}

/// One row of `POST /explain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowExplanation {
    pub prediction: f64,
    pub expected_value: f64,
    /// One per feature, in `feature_names` order.
    pub contributions: Vec<f64>,
}

/// `POST /forecast` body: the days before the forecast, oldest first, consecutive, at least
/// 7; and how many days after the last one to forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastRequest {
    pub history: Vec<HistoryDay>,
    pub horizon: usize,
}

/// One day of archive ingest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryDay {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub gigabytes: f64,
}

/// `POST /forecast` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastResponse {
    pub model_name: String,
    pub model_version: String,
    /// How `p10` and `p90` are made (`per_step_tree_percentiles`: the trees' own
    /// predictions for each day's features), or absent when the model has no band (it does
    /// not average its trees).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<String>,
    pub forecasts: Vec<ForecastedDay>,
}

/// One forecast day of `POST /forecast`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastedDay {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Forecast archive ingest, gigabytes.
    pub forecast: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p10: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
}

/// `POST /invocations` answer (MLflow scoring-server format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationsResponse {
    pub predictions: Vec<f64>,
}

/// `POST /reload-model` body (optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    /// The version to load; absent = resolve the configured alias/stage/version again.
    /// A JSON number is accepted too.
    #[serde(default, deserialize_with = "string_or_number")]
    pub version: Option<String>,
    /// Accept a model whose feature names differ from the served one (default false).
    #[serde(default)]
    pub allow_schema_change: bool,
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        S(String),
        N(u64),
    }
    Ok(match Option::<V>::deserialize(d)? {
        None => None,
        Some(V::S(s)) => Some(s),
        Some(V::N(n)) => Some(n.to_string()),
    })
}

/// `POST /reload-model` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadResponse {
    /// `"success"`, as the old service answered.
    #[serde(default = "success")]
    pub status: String,
    /// A sentence for humans (the old service's `message`).
    #[serde(default)]
    pub message: String,
    pub model_name: String,
    /// The version served before the reload (none if nothing was loaded).
    pub old_version: Option<String>,
    pub new_version: String,
    /// False when the requested version was already served (same digest).
    pub changed: bool,
    pub digest: String,
    pub origin: ModelOrigin,
}

fn success() -> String {
    "success".into()
}

/// `POST /shadow-model` body: the version to load as the shadow challenger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowRequest {
    /// A JSON number is accepted too.
    #[serde(deserialize_with = "required_string_or_number")]
    pub version: String,
}

fn required_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    string_or_number(d)?.ok_or_else(|| serde::de::Error::custom("version must not be null"))
}

/// `POST /shadow-model` and `DELETE /shadow-model` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowResponse {
    /// `"success"`.
    pub status: String,
    pub message: String,
    /// The shadow version now loaded (none after `DELETE`).
    pub version: Option<String>,
    /// The shadow version before this call.
    pub old_version: Option<String>,
    /// False when nothing changed (the same version was already the shadow, or none was
    /// loaded to delete).
    pub changed: bool,
}

/// Every error answer: a stable machine-readable `error` code and a human `message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
    pub message: String,
}

/// `GET /health` and `GET /ready`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// `/health`: `"healthy"` (the old service's word); `/ready`: `"ready"` or why not.
    pub status: String,
    /// Whether a model is loaded (the old service's field).
    #[serde(default)]
    pub model_loaded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_request_accepts_a_string_or_a_number_version() {
        let r: ReloadRequest = serde_json::from_str(r#"{"version": "7"}"#).unwrap();
        assert_eq!(r.version.as_deref(), Some("7"));
        let r: ReloadRequest = serde_json::from_str(r#"{"version": 7}"#).unwrap();
        assert_eq!(r.version.as_deref(), Some("7"));
        let r: ReloadRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(r.version, None);
        assert!(serde_json::from_str::<ReloadRequest>(r#"{"versoin": 7}"#).is_err());
    }

    #[test]
    fn a_shadow_request_needs_a_version() {
        let r: ShadowRequest = serde_json::from_str(r#"{"version": 4}"#).unwrap();
        assert_eq!(r.version, "4");
        assert!(serde_json::from_str::<ShadowRequest>("{}").is_err());
        assert!(serde_json::from_str::<ShadowRequest>(r#"{"version": null}"#).is_err());
    }
}
