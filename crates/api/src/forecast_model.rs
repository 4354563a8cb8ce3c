//! `ForecastModel` (group `forecast.dev`, version `v1alpha1`, short name `fm`): a
//! registered MLflow model, how to pick its version, and how to serve and roll it.

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::duration::{SpecDuration, parse_duration};
pub use crate::rollout::{
    AnalysisFigures, AnalysisSpec, CanarySpec, HISTORY_LIMIT, LatencyBucket, PodCounters,
    RolloutPhase, RolloutProgress, RolloutRecord, RolloutResult, RolloutSpec, RolloutStrategy,
};
pub use crate::selector::Selector;

/// Condition types the operator maintains.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEGRADED: &str = "Degraded";
    pub const REGISTRY_REACHABLE: &str = "RegistryReachable";
    /// kstatus: the operator is moving pods to a version (or loading the shadow).
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: the operator has given up until the spec or the registry changes.
    pub const STALLED: &str = "Stalled";
    /// Live inputs have moved from the served version's reference (`spec.monitoring.drift`).
    pub const DRIFTING: &str = "Drifting";
}

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "forecast.dev",
    version = "v1alpha1",
    kind = "ForecastModel",
    namespaced,
    status = "ForecastModelStatus",
    shortname = "fm",
    category = "forecast",
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".spec.model.name"}"#,
    printcolumn = r#"{"name":"Selector","type":"string","jsonPath":".status.selector"}"#,
    printcolumn = r#"{"name":"Served","type":"string","jsonPath":".status.servedVersion"}"#,
    printcolumn = r#"{"name":"Desired","type":"string","jsonPath":".status.desiredVersion"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.rollout.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Shadow","type":"string","jsonPath":".status.shadow.version","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ForecastModelSpec {
    /// Where the model registry is.
    pub registry: RegistrySpec,
    /// The registered model and how its version is chosen.
    pub model: ModelRef,
    /// How often the registry is polled: a duration such as `30s`, `2m`, `1h`.
    #[serde(default = "default_poll_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub poll_interval: SpecDuration,
    /// Hold the served version; the registry is still polled and reported.
    #[serde(default)]
    pub paused: bool,
    /// The predictor Deployment.
    #[serde(default)]
    pub predictor: PredictorSpec,
    /// How a new version is rolled out.
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// What the operator watches in the served version besides its health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,
}

/// `spec.monitoring`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Judge the pods' input drift each poll and report it as the `Drifting` condition
    /// (it never changes which version is served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftSpec>,
}

/// `spec.monitoring.drift`: when a feature counts as drifting.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftSpec {
    /// A feature drifts when its population stability index on a pod exceeds this.
    #[serde(default = "default_max_psi")]
    #[schemars(range(min = 0.0))]
    pub max_psi: f64,
    /// Fewer rows in a pod's drift window than this are too few to judge.
    #[serde(default = "default_min_rows")]
    #[schemars(range(min = 1))]
    pub min_rows: u64,
}

impl Default for DriftSpec {
    fn default() -> Self {
        DriftSpec {
            max_psi: default_max_psi(),
            min_rows: default_min_rows(),
        }
    }
}

fn default_max_psi() -> f64 {
    0.25
}

fn default_min_rows() -> u64 {
    1000
}

fn default_poll_interval() -> SpecDuration {
    SpecDuration::parse("30s")
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistrySpec {
    /// MLflow tracking server URL, e.g. `http://mlflow.mlflow:5000`.
    pub tracking_uri: String,
    /// Secret in the same namespace with `token`, or `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Secret (key `secret`) whose value signs MLflow webhook deliveries for this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

/// Exactly one of `alias`, `stage` and `version`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [
    {"required": ["alias"]},
    {"required": ["stage"]},
    {"required": ["version"]}
]))]
pub struct ModelRef {
    /// Registered model name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Serve the version this alias points at (MLflow 3's way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Serve the latest version in this stage (`Production`, `Staging`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Serve exactly this version (a pin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// A challenger loaded in every pod beside the served version and scored on every
    /// request off the response path (`status.shadow` compares them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowRef>,
}

/// The shadow challenger's version: exactly one of `alias`, `stage` and `version`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [
    {"required": ["alias"]},
    {"required": ["stage"]},
    {"required": ["version"]}
]))]
pub struct ShadowRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl ShadowRef {
    /// The selector, or why the combination is invalid.
    pub fn selector(&self) -> Result<Selector, String> {
        one_selector(&self.alias, &self.stage, &self.version)
            .map_err(|e| format!("spec.model.shadow {e}"))
    }
}

