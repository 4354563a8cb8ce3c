//! The canary verdict, pure: the canary pods against the baseline pods over the bake
//! window (counters now minus counters when the bake started), the figures, and whether
//! they pass the spec's limits.

use std::time::Duration;

use api::forecast_model::{AnalysisFigures, AnalysisSpec, LatencyBucket, PodCounters};

/// A canary spec with its durations read.
#[derive(Debug, Clone, PartialEq)]
pub struct CanarySettings {
    pub bake: Duration,
    pub max_bake: Duration,
    pub min_requests: u64,
    pub limits: AnalysisSpec,
}

/// Counters summed over a set of pods.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub predictions: u64,
    pub prediction_sum: f64,
    pub latency: Vec<LatencyBucket>,
}

impl Totals {
    fn add(&mut self, c: &PodCounters) {
        // Figures from pods the spec's author controls: added without wrapping.
        self.requests = self.requests.saturating_add(c.requests);
        self.errors = self.errors.saturating_add(c.errors);
        self.predictions = self.predictions.saturating_add(c.predictions);
        self.prediction_sum += c.prediction_sum;
        add_buckets(&mut self.latency, &c.latency);
    }

    fn mean_prediction(&self) -> Option<f64> {
        (self.predictions > 0).then(|| self.prediction_sum / self.predictions as f64)
    }
}

/// Adds one cumulative histogram's buckets to another's, bound by bound (pods of one
/// predictor build share their bounds), kept in bound order: one merge of the two sorted
/// lists, linear in their lengths (each at most [`crate::pod_metrics::MAX_BUCKETS`] from a
/// pod).
pub fn add_buckets(into: &mut Vec<LatencyBucket>, from: &[LatencyBucket]) {
    let mut from = from.to_vec();
    if !from.is_sorted_by(|a, b| a.le <= b.le) {
        from.sort_by(|a, b| a.le.total_cmp(&b.le));
    }
    let mut merged = Vec::with_capacity(into.len() + from.len());
    let (mut a, mut b) = (
        std::mem::take(into).into_iter().peekable(),
        from.into_iter().peekable(),
    );
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.le.total_cmp(&y.le) {
                std::cmp::Ordering::Less => a.next(),
                std::cmp::Ordering::Greater => b.next(),
                std::cmp::Ordering::Equal => {
                    let (x, y) = (a.next(), b.next());
                    x.zip(y).map(|(x, y)| LatencyBucket {
                        le: x.le,
                        count: x.count.saturating_add(y.count),
                    })
                }
            },
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => break,
        };
        merged.extend(next);
    }
    *into = merged;
}

/// What a pod served in the window: `now` minus what it had at `start` for the same pod
/// and version. A counter lower than at the start means the pod restarted: all of `now`.
pub fn delta(start: Option<&PodCounters>, now: &PodCounters) -> PodCounters {
    let Some(start) =
        start.filter(|s| s.requests <= now.requests && s.predictions <= now.predictions)
    else {
        return now.clone();
    };
    PodCounters {
        pod: now.pod.clone(),
        version: now.version.clone(),
        requests: now.requests - start.requests,
        errors: now.errors.saturating_sub(start.errors),
        predictions: now.predictions - start.predictions,
        prediction_sum: now.prediction_sum - start.prediction_sum,
        latency: now
            .latency
            .iter()
            .map(|b| LatencyBucket {
                le: b.le,
                count: b.count.saturating_sub(
                    start
                        .latency
                        .iter()
                        .find(|s| s.le == b.le)
                        .map_or(0, |s| s.count),
                ),
            })
            .collect(),
    }
}

/// The canary's and the baseline's totals over the window: `now` holds each pod's counters
/// for the version it serves (canary pods: the new version; the others: the baseline).
pub fn window(
    start: &[PodCounters],
    now: &[PodCounters],
    canary_pods: &[String],
) -> (Totals, Totals) {
    let mut canary = Totals::default();
    let mut baseline = Totals::default();
    for c in now {
        let at_start = start
            .iter()
            .find(|s| s.pod == c.pod && s.version == c.version);
        let d = delta(at_start, c);
        if canary_pods.contains(&c.pod) {
            canary.add(&d);
        } else {
            baseline.add(&d);
        }
    }
    (canary, baseline)
}

/// The `q` quantile of a cumulative histogram holding `total` observations, interpolated
/// within its bucket as Prometheus' `histogram_quantile` does (beyond the last finite
/// bound: that bound).
pub fn quantile(q: f64, buckets: &[LatencyBucket], total: u64) -> Option<f64> {
    if total == 0 || buckets.is_empty() {
        return None;
    }
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for b in buckets {
        if b.count as f64 >= rank {
            let in_bucket = b.count.saturating_sub(lower.1);
            if in_bucket == 0 {
                return Some(b.le);
            }
            let share = (rank - lower.1 as f64) / in_bucket as f64;
            return Some(lower.0 + (b.le - lower.0) * share);
        }
        lower = (b.le, b.count);
    }
    buckets.last().map(|b| b.le)
}

