//! Prometheus metrics of the operator (`GET /metrics`).

use std::sync::atomic::AtomicU64;

use api::forecast_model::{AnalysisFigures, ForecastModel, ForecastModelStatus};
use kube::ResourceExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::reconcile::act::RolloutOutcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabel {
    pub step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabel {
    pub namespace: String,
    pub name: String,
    pub model: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ResultLabel, Counter>,
    pub errors: Family<ErrorLabel, Counter>,
    pub rollouts: Family<ResultLabel, Counter>,
    pub rollout_duration: Histogram,
    pub registry_poll: Histogram,
    pub registry_answers: Family<ResultLabel, Counter>,
    pub reconcile_duration: Histogram,
    /// Each step of a reconcile (see [`crate::reconcile`]), to say which one holds a slow
    /// reconcile.
    pub reconcile_steps: Family<StepLabel, Histogram>,
    pub served_version: Family<ModelLabel, Gauge>,
    pub leader: Gauge,
    pub webhooks: Family<ResultLabel, Counter>,
    pub canary_verdicts: Family<ResultLabel, Counter>,
    pub canary: CanaryGauges,
    /// The worst pod's PSI per feature of each ForecastModel with drift monitoring.
    pub drift_psi: Family<FeatureLabel, Gauge<f64, AtomicU64>>,
    /// The features each ForecastModel last exported (to remove series that went away).
    drift_features: std::sync::Mutex<std::collections::HashMap<ObjectLabel, Vec<String>>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabel {
    pub namespace: String,
    pub name: String,
    pub feature: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabel {
    pub namespace: String,
    pub name: String,
}

type FloatGauge = Family<ObjectLabel, Gauge<f64, AtomicU64>>;

/// The last canary analysis of each ForecastModel.
#[derive(Default)]
pub struct CanaryGauges {
    pub requests: FloatGauge,
    pub error_rate: FloatGauge,
    pub latency_ratio: FloatGauge,
    pub prediction_shift: FloatGauge,
}

/// Reconcile duration bounds in seconds: fine between 10 and 100 ms, where the steady-state
/// p99 target (50 ms) lies, so a benchmark can say which side of it the p99 falls on.
const RECONCILE_BUCKETS: [f64; 22] = [
    0.001, 0.002, 0.004, 0.008, 0.012, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.064, 0.08, 0.1,
    0.128, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0,
];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("forecast_operator");
        let reconciles = Family::<ResultLabel, Counter>::default();
        let errors = Family::<ErrorLabel, Counter>::default();
        let rollouts = Family::<ResultLabel, Counter>::default();
        let rollout_duration = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        let registry_poll = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let registry_answers = Family::<ResultLabel, Counter>::default();
        let reconcile_duration = Histogram::new(RECONCILE_BUCKETS.iter().copied());
        let reconcile_steps = Family::<StepLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(RECONCILE_BUCKETS.iter().copied())
        });
        let served_version = Family::<ModelLabel, Gauge>::default();
        let leader = Gauge::default();
        let webhooks = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by result (ok, error)",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile errors by kind",
            errors.clone(),
        );
        registry.register(
            "rollouts",
            "Rollouts by result (succeeded, failed)",
            rollouts.clone(),
        );
        registry.register(
            "rollout_duration_seconds",
            "Time from rollout start to the last pod verified",
            rollout_duration.clone(),
        );
        registry.register(
            "registry_poll_duration_seconds",
            "Latency of resolving the desired version in MLflow",
            registry_poll.clone(),
        );
        registry.register(
            "registry_answers",
            "Desired-version lookups by source (fetched: asked MLflow; shared: reused an answer in flight or younger than the answer TTL)",
            registry_answers.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_step_duration_seconds",
            "Duration of each step of a reconcile (env_sources, own_pods, credentials, registry, pods_asked, served_version, owned, rollout, shadow, drift, report)",
            reconcile_steps.clone(),
        );
        registry.register(
            "served_version",
            "The version every pod of a ForecastModel serves (numeric)",
            served_version.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        registry.register(
            "webhooks",
            "MLflow webhook deliveries by result (accepted, rejected, ignored)",
            webhooks.clone(),
        );
        let canary_verdicts = Family::<ResultLabel, Counter>::default();
        registry.register(
            "canary_verdicts",
            "Canary verdicts by result (pass, fail, inconclusive)",
            canary_verdicts.clone(),
        );
        let canary = CanaryGauges::default();
        registry.register(
            "canary_requests",
            "Predictions the canary pods answered in the last analysis's window",
            canary.requests.clone(),
        );
        registry.register(
            "canary_error_rate",
            "Share of canary predictions answered with a 5xx, last analysis",
            canary.error_rate.clone(),
        );
        registry.register(
            "canary_latency_ratio",
            "Canary p99 / baseline p99 latency, last analysis",
            canary.latency_ratio.clone(),
        );
        registry.register(
            "canary_prediction_shift",
            "|mean canary - mean baseline| / |mean baseline| prediction, last analysis",
            canary.prediction_shift.clone(),
        );
        let drift_psi = Family::<FeatureLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "drift_psi",
            "Population stability index of each input feature, the worst pod with enough rows (spec.monitoring.drift)",
            drift_psi.clone(),
        );
        Metrics {
            drift_psi,
            drift_features: Default::default(),
            canary_verdicts,
            canary,
            registry,
            reconciles,
            errors,
            rollouts,
            rollout_duration,
            registry_poll,
            registry_answers,
            reconcile_duration,
            reconcile_steps,
            served_version,
            leader,
            webhooks,
        }
    }
}

