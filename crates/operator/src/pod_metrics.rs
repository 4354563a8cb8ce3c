//! A predictor pod's `/metrics`, read for what a canary verdict and a shadow comparison
//! need: per-version request, error, latency and prediction-sum figures, and the shadow's
//! comparison. The text comes from a pod running an image the spec's author chose: lines
//! that do not parse are skipped, and only the first [`MAX_LINES`] lines and
//! [`MAX_VERSIONS`] versions are read.

use std::collections::BTreeMap;

use api::forecast_model::{LatencyBucket, PodCounters};

/// Lines of a metrics page read at most.
pub const MAX_LINES: usize = 20_000;
/// Versions per pod read at most.
pub const MAX_VERSIONS: usize = 32;
/// Histogram buckets per version read at most (the predictor has 27 latency and 30
/// difference bounds); the rest are skipped, so what is merged and copied into
/// `status.rollout.windowStart` stays small whatever a page holds.
pub const MAX_BUCKETS: usize = 64;

/// The shadow version's comparison on one pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShadowCounters {
    pub compared: u64,
    pub dropped: u64,
    pub errors: u64,
    /// Rows compared and the sum of their absolute differences.
    pub rows: u64,
    pub abs_diff_sum: f64,
    /// Cumulative histogram of absolute differences (`+Inf` left out).
    pub abs_diff: Vec<LatencyBucket>,
}

/// Features per version whose drift is read at most.
pub const MAX_DRIFT_FEATURES: usize = 256;

/// One version's input drift on one pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodDrift {
    /// Rows in the pod's drift window.
    pub rows: u64,
    /// Population stability index by feature.
    pub psi: BTreeMap<String, f64>,
}

/// What one pod's `/metrics` says, by version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodMetrics {
    pub versions: BTreeMap<String, PodCounters>,
    pub shadow: BTreeMap<String, ShadowCounters>,
    pub drift: BTreeMap<String, PodDrift>,
}

impl PodMetrics {
    /// The pod's counters for `version` (zero when it has served none).
    pub fn counters(&self, pod: &str, version: &str) -> PodCounters {
        let mut c = self.versions.get(version).cloned().unwrap_or_default();
        c.pod = pod.to_owned();
        c.version = version.to_owned();
        c
    }
}

/// One sample: its metric name, labels and value.
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
}

impl Sample<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the predictor's metrics text.
pub fn parse(text: &str) -> PodMetrics {
    let mut out = PodMetrics::default();
    for line in text.lines().take(MAX_LINES) {
        if line.starts_with('#') {
            continue;
        }
        let Some(sample) = sample(line) else {
            continue;
        };
        let Some(version) = sample.label("version").map(str::to_owned) else {
            continue;
        };
        let count = || count(sample.value);
        if sample.name.starts_with("predictor_shadow_") {
            let known = out.shadow.len() < MAX_VERSIONS || out.shadow.contains_key(&version);
            if !known {
                continue;
            }
            let s = out.shadow.entry(version).or_default();
            match sample.name {
                "predictor_shadow_compared_total" => s.compared = count(),
                "predictor_shadow_dropped_total" => s.dropped = count(),
                "predictor_shadow_errors_total" => s.errors = count(),
                "predictor_shadow_abs_diff_sum" => s.abs_diff_sum = finite(sample.value),
                "predictor_shadow_abs_diff_count" => s.rows = count(),
                "predictor_shadow_abs_diff_bucket" => push_bucket(&mut s.abs_diff, &sample),
                _ => {}
            }
        } else if matches!(
            sample.name,
            "predictor_drift_window_rows" | "predictor_feature_drift_psi"
        ) {
            let known = out.drift.len() < MAX_VERSIONS || out.drift.contains_key(&version);
            if !known {
                continue;
            }
            let d = out.drift.entry(version).or_default();
            if sample.name == "predictor_drift_window_rows" {
                d.rows = count();
            } else if let Some(feature) = sample.label("feature") {
                let known = d.psi.len() < MAX_DRIFT_FEATURES || d.psi.contains_key(feature);
                if known && sample.value.is_finite() && sample.value >= 0.0 {
                    d.psi.insert(feature.to_owned(), sample.value);
                }
            }
        } else if sample.name.starts_with("predictor_model_") {
            let known = out.versions.len() < MAX_VERSIONS || out.versions.contains_key(&version);
            if !known {
                continue;
            }
            let v = out.versions.entry(version).or_default();
            match (sample.name, sample.label("outcome")) {
                ("predictor_model_requests_total", Some("ok")) => {
                    v.requests = v.requests.saturating_add(count())
                }
                ("predictor_model_requests_total", Some("error")) => {
                    v.requests = v.requests.saturating_add(count());
                    v.errors = v.errors.saturating_add(count());
                }
                ("predictor_model_predictions_total", _) => v.predictions = count(),
                ("predictor_model_prediction_sum", _) => v.prediction_sum = finite(sample.value),
                ("predictor_model_request_duration_seconds_bucket", _) => {
                    push_bucket(&mut v.latency, &sample)
                }
                _ => {}
            }
        }
    }
    for v in out.versions.values_mut() {
        v.latency.sort_by(|a, b| a.le.total_cmp(&b.le));
    }
    for s in out.shadow.values_mut() {
        s.abs_diff.sort_by(|a, b| a.le.total_cmp(&b.le));
    }
    out
}

