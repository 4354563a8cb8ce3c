//! Prometheus metrics of the predictor (`GET /metrics`): HTTP, reloads and the served
//! model here; per-version figures in [`versions`].

pub mod versions;

use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model_name: String,
    pub model_version: String,
    pub origin: String,
    pub digest: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabels {
    pub version: String,
    pub feature: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub version: String,
}

type FeatureGauges = Family<FeatureLabels, Gauge<f64, std::sync::atomic::AtomicU64>>;

type HistogramFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs … ~1.6 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    request_duration: HistogramFamily,
    predictions: Counter,
    explanations: Counter,
    forecast_days: Counter,
    drift_psi: FeatureGauges,
    missing_ratio: FeatureGauges,
    drift_rows: Family<VersionLabel, Gauge>,
    reloads: Family<ReloadLabels, Counter>,
    model_info: Family<ModelLabels, Gauge>,
    served_version: Gauge,
    current_model: Mutex<Option<ModelLabels>>,
    /// By version: what canary verdicts and shadow comparisons are computed from.
    pub versions: versions::VersionMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("predictor");
        let request_duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let predictions = Counter::default();
        let explanations = Counter::default();
        let forecast_days = Counter::default();
        let drift_psi = FeatureGauges::default();
        let missing_ratio = FeatureGauges::default();
        registry.register(
            "feature_drift_psi",
            "Population stability index of each input feature over the drift window against the served version's reference",
            drift_psi.clone(),
        );
        let drift_rows = Family::<VersionLabel, Gauge>::default();
        registry.register(
            "drift_window_rows",
            "Rows counted in the drift window (the figures below are over these rows)",
            drift_rows.clone(),
        );
        registry.register(
            "feature_missing_ratio",
            "Share of the drift window's rows with the feature missing",
            missing_ratio.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        let model_info = Family::<ModelLabels, Gauge>::default();
        let served_version = Gauge::default();
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route, method and status",
            request_duration.clone(),
        );
        registry.register("predictions", "Rows predicted", predictions.clone());
        registry.register(
            "explanations",
            "Rows explained (POST /explain)",
            explanations.clone(),
        );
        registry.register(
            "forecast_days",
            "Days forecast (POST /forecast)",
            forecast_days.clone(),
        );
        registry.register(
            "reloads",
            "Model reloads by result (success, failure)",
            reloads.clone(),
        );
        registry.register(
            "model_info",
            "The served model (value 1 on the current model's labels)",
            model_info.clone(),
        );
        registry.register(
            "served_version",
            "The served registry version number (0 for a non-numeric version)",
            served_version.clone(),
        );
        let versions = versions::VersionMetrics::register(&mut registry);
        Metrics {
            versions,
            registry,
            request_duration,
            predictions,
            explanations,
            forecast_days,
            drift_psi,
            missing_ratio,
            drift_rows,
            reloads,
            model_info,
            served_version,
            current_model: Mutex::new(None),
        }
    }

    pub fn count_predictions(&self, rows: usize) {
        self.predictions.inc_by(rows as u64);
    }

    pub fn count_explanations(&self, rows: usize) {
        self.explanations.inc_by(rows as u64);
    }

    pub fn count_forecast_days(&self, days: usize) {
        self.forecast_days.inc_by(days as u64);
    }

    /// The served version's drift figures, replacing any earlier version's (so the series
    /// are bounded by the model's features).
    pub fn set_drift(&self, version: &str, drift: &api::predictor::DriftInfo) {
        self.drift_psi.clear();
        self.missing_ratio.clear();
        self.drift_rows.clear();
        if !drift.features.is_empty() {
            self.drift_rows
                .get_or_create(&VersionLabel {
                    version: version.to_owned(),
                })
                .set(i64::try_from(drift.rows).unwrap_or(i64::MAX));
        }
        for f in &drift.features {
            let labels = FeatureLabels {
                version: version.to_owned(),
                feature: f.name.clone(),
            };
            if let Some(psi) = f.psi {
                self.drift_psi.get_or_create(&labels).set(psi);
            }
            if let Some(ratio) = f.missing_ratio {
                self.missing_ratio.get_or_create(&labels).set(ratio);
            }
        }
    }

    pub fn count_reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.reloads
            .get_or_create(&ReloadLabels {
                result: result.into(),
            })
            .inc();
    }

    pub fn set_served_model(&self, info: &api::predictor::ModelInfo) {
        let labels = ModelLabels {
            model_name: info.model_name.clone(),
            model_version: info.model_version.clone(),
            origin: format!("{:?}", info.origin).to_lowercase(),
            digest: info.digest.clone(),
        };
        let mut current = self
            .current_model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(old) = current.take() {
            self.model_info.remove(&old);
        }
        self.model_info.get_or_create(&labels).set(1);
        *current = Some(labels);
        self.served_version
            .set(info.model_version.parse::<i64>().unwrap_or(0));
    }

    fn observe(&self, labels: RequestLabels, seconds: f64) {
        self.request_duration
            .get_or_create(&labels)
            .observe(seconds);
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The method as a label: the standard ones by name, anything a client invents as
/// `other` (labels are a bounded set whatever is sent).
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Middleware: times every request under its route pattern (not its raw path, which
/// would explode the label set).
pub async fn track_latency(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method()).to_owned();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let response = next.call(req).await?;
    if let Some(state) = state {
        state.metrics.observe(
            RequestLabels {
                route,
                method,
                status: response.status().as_u16(),
            },
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(response)
}
