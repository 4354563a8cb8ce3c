//! Histograms read from a Prometheus text page, for the benchmarks' latency figures.

/// The cumulative buckets of histogram `name` for what was observed between two scrapes.
pub fn histogram_window(before: &str, after: &str, name: &str) -> Vec<(f64, u64)> {
    let before = histogram(before, name);
    histogram(after, name)
        .into_iter()
        .map(|(le, count)| {
            let earlier = before.iter().find(|(l, _)| *l == le).map_or(0, |(_, c)| *c);
            (le, count - earlier)
        })
        .collect()
}

/// The cumulative buckets `(le, count)` of a Prometheus histogram.
pub fn histogram(text: &str, name: &str) -> Vec<(f64, u64)> {
    let mut buckets: Vec<(f64, u64)> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The upper bound of the bucket holding quantile `q`, and the number of observations.
pub fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<(f64, u64)> {
    let total = buckets.last()?.1;
    let want = (total as f64 * q).ceil() as u64;
    buckets
        .iter()
        .find(|(_, c)| *c >= want)
        .map(|(le, _)| (*le, total))
}