/// A finite bucket bound and its count (`+Inf` and junk bounds are left out).
fn push_bucket(buckets: &mut Vec<LatencyBucket>, sample: &Sample) {
    if buckets.len() >= MAX_BUCKETS {
        return;
    }
    let le = sample.label("le").and_then(|le| le.parse::<f64>().ok());
    if let Some(le) = le.filter(|le| le.is_finite()) {
        buckets.push(LatencyBucket {
            le,
            count: count(sample.value),
        });
    }
}

fn finite(value: f64) -> f64 {
    if value.is_finite() { value } else { 0.0 }
}

/// A counter's value as a count (negative, fractional or absurd values are junk → 0).
fn count(value: f64) -> u64 {
    if (0.0..1e18).contains(&value) {
        value as u64
    } else {
        0
    }
}

/// `name{k="v",...} value [timestamp]`, or None.
fn sample(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// `k="v",k2="v2"}` → the labels and the text after the `}`.
fn label_set(mut text: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = text.find('=')?;
        let key = text[..eq].trim();
        let mut chars = text[eq + 1..].char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut escaped = false;
        let mut end = None;
        for (i, c) in chars {
            match (escaped, c) {
                (true, 'n') => {
                    value.push('\n');
                    escaped = false;
                }
                (true, c) => {
                    value.push(c);
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                (false, c) => value.push(c),
            }
            if value.len() > 256 {
                return None;
            }
        }
        labels.push((key, value));
        text = &text[end?..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP predictor_model_requests Prediction requests.
# TYPE predictor_model_requests counter
predictor_model_requests_total{version="3",outcome="ok"} 120
predictor_model_requests_total{version="3",outcome="error"} 2
predictor_model_requests_total{version="3",outcome="rejected"} 9
predictor_model_requests_total{version="3",outcome="timeout"} 500
predictor_model_requests_total{version="2",outcome="ok"} 5
predictor_model_predictions_total{version="3"} 240
predictor_model_prediction_sum{version="3"} -36.5
predictor_model_request_duration_seconds_bucket{le="0.002",version="3"} 100
predictor_model_request_duration_seconds_bucket{le="0.001",version="3"} 60
predictor_model_request_duration_seconds_bucket{le="+Inf",version="3"} 122
predictor_shadow_compared_total{version="4"} 7
predictor_shadow_abs_diff_sum{version="4"} 3.5
predictor_shadow_abs_diff_count{version="4"} 14
predictor_shadow_abs_diff_bucket{le="1.0",version="4"} 14
predictor_model_requests_total{version="9",outcome="ok"} NaN
garbage line {{{
predictor_model_requests_total{version="5\"x",outcome="ok"} 1
predictor_model_requests_total{version="6",outcome="ok"} -4
"#;

    #[test]
    fn drift_figures_are_read_by_version_and_feature() {
        let m = parse(
            "# TYPE predictor_feature_drift_psi gauge\n\
             predictor_feature_drift_psi{version=\"7\",feature=\"lag_1\"} 0.8\n\
             predictor_feature_drift_psi{version=\"7\",feature=\"month\"} 0.01\n\
             predictor_feature_drift_psi{version=\"7\",feature=\"bad\"} NaN\n\
             predictor_feature_drift_psi{version=\"7\"} 3\n\
             predictor_drift_window_rows{version=\"7\"} 1200\n",
        );
        let d = &m.drift["7"];
        assert_eq!(d.rows, 1200);
        assert_eq!(
            d.psi
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect::<Vec<_>>(),
            vec![("lag_1", 0.8), ("month", 0.01)]
        );
        let many: String = (0..MAX_DRIFT_FEATURES + 10)
            .map(|i| format!("predictor_feature_drift_psi{{version=\"1\",feature=\"f{i}\"}} 0.1\n"))
            .collect();
        assert_eq!(parse(&many).drift["1"].psi.len(), MAX_DRIFT_FEATURES);
    }

    #[test]
    fn the_figures_of_each_version_are_read_and_junk_is_skipped() {
        let m = parse(PAGE);
        let v3 = m.counters("pod-a", "3");
        // Refused requests and missed deadlines (a flooded pod) are not the version's:
        // they count neither as its requests nor as its errors.
        assert_eq!((v3.requests, v3.errors, v3.predictions), (122, 2, 240));
        assert_eq!(v3.prediction_sum, -36.5);
        assert_eq!(
            v3.latency,
            vec![
                LatencyBucket {
                    le: 0.001,
                    count: 60
                },
                LatencyBucket {
                    le: 0.002,
                    count: 100
                }
            ]
        );
        assert_eq!((v3.pod.as_str(), v3.version.as_str()), ("pod-a", "3"));
        assert_eq!(m.counters("pod-a", "2").requests, 5);
        assert_eq!(
            m.counters("pod-a", "7"),
            PodCounters {
                pod: "pod-a".into(),
                version: "7".into(),
                ..Default::default()
            }
        );
        assert_eq!(m.counters("pod-a", "9").requests, 0, "NaN is not a count");
        assert_eq!(
            m.counters("pod-a", "6").requests,
            0,
            "nor is a negative value"
        );
        assert_eq!(m.counters("pod-a", "5\"x").requests, 1, "escapes are read");
        let shadow = &m.shadow["4"];
        assert_eq!(
            (shadow.compared, shadow.rows, shadow.abs_diff_sum),
            (7, 14, 3.5)
        );
    }

    #[test]
    fn a_flood_of_versions_is_cut() {
        let page: String = (0..1000)
            .map(|v| {
                format!("predictor_model_requests_total{{version=\"{v}\",outcome=\"ok\"}} 1\n")
            })
            .collect();
        assert_eq!(parse(&page).versions.len(), MAX_VERSIONS);
    }

    #[test]
    fn a_flood_of_buckets_is_cut_and_huge_counters_do_not_wrap() {
        // The same counter many times, each just under what is read as a count...
        let mut page =
            "predictor_model_requests_total{version=\"1\",outcome=\"error\"} 9e17\n".repeat(40);
        // ...then a histogram with thousands of bounds.
        page.extend((0..10_000).map(|i| {
            format!(
                "predictor_model_request_duration_seconds_bucket{{le=\"{}\",version=\"1\"}} {i}\n",
                i as f64 / 1000.0 + 0.001
            )
        }));
        let m = parse(&page);
        let v1 = m.counters("pod", "1");
        assert_eq!(v1.latency.len(), MAX_BUCKETS);
        assert_eq!((v1.requests, v1.errors), (u64::MAX, u64::MAX));
    }
}
