//! How a `ForecastModel` rolls a new version out (`spec.rollout`, with its optional
//! canary) and how rollouts show in the status (`status.rollout`, `status.history`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::SpecDuration;

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum RolloutStrategy {
    /// Reload each pod in place over HTTP (no restarts).
    #[default]
    Reload,
    /// Restart the pods (for clusters that forbid operator-to-pod calls).
    Restart,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    #[serde(default)]
    pub strategy: RolloutStrategy,
    /// Pods reloaded at once.
    #[serde(default = "default_max_concurrent")]
    #[schemars(range(min = 1))]
    pub max_concurrent: i32,
    /// How long a pod may take to load and report the new version.
    #[serde(default = "default_verify_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub verify_timeout: SpecDuration,
    /// A feature row every pod must predict a finite value for after reloading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke_input: Option<Vec<f64>>,
    /// Switch a few pods first and judge them on their live traffic against the others
    /// before the rest follow (`Reload` strategy only). Absent: every pod rolls at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanarySpec>,
}

fn default_max_concurrent() -> i32 {
    1
}
fn default_verify_timeout() -> SpecDuration {
    SpecDuration::parse("60s")
}

impl Default for RolloutSpec {
    fn default() -> Self {
        RolloutSpec {
            strategy: RolloutStrategy::Reload,
            max_concurrent: default_max_concurrent(),
            verify_timeout: default_verify_timeout(),
            smoke_input: None,
            canary: None,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// Pods switched first: a number (`1`) or a share of the replicas (`"25%"`, rounded
    /// up); at least 1, and at least one pod stays on the served version as the baseline.
    #[serde(default = "default_canary_pods")]
    pub pods: IntOrString,
    /// How long the canary pods serve before the verdict.
    #[serde(default = "default_bake")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub bake: SpecDuration,
    /// Predictions the canary pods must have answered to be judged; until then the bake
    /// goes on, up to `maxBake`.
    #[serde(default = "default_min_requests")]
    #[schemars(range(min = 1))]
    pub min_requests: i64,
    /// The longest bake: with too little traffic by then the rollout fails with
    /// `AnalysisInconclusive`.
    #[serde(default = "default_max_bake")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub max_bake: SpecDuration,
    /// The limits the canary is judged by.
    #[serde(default)]
    pub analysis: AnalysisSpec,
}

fn default_canary_pods() -> IntOrString {
    IntOrString::Int(1)
}
fn default_bake() -> SpecDuration {
    SpecDuration::parse("2m")
}
fn default_min_requests() -> i64 {
    200
}
fn default_max_bake() -> SpecDuration {
    SpecDuration::parse("10m")
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    /// Largest share of canary predictions answered with a 5xx.
    #[serde(default = "default_max_error_rate")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate: f64,
    /// Largest canary p99 latency / baseline p99 latency over the bake window.
    #[serde(default = "default_max_latency_ratio")]
    #[schemars(range(min = 0.0))]
    pub max_latency_ratio: f64,
    /// Largest |mean canary prediction − mean baseline prediction| / |mean baseline
    /// prediction| over the bake window.
    #[serde(default = "default_max_prediction_shift")]
    #[schemars(range(min = 0.0))]
    pub max_prediction_shift: f64,
}

fn default_max_error_rate() -> f64 {
    0.01
}
fn default_max_latency_ratio() -> f64 {
    2.0
}
fn default_max_prediction_shift() -> f64 {
    0.25
}

impl Default for AnalysisSpec {
    fn default() -> Self {
        AnalysisSpec {
            max_error_rate: default_max_error_rate(),
            max_latency_ratio: default_max_latency_ratio(),
            max_prediction_shift: default_max_prediction_shift(),
        }
    }
}

/// Where a rollout is.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum RolloutPhase {
    /// The canary pods are being reloaded.
    Canary,
    /// The canary pods serve the new version; the verdict waits for the bake.
    Baking,
    /// The remaining pods are being reloaded.
    Promoting,
    /// No rollout runs.
    #[default]
    Idle,
}

/// `status.rollout`: the rollout in progress (`phase: Idle` between rollouts).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutProgress {
    pub phase: RolloutPhase,
    /// The version being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The version the pods serve before it (the baseline, and what a failure reverts to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canary_pods: Vec<String>,
    /// When the canary pods began serving (to the microsecond: a bake is never cut short
    /// by a rounded start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_started_at: Option<MicroTime>,
    /// The canary against the baseline since the bake started, as last measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisFigures>,
    /// Every pod's counters when the bake started: what the analysis subtracts, so a
    /// new leader judges the same window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub window_start: Vec<PodCounters>,
}

/// The figures a canary verdict compares.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisFigures {
    /// Predictions the canary pods answered in the window.
    pub requests: i64,
    /// Predictions the baseline pods answered in the window.
    pub baseline_requests: i64,
    /// Share of canary predictions answered with a 5xx.
    pub error_rate: f64,
    /// Canary p99 / baseline p99 latency (absent while the baseline answered none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ratio: Option<f64>,
    /// The canary's and the baseline's p99 prediction time, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_p99_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_p99_ms: Option<f64>,
    /// |mean canary − mean baseline| / |mean baseline| of the predicted values (the
    /// absolute difference when the baseline mean is 0; absent while either predicted none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_shift: Option<f64>,
}

/// A pod's counters for one version, as its `/metrics` reported them.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodCounters {
    pub pod: String,
    pub version: String,
    /// Prediction requests answered (ok and 5xx).
    pub requests: u64,
    /// Of which answered with a 5xx.
    pub errors: u64,
    /// Rows predicted, and the sum of the values predicted.
    pub predictions: u64,
    pub prediction_sum: f64,
    /// Cumulative latency histogram: `[upper bound in seconds, count]`, `+Inf` left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<LatencyBucket>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct LatencyBucket {
    pub le: f64,
    pub count: u64,
}

/// How a rollout ended.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RolloutResult {
    /// Every pod serves the new version.
    Succeeded,
    /// The version failed (a pod refused it, or the canary verdict) and was reverted.
    Failed,
    /// Stopped without judging the version (a transient fault, the registry moved on).
    Aborted,
}

/// One finished rollout in `status.history` (the last 10, newest first).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    pub finished_at: Time,
    pub result: RolloutResult,
    /// A condition/event reason: `RolloutSucceeded`, `RolloutFailed`, `AnalysisFailed`,
    /// `AnalysisInconclusive`, `RolloutInterrupted`, `Superseded`.
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Rollouts kept in `status.history`.
pub const HISTORY_LIMIT: usize = 10;
