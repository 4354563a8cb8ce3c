//! Histograms read from a Prometheus text page, for the benchmarks' latency figures.

/// The cumulative buckets of histogram `name` for what was observed between two scrapes.
pub fn histogram_window(before: &str, after: &str, name: &str) -> Vec<(f64, u64)> {
    labelled_window(before, after, name, "")
}

/// [`histogram_window`] of one labelled series (see [`labelled_histogram`]).
pub fn labelled_window(before: &str, after: &str, name: &str, labels: &str) -> Vec<(f64, u64)> {
    let before = labelled_histogram(before, name, labels);
    labelled_histogram(after, name, labels)
        .into_iter()
        .map(|(le, count)| {
            let earlier = before.iter().find(|(l, _)| *l == le).map_or(0, |(_, c)| *c);
            (le, count - earlier)
        })
        .collect()
}

/// The cumulative buckets `(le, count)` of a Prometheus histogram.
pub fn histogram(text: &str, name: &str) -> Vec<(f64, u64)> {
    labelled_histogram(text, name, "")
}

/// The cumulative buckets of the series of histogram `name` that has label `label`
/// (`step="owned"`; empty: every bucket line of `name`, for a histogram without labels).
pub fn labelled_histogram(text: &str, name: &str, label: &str) -> Vec<(f64, u64)> {
    let series = format!("{name}_bucket");
    let mut buckets: Vec<(f64, u64)> = text
        .lines()
        .filter(|l| l.starts_with(&series) && l.contains(label))
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

/// For each value of label `key` of histogram `name` seen in `after`: the value, its p50
/// and p99 upper bounds and its number of observations between the two scrapes.
pub fn quantiles_by_label(
    before: &str,
    after: &str,
    name: &str,
    key: &str,
) -> Vec<(String, f64, f64, u64)> {
    let series = format!("{name}_bucket{{");
    let label = format!("{key}=\"");
    let mut values: Vec<String> = after
        .lines()
        .filter(|l| l.starts_with(&series))
        .filter_map(|l| Some(l.split(&label).nth(1)?.split('"').next()?.to_owned()))
        .collect();
    values.dedup();
    values
        .into_iter()
        .filter_map(|v| {
            let window = labelled_window(before, after, name, &format!("{key}=\"{v}\""));
            let (p50, count) = quantile(&window, 0.5)?;
            let (p99, _) = quantile(&window, 0.99)?;
            Some((v, p50, p99, count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "op_step_seconds";

    fn page(a: [u64; 3], b: [u64; 3]) -> String {
        let mut out = String::new();
        for (step, counts) in [("own", a), ("own_pods", b)] {
            for (le, c) in ["0.01", "0.05", "+Inf"].iter().zip(counts) {
                out.push_str(&format!(
                    "{NAME}_bucket{{le=\"{le}\",step=\"{step}\"}} {c}\n"
                ));
            }
            out.push_str(&format!("{NAME}_count{{step=\"{step}\"}} {}\n", counts[2]));
        }
        out
    }

    #[test]
    fn each_label_value_gets_its_own_window_quantiles() {
        let before = page([10, 10, 10], [0, 0, 0]);
        let after = page([110, 200, 200], [100, 100, 110]);
        let got = quantiles_by_label(&before, &after, NAME, "step");
        assert_eq!(
            got,
            vec![
                ("own".to_owned(), 0.01, 0.05, 190),
                ("own_pods".to_owned(), 0.01, f64::INFINITY, 110),
            ]
        );
    }
}