impl Metrics {
    /// Records how long one reconcile step took.
    pub fn step(&self, step: &'static str, took: std::time::Duration) {
        self.reconcile_steps
            .get_or_create(&StepLabel { step })
            .observe(took.as_secs_f64());
    }

    /// Runs `work` and records its duration as `step`.
    pub async fn timed<T>(
        &self,
        step: &'static str,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let started = std::time::Instant::now();
        let out = work.await;
        self.step(step, started.elapsed());
        out
    }

    pub fn count(family: &Family<ResultLabel, Counter>, result: &str) {
        family
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Counts a rollout's outcome and sets the served-version gauge from the status.
    pub fn record(
        &self,
        fm: &ForecastModel,
        outcome: &RolloutOutcome,
        status: &ForecastModelStatus,
    ) {
        match outcome {
            RolloutOutcome::Succeeded {
                target,
                from,
                reloaded,
                took,
                ..
            } if !reloaded.is_empty() || from.as_deref() != Some(target.as_str()) => {
                self.rollout_duration.observe(took.as_secs_f64());
                Metrics::count(&self.rollouts, "succeeded");
            }
            RolloutOutcome::Failed { .. }
            | RolloutOutcome::RestartFailed { .. }
            | RolloutOutcome::AnalysisFailed { .. } => Metrics::count(&self.rollouts, "failed"),
            _ => {}
        }
        if let Some(v) = status
            .served_version
            .as_ref()
            .and_then(|v| v.parse::<i64>().ok())
        {
            self.served_version
                .get_or_create(&ModelLabel {
                    namespace: fm.namespace().unwrap_or_default(),
                    name: fm.name_any(),
                    model: fm.spec.model.name.clone(),
                })
                .set(v);
        }
    }

    /// Drops a deleted ForecastModel's series (its served version and canary figures).
    pub fn forget(&self, fm: &ForecastModel) {
        let (namespace, name) = (fm.namespace().unwrap_or_default(), fm.name_any());
        self.served_version.remove(&ModelLabel {
            namespace: namespace.clone(),
            name: name.clone(),
            model: fm.spec.model.name.clone(),
        });
        let label = ObjectLabel { namespace, name };
        self.record_drift(fm, None);
        let g = &self.canary;
        for gauge in [
            &g.requests,
            &g.error_rate,
            &g.latency_ratio,
            &g.prediction_shift,
        ] {
            gauge.remove(&label);
        }
    }

    /// The worst PSI per feature of a ForecastModel (`None`: no drift monitoring, or no
    /// figures), replacing what it exported before.
    pub fn record_drift(
        &self,
        fm: &ForecastModel,
        worst: Option<&std::collections::BTreeMap<String, f64>>,
    ) {
        let object = ObjectLabel {
            namespace: fm.namespace().unwrap_or_default(),
            name: fm.name_any(),
        };
        let mut exported = self
            .drift_features
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let label = |feature: &str| FeatureLabel {
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            feature: feature.to_owned(),
        };
        let before = exported.remove(&object).unwrap_or_default();
        let now: Vec<String> = worst
            .map(|w| w.keys().cloned().collect())
            .unwrap_or_default();
        for gone in before.iter().filter(|f| !now.contains(f)) {
            self.drift_psi.remove(&label(gone));
        }
        for (feature, psi) in worst.into_iter().flatten() {
            self.drift_psi.get_or_create(&label(feature)).set(*psi);
        }
        if !now.is_empty() {
            exported.insert(object, now);
        }
    }

    /// The figures of a canary analysis, as the ForecastModel's gauges.
    pub fn record_analysis(&self, fm: &ForecastModel, f: &AnalysisFigures) {
        let label = ObjectLabel {
            namespace: fm.namespace().unwrap_or_default(),
            name: fm.name_any(),
        };
        let g = &self.canary;
        g.requests.get_or_create(&label).set(f.requests as f64);
        g.error_rate.get_or_create(&label).set(f.error_rate);
        if let Some(r) = f.latency_ratio {
            g.latency_ratio.get_or_create(&label).set(r);
        }
        if let Some(s) = f.prediction_shift {
            g.prediction_shift.get_or_create(&label).set(s);
        }
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_forecast_models_series_are_dropped() {
        let spec = serde_json::from_value(serde_json::json!({
            "registry": {"trackingUri": "http://mlflow:5000"},
            "model": {"name": "m", "alias": "champion"},
        }))
        .unwrap();
        let mut fm = ForecastModel::new("daily", spec);
        fm.metadata.namespace = Some("team".into());
        let metrics = Metrics::default();
        let status = ForecastModelStatus {
            served_version: Some("3".into()),
            ..ForecastModelStatus::default()
        };
        metrics.record(&fm, &RolloutOutcome::Nothing, &status);
        metrics.record_analysis(
            &fm,
            &AnalysisFigures {
                requests: 10,
                latency_ratio: Some(1.0),
                prediction_shift: Some(0.1),
                ..AnalysisFigures::default()
            },
        );
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                r#"forecast_operator_served_version{namespace="team",name="daily",model="m"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"forecast_operator_canary_prediction_shift{namespace="team",name="daily"} 0.1"#
            ),
            "{text}"
        );
        metrics.forget(&fm);
        let text = metrics.encode().unwrap();
        assert!(!text.contains(r#"name="daily""#), "{text}");
    }
}
