//! Per-version traffic of a ForecastModel's pods, read from their `/metrics` through the
//! API server's pod proxy: requests, errors and the latency histogram by the version that
//! answered, summed over the pods; the request rate between two reads of the page.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

/// Versions kept per read (the predictor keeps a handful; a pod cannot grow this).
const MAX_VERSIONS: usize = 16;
/// Latency buckets kept per version.
const MAX_BUCKETS: usize = 64;

/// One version's counters, summed over pods.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionTraffic {
    pub requests: u64,
    pub errors: u64,
    /// Cumulative (upper bound in seconds, count), ascending.
    pub buckets: Vec<(f64, u64)>,
}

impl VersionTraffic {
    /// Errors over requests (none before a request).
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// The upper bound of the bucket holding the 99th percentile, in seconds.
    pub fn p99(&self) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total == 0 {
            return None;
        }
        let rank = (total as f64 * 0.99).ceil() as u64;
        self.buckets
            .iter()
            .find(|(_, count)| *count >= rank)
            .map(|(le, _)| *le)
    }
}

/// A sample's labels, `(name, value)` in order.
type Labels<'a> = Vec<(&'a str, &'a str)>;

/// The name, labels and value of one sample line, `name{a="x",b="y"} value`.
fn sample(line: &str) -> Option<(&str, Labels<'_>, f64)> {
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (head, ""),
    };
    let labels = labels
        .split(',')
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.trim(), v.trim().trim_matches('"')))
        })
        .collect();
    Some((name, labels, value))
}

fn label<'a>(labels: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    labels.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// Adds one pod's `/metrics` text to `into`, by version.
pub fn add_pod(into: &mut BTreeMap<String, VersionTraffic>, text: &str) {
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        if !value.is_finite() || value < 0.0 {
            continue;
        }
        let Some(version) = label(&labels, "version") else {
            continue;
        };
        if !into.contains_key(version) && into.len() >= MAX_VERSIONS {
            continue;
        }
        let count = value as u64;
        match name {
            "predictor_model_requests_total" => {
                let v = into.entry(version.to_owned()).or_default();
                v.requests += count;
                if label(&labels, "outcome") == Some("error") {
                    v.errors += count;
                }
            }
            "predictor_model_request_duration_seconds_bucket" => {
                let Some(le) = label(&labels, "le").and_then(|le| {
                    if le == "+Inf" {
                        Some(f64::INFINITY)
                    } else {
                        le.parse().ok()
                    }
                }) else {
                    continue;
                };
                let v = into.entry(version.to_owned()).or_default();
                match v.buckets.iter().position(|(bound, _)| *bound == le) {
                    Some(i) => v.buckets[i].1 += count,
                    None if v.buckets.len() < MAX_BUCKETS => {
                        v.buckets.push((le, count));
                        v.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                    }
                    None => {}
                }
            }
            _ => {}
        }
    }
}

/// The request totals seen at the last read, per model and version, for rates.
#[derive(Default)]
pub struct Rates {
    seen: Mutex<HashMap<(String, String), (Instant, u64)>>,
}

impl Rates {
    /// Requests per second of `version` of `model` since the last read of it (none on the
    /// first read, or when the counters went back: a pod restarted).
    pub fn rate(&self, model: &str, version: &str, requests: u64) -> Option<f64> {
        self.rate_at(model, version, requests, Instant::now())
    }

    fn rate_at(&self, model: &str, version: &str, requests: u64, now: Instant) -> Option<f64> {
        let mut seen = self.seen.lock().ok()?;
        if seen.len() > 10_000 {
            seen.clear();
        }
        let key = (model.to_owned(), version.to_owned());
        let previous = seen.insert(key, (now, requests));
        let (then, before) = previous?;
        let seconds = now.duration_since(then).as_secs_f64();
        (seconds >= 0.5 && requests >= before).then(|| (requests - before) as f64 / seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = r#"# HELP predictor_model_requests_total x
predictor_model_requests_total{version="2",outcome="ok"} 97
predictor_model_requests_total{version="2",outcome="error"} 3
predictor_model_requests_total{version="1",outcome="ok"} 10
predictor_model_request_duration_seconds_bucket{version="2",le="0.001"} 50
predictor_model_request_duration_seconds_bucket{version="2",le="0.005"} 98
predictor_model_request_duration_seconds_bucket{version="2",le="0.01"} 99
predictor_model_request_duration_seconds_bucket{version="2",le="+Inf"} 100
predictor_predictions_total 500
"#;

    #[test]
    fn pods_are_summed_by_version() {
        let mut traffic = BTreeMap::new();
        add_pod(&mut traffic, POD);
        add_pod(&mut traffic, POD);
        let v2 = &traffic["2"];
        assert_eq!((v2.requests, v2.errors), (200, 6));
        assert_eq!(v2.error_rate(), Some(0.03));
        // 99% of 200 is 198: the 5 ms bucket holds 196, the 10 ms one 198.
        assert_eq!(v2.p99(), Some(0.01));
        assert_eq!(traffic["1"].requests, 20);
        assert_eq!(traffic["1"].p99(), None);
    }

    #[test]
    fn hostile_text_is_bounded() {
        let mut text = String::new();
        for v in 0..1000 {
            text.push_str(&format!(
                "predictor_model_requests_total{{version=\"{v}\",outcome=\"ok\"}} 1\n"
            ));
        }
        text.push_str("predictor_model_requests_total{version=\"x\",outcome=\"ok\"} NaN\n");
        text.push_str("garbage line\n");
        let mut traffic = BTreeMap::new();
        add_pod(&mut traffic, &text);
        assert_eq!(traffic.len(), MAX_VERSIONS);
    }

    #[test]
    fn a_rate_needs_two_reads() {
        let rates = Rates::default();
        let t0 = Instant::now();
        let later = |ms| t0 + std::time::Duration::from_millis(ms);
        assert_eq!(rates.rate_at("m", "1", 10, t0), None);
        assert_eq!(rates.rate_at("m", "1", 20, later(2000)), Some(5.0));
        assert_eq!(
            rates.rate_at("m", "2", 20, later(2000)),
            None,
            "per version"
        );
        assert_eq!(rates.rate_at("m", "1", 30, later(2100)), None, "too soon");
        assert_eq!(
            rates.rate_at("m", "1", 5, later(4000)),
            None,
            "a counter reset"
        );
    }
}
