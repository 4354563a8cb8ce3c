//! Per-version figures: what a canary verdict compares (requests, errors, latency, the sum
//! and count of predicted values, by the version that answered) and what a shadow
//! challenger is judged on (compared requests, absolute differences, errors, drops).
//!
//! Versions are a bounded label set: the served and shadow versions keep their series, and
//! of the others only the [`KEPT_VERSIONS`] loaded last.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Versions, besides the served and the shadow one, whose series are kept.
pub const KEPT_VERSIONS: usize = 4;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub version: String,
    /// `ok`, `error` (answered 5xx: the model failed) or `rejected` (4xx: the input).
    pub outcome: &'static str,
}

/// How a prediction request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered.
    Ok,
    /// The version failed the request (a non-finite prediction, an evaluation error):
    /// what canary analysis counts as its errors.
    Error,
    /// The request was refused (bad input).
    Rejected,
    /// The prediction deadline passed (the pod was busy): neither an answer nor the
    /// version's error, and no latency sample.
    Timeout,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Rejected => "rejected",
            Outcome::Timeout => "timeout",
        }
    }
}

type VersionHistogram = Family<VersionLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs … ~2.2 s in steps of 1.5×: a p99 ratio is read to about ±25 %, not ±100 %
    Histogram::new(exponential_buckets(0.000_05, 1.5, 27))
}

fn difference_histogram() -> Histogram {
    // 0.001 … ~500,000 in the target's own unit
    Histogram::new(exponential_buckets(0.001, 2.0, 30))
}

/// The series an answered request of one version adds to, held so the request path
/// counts with a few atomic operations instead of looking each series up by label.
struct AnsweredSeries {
    version: String,
    ok: Counter,
    duration: Histogram,
    predictions: Counter,
    prediction_sum: Gauge<f64, AtomicU64>,
}

pub struct VersionMetrics {
    /// The series of the version that answered last (almost always the served one).
    answered: arc_swap::ArcSwapOption<AnsweredSeries>,
    requests: Family<OutcomeLabels, Counter>,
    duration: VersionHistogram,
    predictions: Family<VersionLabel, Counter>,
    prediction_sum: Family<VersionLabel, Gauge<f64, AtomicU64>>,
    shadow_compared: Family<VersionLabel, Counter>,
    shadow_dropped: Family<VersionLabel, Counter>,
    shadow_errors: Family<VersionLabel, Counter>,
    shadow_abs_diff: VersionHistogram,
    /// Versions with series, loaded last at the back.
    loaded: Mutex<VecDeque<String>>,
}