/// Exactly one of the three, blank values counting as unset.
fn one_selector(
    alias: &Option<String>,
    stage: &Option<String>,
    version: &Option<String>,
) -> Result<Selector, String> {
    let set = |v: &Option<String>| v.as_ref().filter(|s| !s.trim().is_empty()).cloned();
    match (set(alias), set(stage), set(version)) {
        (Some(a), None, None) => Ok(Selector::Alias(a)),
        (None, Some(s), None) => Ok(Selector::Stage(s)),
        (None, None, Some(v)) => Ok(Selector::Version(v)),
        (None, None, None) => Err("needs one of alias, stage or version".into()),
        _ => Err("must set only one of alias, stage or version".into()),
    }
}

/// `status.shadow`: the shadow challenger over every pod that scores it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowStatus {
    pub version: String,
    /// Pods that hold the shadow version.
    pub pods: i32,
    /// Requests scored by both the served and the shadow version.
    pub compared: u64,
    /// Mean over compared rows of |shadow − served|.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_abs_diff: Option<f64>,
    /// 99th percentile of |shadow − served| per row (from the pods' histograms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_abs_diff: Option<f64>,
    /// Requests the shadow could not score.
    pub errors: u64,
    /// Requests not scored because a pod's shadow queue was full.
    pub dropped: u64,
    /// Why this version could not be loaded as the shadow (its first pod refused it, or
    /// died or hung while loading it): it is loaded into no pod again until the registry
    /// names another shadow version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_failed: Option<String>,
}

impl ModelRef {
    /// The selector, or why the combination is invalid (for clusters that do not enforce
    /// the schema's `oneOf`).
    pub fn selector(&self) -> Result<Selector, String> {
        one_selector(&self.alias, &self.stage, &self.version).map_err(|e| format!("spec.model {e}"))
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PredictorSpec {
    /// Predictor container image.
    #[serde(default = "default_image")]
    pub image: String,
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Extra environment for the predictor container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

pub const DEFAULT_PREDICTOR_IMAGE: &str = "ghcr.io/forecast-operator/forecast-predictor:0.1.0";

fn default_image() -> String {
    DEFAULT_PREDICTOR_IMAGE.into()
}
fn default_replicas() -> i32 {
    2
}
fn default_port() -> i32 {
    8080
}

impl Default for PredictorSpec {
    fn default() -> Self {
        PredictorSpec {
            image: default_image(),
            replicas: default_replicas(),
            resources: None,
            port: default_port(),
            env: Vec::new(),
        }
    }
}

/// A pod and the version it serves.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct PodVersion {
    pub pod: String,
    pub version: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForecastModelStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `alias:champion`, `stage:Production` or `version:7`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The version every pod serves (and new pods start on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_version: Option<String>,
    /// The version the registry points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// Versions whose rollout failed; not retried until the registry moves again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_versions: Vec<String>,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub updated_replicas: i32,
    /// Per-pod versions (up to 20 pods).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodVersion>,
    /// e.g. `1.234s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rollout_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The rollout in progress, or `phase: Idle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutProgress>,
    /// The last rollouts, newest first (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RolloutRecord>,
    /// The shadow challenger's comparison, while `spec.model.shadow` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn exactly_one_selector_is_accepted() {
        let m = |a: Option<&str>, s: Option<&str>, v: Option<&str>| ModelRef {
            name: "m".into(),
            alias: a.map(Into::into),
            stage: s.map(Into::into),
            version: v.map(Into::into),
            shadow: None,
        };
        assert_eq!(
            m(Some("champion"), None, None).selector().unwrap(),
            Selector::Alias("champion".into())
        );
        assert!(m(None, None, None).selector().is_err());
        assert!(m(Some("a"), None, Some("3")).selector().is_err());
    }

    #[test]
    fn the_crd_has_the_contracted_names_columns_and_one_of() {
        let crd = serde_json::to_value(ForecastModel::crd()).unwrap();
        assert_eq!(crd["metadata"]["name"], "forecastmodels.forecast.dev");
        assert_eq!(crd["spec"]["names"]["shortNames"][0], "fm");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert!(version["subresources"]["status"].is_object());
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            columns,
            [
                "Model", "Selector", "Served", "Desired", "Phase", "Ready", "Shadow", "Age"
            ]
        );
        let model =
            &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["model"];
        assert_eq!(model["oneOf"].as_array().unwrap().len(), 3, "{model}");
    }
}

#[cfg(test)]
mod checked_in_crd {
    use kube::CustomResourceExt;

    #[test]
    fn crds_forecastmodel_yaml_matches_the_types() {
        let generated = serde_json::to_value(super::ForecastModel::crd()).expect("CRD serialises");
        for file in [
            "crds/forecastmodel.yaml",
            "charts/forecast-operator/crds/forecastmodel.yaml",
        ] {
            let path = format!("{}/../../{file}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).expect("the checked-in CRD exists");
            let checked_in: serde_json::Value = serde_yaml::from_str(&text).expect("valid YAML");
            assert_eq!(
                checked_in, generated,
                "{file} is stale: run `cargo run -p forecast-cli -- crd > {file}`"
            );
        }
    }
}