pub fn figures(canary: &Totals, baseline: &Totals) -> AnalysisFigures {
    let p99 = |t: &Totals| quantile(0.99, &t.latency, t.requests);
    let (canary_p99, baseline_p99) = (p99(canary), p99(baseline));
    let latency_ratio = match (canary_p99, baseline_p99) {
        (Some(c), Some(b)) if b > 0.0 => Some(c / b),
        _ => None,
    };
    let prediction_shift = match (canary.mean_prediction(), baseline.mean_prediction()) {
        (Some(c), Some(b)) if b != 0.0 => Some((c - b).abs() / b.abs()),
        (Some(c), Some(b)) => Some((c - b).abs()),
        _ => None,
    };
    let error_rate = if canary.requests == 0 {
        0.0
    } else {
        canary.errors as f64 / canary.requests as f64
    };
    AnalysisFigures {
        requests: i64::try_from(canary.requests).unwrap_or(i64::MAX),
        baseline_requests: i64::try_from(baseline.requests).unwrap_or(i64::MAX),
        error_rate,
        latency_ratio,
        canary_p99_ms: canary_p99.map(|s| s * 1000.0),
        baseline_p99_ms: baseline_p99.map(|s| s * 1000.0),
        prediction_shift,
    }
}

/// Below this canary p99 (milliseconds) the latency ratio is reported but not judged: at
/// sub-millisecond prediction times a ratio measures scheduling noise and cold caches after
/// a reload, not a regression anyone can feel behind an HTTP hop.
pub const LATENCY_FLOOR_MS: f64 = 1.0;

/// The verdict on the figures after the canary has baked `baked`.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Keep baking; look again after this long.
    Wait(Duration),
    Pass,
    /// Figures over their limits, each described.
    Fail(Vec<String>),
    /// Not enough traffic by `maxBake`.
    Inconclusive(String),
}

/// How often a bake that has run its course but lacks traffic is looked at again.
pub const RECHECK: Duration = Duration::from_secs(2);

pub fn verdict(f: &AnalysisFigures, s: &CanarySettings, baked: Duration) -> Verdict {
    if baked < s.bake {
        return Verdict::Wait(s.bake - baked);
    }
    let requests = u64::try_from(f.requests).unwrap_or(0);
    let enough =
        requests >= s.min_requests && f.baseline_requests > 0 && f.prediction_shift.is_some();
    if !enough {
        if baked >= s.max_bake {
            return Verdict::Inconclusive(format!(
                "after {}s the canary answered {} predictions (needs {}) and the baseline {}",
                baked.as_secs(),
                f.requests,
                s.min_requests,
                f.baseline_requests
            ));
        }
        return Verdict::Wait(RECHECK.min(s.max_bake - baked));
    }
    let l = &s.limits;
    let mut breaches = Vec::new();
    if f.error_rate > l.max_error_rate {
        breaches.push(format!(
            "error rate {:.4} > {}",
            f.error_rate, l.max_error_rate
        ));
    }
    let felt = f.canary_p99_ms.is_some_and(|ms| ms >= LATENCY_FLOOR_MS);
    if let Some(r) = f.latency_ratio.filter(|r| *r > l.max_latency_ratio && felt) {
        breaches.push(format!("latency ratio {r:.3} > {}", l.max_latency_ratio));
    }
    if let Some(shift) = f.prediction_shift.filter(|s| *s > l.max_prediction_shift) {
        breaches.push(format!(
            "prediction shift {shift:.4} > {}",
            l.max_prediction_shift
        ));
    }
    if breaches.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(breaches)
    }
}

/// Every figure beside its limit, for events: `requests 240 (min 200), error rate 0.0000
/// (max 0.01), latency ratio 1.120 (max 2), prediction shift 2.0012 (max 0.25)`.
pub fn describe(f: &AnalysisFigures, s: &CanarySettings) -> String {
    let or_none = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
    };
    format!(
        "requests {} (min {}), baseline requests {}, error rate {:.4} (max {}), latency ratio {} (max {}; p99 {} ms vs {} ms, judged from {LATENCY_FLOOR_MS} ms), prediction shift {} (max {})",
        f.requests,
        s.min_requests,
        f.baseline_requests,
        f.error_rate,
        s.limits.max_error_rate,
        or_none(f.latency_ratio, 3),
        s.limits.max_latency_ratio,
        or_none(f.canary_p99_ms, 3),
        or_none(f.baseline_p99_ms, 3),
        or_none(f.prediction_shift, 4),
        s.limits.max_prediction_shift
    )
}

#[cfg(test)]
#[path = "analysis_tests.rs"]
mod tests;