impl VersionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = VersionMetrics {
            answered: arc_swap::ArcSwapOption::empty(),
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            predictions: Family::default(),
            prediction_sum: Family::default(),
            shadow_compared: Family::default(),
            shadow_dropped: Family::default(),
            shadow_errors: Family::default(),
            shadow_abs_diff: Family::new_with_constructor(difference_histogram),
            loaded: Mutex::new(VecDeque::new()),
        };
        registry.register(
            "model_requests",
            "Prediction requests by the version that answered and outcome (ok, error = 5xx, rejected = 4xx)",
            m.requests.clone(),
        );
        registry.register(
            "model_request_duration_seconds",
            "Prediction time (parse, queue, predict) by the version that answered, ok and error",
            m.duration.clone(),
        );
        registry.register(
            "model_predictions",
            "Rows predicted by version",
            m.predictions.clone(),
        );
        registry.register(
            "model_prediction_sum",
            "Sum of the values predicted by version (a gauge: values may be negative)",
            m.prediction_sum.clone(),
        );
        registry.register(
            "shadow_compared",
            "Requests scored by the shadow version beside the served one",
            m.shadow_compared.clone(),
        );
        registry.register(
            "shadow_dropped",
            "Requests the shadow version did not score because its queue was full",
            m.shadow_dropped.clone(),
        );
        registry.register(
            "shadow_errors",
            "Requests the shadow version could not score",
            m.shadow_errors.clone(),
        );
        registry.register(
            "shadow_abs_diff",
            "Per row |shadow prediction - served prediction|, by shadow version",
            m.shadow_abs_diff.clone(),
        );
        m
    }

    /// One prediction request answered by `version`: its outcome, how long it took and,
    /// when it succeeded, the values predicted.
    pub fn observe_request(
        &self,
        version: &str,
        outcome: Outcome,
        seconds: f64,
        predictions: &[f64],
    ) {
        if outcome == Outcome::Ok {
            let series = self.answered_series(version);
            series.ok.inc();
            series.duration.observe(seconds);
            series.predictions.inc_by(predictions.len() as u64);
            series.prediction_sum.inc_by(predictions.iter().sum());
            return;
        }
        let label = VersionLabel {
            version: version.to_owned(),
        };
        self.requests
            .get_or_create(&OutcomeLabels {
                version: version.to_owned(),
                outcome: outcome.label(),
            })
            .inc();
        if matches!(outcome, Outcome::Rejected | Outcome::Timeout) {
            return;
        }
        self.duration.get_or_create(&label).observe(seconds);
        if !predictions.is_empty() {
            self.predictions
                .get_or_create(&label)
                .inc_by(predictions.len() as u64);
            self.prediction_sum
                .get_or_create(&label)
                .inc_by(predictions.iter().sum());
        }
    }

    /// The answered-request series of `version`, looked up by label only when another
    /// version answered last.
    fn answered_series(&self, version: &str) -> std::sync::Arc<AnsweredSeries> {
        if let Some(series) = self.answered.load_full()
            && series.version == version
        {
            return series;
        }
        let label = VersionLabel {
            version: version.to_owned(),
        };
        let series = std::sync::Arc::new(AnsweredSeries {
            version: version.to_owned(),
            ok: self
                .requests
                .get_or_create(&OutcomeLabels {
                    version: version.to_owned(),
                    outcome: Outcome::Ok.label(),
                })
                .clone(),
            duration: self.duration.get_or_create(&label).clone(),
            predictions: self.predictions.get_or_create(&label).clone(),
            prediction_sum: self.prediction_sum.get_or_create(&label).clone(),
        });
        self.answered.store(Some(series.clone()));
        series
    }

    /// The shadow `version` scored a request: one absolute difference per row.
    pub fn observe_shadow(&self, version: &str, abs_diffs: &[f64]) {
        let label = VersionLabel {
            version: version.to_owned(),
        };
        self.shadow_compared.get_or_create(&label).inc();
        let histogram = self.shadow_abs_diff.get_or_create(&label);
        for d in abs_diffs {
            histogram.observe(*d);
        }
    }

    pub fn count_shadow_error(&self, version: &str) {
        self.shadow_errors
            .get_or_create(&VersionLabel {
                version: version.to_owned(),
            })
            .inc();
    }

    pub fn count_shadow_dropped(&self, version: &str) {
        self.shadow_dropped
            .get_or_create(&VersionLabel {
                version: version.to_owned(),
            })
            .inc();
    }

    /// `version` was loaded (served or shadow). Drops the series of the versions loaded
    /// longest ago beyond [`KEPT_VERSIONS`], never those of `in_use`.
    pub fn loaded(&self, version: &str, in_use: &[&str]) {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        loaded.retain(|v| v != version);
        loaded.push_back(version.to_owned());
        let mut idle: Vec<String> = loaded
            .iter()
            .filter(|v| !in_use.contains(&v.as_str()))
            .cloned()
            .collect();
        while idle.len() > KEPT_VERSIONS {
            let oldest = idle.remove(0);
            loaded.retain(|v| *v != oldest);
            self.forget(&oldest);
        }
    }

    fn forget(&self, version: &str) {
        // Held series of a forgotten version would count where nobody reads.
        if self
            .answered
            .load()
            .as_ref()
            .is_some_and(|s| s.version == version)
        {
            self.answered.store(None);
        }
        let label = VersionLabel {
            version: version.to_owned(),
        };
        for outcome in [
            Outcome::Ok,
            Outcome::Error,
            Outcome::Rejected,
            Outcome::Timeout,
        ] {
            self.requests.remove(&OutcomeLabels {
                version: version.to_owned(),
                outcome: outcome.label(),
            });
        }
        self.duration.remove(&label);
        self.predictions.remove(&label);
        self.prediction_sum.remove(&label);
        self.shadow_compared.remove(&label);
        self.shadow_dropped.remove(&label);
        self.shadow_errors.remove(&label);
        self.shadow_abs_diff.remove(&label);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn requests_are_counted_by_version_and_old_versions_are_forgotten() {
        let mut registry = Registry::with_prefix("predictor");
        let m = VersionMetrics::register(&mut registry);
        m.observe_request("1", Outcome::Ok, 0.001, &[2.0, -0.5]);
        m.observe_request("1", Outcome::Error, 0.002, &[]);
        m.observe_request("1", Outcome::Rejected, 0.0, &[]);
        let text = encoded(&registry);
        assert!(
            text.contains(r#"predictor_model_requests_total{version="1",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"predictor_model_predictions_total{version="1"} 2"#));
        assert!(text.contains(r#"predictor_model_prediction_sum{version="1"} 1.5"#));
        assert!(text.contains(r#"predictor_model_request_duration_seconds_count{version="1"} 2"#));
        for v in 1..=7 {
            m.loaded(&v.to_string(), &["1", "7"]);
            m.observe_request(&v.to_string(), Outcome::Ok, 0.001, &[1.0]);
        }
        m.loaded("8", &["1", "8"]);
        let text = encoded(&registry);
        assert!(text.contains(r#"version="1""#), "the served version stays");
        assert!(!text.contains(r#"version="2""#), "{text}");
        assert!(!text.contains(r#"version="3""#));
        assert!(text.contains(r#"version="4""#));
        assert!(text.contains(r#"version="7""#));
        // Answering alternately from two versions counts each on its own series.
        m.observe_request("8", Outcome::Ok, 0.001, &[1.0]);
        m.observe_request("1", Outcome::Ok, 0.001, &[1.0]);
        m.observe_request("8", Outcome::Ok, 0.001, &[3.0]);
        let text = encoded(&registry);
        assert!(
            text.contains(r#"predictor_model_requests_total{version="8",outcome="ok"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"predictor_model_prediction_sum{version="8"} 4"#),
            "{text}"
        );
        // A version forgotten while it was the last to answer is counted again when it
        // answers again.
        for v in 9..=14 {
            m.loaded(&v.to_string(), &["1", "14"]);
        }
        assert!(!encoded(&registry).contains(r#"version="8""#));
        m.observe_request("8", Outcome::Ok, 0.001, &[1.0]);
        let text = encoded(&registry);
        assert!(
            text.contains(r#"predictor_model_requests_total{version="8",outcome="ok"} 1"#),
            "{text}"
        );
    }
}
