//! `drift_reference.json`: what a model's training inputs looked like, per feature, so a
//! predictor can tell how far live inputs have moved from them (population stability
//! index). Written beside the model in the version's directory (`forecastctl register`
//! writes it from the training rows; five lines of Python do for any other model, see the
//! README); read back with every field checked, since a registry's artifacts are not
//! trusted.
//!
//! Per feature: `edges`, the cut points between bins in increasing order (bin `i` holds
//! `edges[i-1] < x <= edges[i]`, the first and last bins open-ended), and `shares`, the
//! training rows' share in each bin (`edges.len() + 1` of them, summing to 1).

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// The file name in a model version's directory.
pub const DRIFT_REFERENCE_FILE: &str = "drift_reference.json";
/// The format this crate writes and reads.
pub const DRIFT_REFERENCE_FORMAT: &str = "forecast-drift-reference/v1";
/// Most bins per feature (quantile bins beyond a few dozen add noise, not sensitivity).
pub const MAX_BINS: usize = 100;
/// Largest file read (100 bins for 1,000 features fits).
pub const MAX_DRIFT_REFERENCE_BYTES: u64 = 4 * 1024 * 1024;
/// The bins [`DriftReference::from_rows`] makes: deciles.
pub const DEFAULT_BINS: usize = 10;

/// The reference of every input feature, in the model's feature order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftReference {
    pub format: String,
    pub features: Vec<FeatureReference>,
}

/// One feature's bins and the training share in each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureReference {
    pub name: String,
    pub edges: Vec<f64>,
    pub shares: Vec<f64>,
}

impl FeatureReference {
    /// The bin of a value (`value` is not NaN).
    pub fn bin(&self, value: f64) -> usize {
        bin_of(&self.edges, value)
    }
}

/// The bin of `value` among increasing `edges`: the number of edges below it.
pub fn bin_of(edges: &[f64], value: f64) -> usize {
    edges.partition_point(|&e| e < value)
}

impl DriftReference {
    /// Reads and checks a reference for a model with these input features: the same
    /// features in the same order, at most [`MAX_BINS`] bins each, edges finite and
    /// strictly increasing, shares finite, at least 0 and summing to 1.
    pub fn parse(bytes: &[u8], features: &[String]) -> Result<Self, ModelError> {
        let reference: DriftReference = serde_json::from_slice(bytes)
            .map_err(|e| ModelError::invalid(format!("{DRIFT_REFERENCE_FILE}: {e}")))?;
        reference.check(features)?;
        Ok(reference)
    }

    /// The reference in a model version's directory: `None` when it has none (or `dir` is
    /// a file), else the checked reference or why it was refused. At most
    /// [`MAX_DRIFT_REFERENCE_BYTES`] are read.
    pub fn read_from_dir(
        dir: &std::path::Path,
        features: &[String],
    ) -> Option<Result<Self, String>> {
        use std::io::Read;
        let path = dir.join(DRIFT_REFERENCE_FILE);
        let file = std::fs::File::open(&path).ok()?;
        let mut bytes = Vec::new();
        let read = file
            .take(MAX_DRIFT_REFERENCE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{DRIFT_REFERENCE_FILE}: {e}"));
        Some(match read {
            Err(e) => Err(e),
            Ok(n) if n as u64 > MAX_DRIFT_REFERENCE_BYTES => Err(format!(
                "{DRIFT_REFERENCE_FILE} is larger than {MAX_DRIFT_REFERENCE_BYTES} bytes"
            )),
            Ok(_) => Self::parse(&bytes, features).map_err(|e| e.to_string()),
        })
    }

    fn check(&self, features: &[String]) -> Result<(), ModelError> {
        let bad = |why: String| ModelError::invalid(format!("{DRIFT_REFERENCE_FILE}: {why}"));
        if self.format != DRIFT_REFERENCE_FORMAT {
            return Err(bad(format!(
                "format {:?} is not {DRIFT_REFERENCE_FORMAT:?}",
                self.format
            )));
        }
        if self.features.len() != features.len() {
            return Err(bad(format!(
                "{} features, but the model takes {}",
                self.features.len(),
                features.len()
            )));
        }
        for (i, (f, name)) in self.features.iter().zip(features).enumerate() {
            if f.name != *name {
                return Err(bad(format!(
                    "feature {i} is {:?}, but the model's is {name:?}",
                    f.name
                )));
            }
            let bins = f.shares.len();
            if bins == 0 || bins > MAX_BINS || f.edges.len() + 1 != bins {
                return Err(bad(format!(
                    "{name}: {} edges and {bins} shares (shares must be edges + 1, at most {MAX_BINS})",
                    f.edges.len()
                )));
            }
            if f.edges.iter().any(|e| !e.is_finite()) || f.edges.windows(2).any(|w| w[0] >= w[1]) {
                return Err(bad(format!(
                    "{name}: the edges must be finite and strictly increasing"
                )));
            }
            if f.shares.iter().any(|s| !s.is_finite() || *s < 0.0) {
                return Err(bad(format!("{name}: a share is negative or not a number")));
            }
            let total: f64 = f.shares.iter().sum();
            if (total - 1.0).abs() > 1e-6 {
                return Err(bad(format!("{name}: the shares sum to {total}, not 1")));
            }
        }
        Ok(())
    }

    /// A reference from rows (`names.len()` values each, NaN for a missing value): up to
    /// `bins` quantile bins per feature (fewer when values repeat), missing values left
    /// out. A feature with no value gets one bin.
    pub fn from_rows(names: &[String], rows: &[Vec<f64>], bins: usize) -> Self {
        let bins = bins.clamp(1, MAX_BINS);
        let features = names
            .iter()
            .enumerate()
            .map(|(j, name)| {
                let mut values: Vec<f64> = rows
                    .iter()
                    .filter_map(|r| r.get(j).copied())
                    .filter(|v| v.is_finite())
                    .collect();
                values.sort_by(f64::total_cmp);
                let mut edges: Vec<f64> = (1..bins)
                    .filter_map(|k| {
                        // The last value of the k-th share: bin i ends on an observed value.
                        (k * values.len() / bins)
                            .checked_sub(1)
                            .and_then(|i| values.get(i))
                            .copied()
                    })
                    .collect();
                edges.dedup();
                // The largest value would leave the last bin empty.
                if edges.last().is_some_and(|&e| Some(&e) == values.last()) {
                    edges.pop();
                }
                let mut counts = vec![0usize; edges.len() + 1];
                for &v in &values {
                    counts[bin_of(&edges, v)] += 1;
                }
                let n = values.len().max(1) as f64;
                let mut shares: Vec<f64> = counts.iter().map(|&c| c as f64 / n).collect();
                if values.is_empty() {
                    shares = vec![1.0];
                }
                FeatureReference {
                    name: name.clone(),
                    edges,
                    shares,
                }
            })
            .collect();
        DriftReference {
            format: DRIFT_REFERENCE_FORMAT.into(),
            features,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("f{i}")).collect()
    }

    #[test]
    fn quantile_bins_hold_equal_shares_and_round_trip() {
        let rows: Vec<Vec<f64>> = (0..1000)
            .map(|i| vec![f64::from(i), if i % 4 == 0 { f64::NAN } else { 1.0 }])
            .collect();
        let reference = DriftReference::from_rows(&names(2), &rows, 10);
        let first = &reference.features[0];
        assert_eq!(first.edges.len(), 9);
        assert_eq!(first.edges[0], 99.0);
        assert!(
            first.shares.iter().all(|&s| (s - 0.1).abs() < 1e-12),
            "{first:?}"
        );
        assert_eq!(first.bin(99.0), 0);
        assert_eq!(first.bin(99.5), 1);
        assert_eq!(first.bin(-1e9), 0);
        assert_eq!(first.bin(1e9), 9);
        // A constant feature: one bin holding everything; its missing values left out.
        assert_eq!(reference.features[1].edges, Vec::<f64>::new());
        assert_eq!(reference.features[1].shares, vec![1.0]);
        let bytes = serde_json::to_vec(&reference).unwrap();
        assert_eq!(DriftReference::parse(&bytes, &names(2)).unwrap(), reference);
    }

    #[test]
    fn a_malformed_reference_is_refused_naming_what_is_wrong() {
        let good = DriftReference::from_rows(
            &names(2),
            &(0..100)
                .map(|i| vec![f64::from(i), f64::from(i % 7)])
                .collect::<Vec<_>>(),
            5,
        );
        type Breakage = Box<dyn Fn(&mut DriftReference)>;
        let cases: Vec<(Breakage, &str)> = vec![
            (
                Box::new(|r| {
                    r.features.pop();
                }),
                "1 features, but the model takes 2",
            ),
            (
                Box::new(|r| r.features[1].name = "other".into()),
                "feature 1 is \"other\"",
            ),
            (
                Box::new(|r| r.features[0].edges.reverse()),
                "strictly increasing",
            ),
            // Python's json writes NaN as a bare token, which JSON does not have.
            (
                Box::new(|r| r.features[0].edges[1] = f64::NAN),
                "expected value",
            ),
            (Box::new(|r| r.features[0].shares[0] = -0.1), "negative"),
            (Box::new(|r| r.features[0].shares[0] += 0.5), "sum to"),
            (Box::new(|r| r.features[0].shares.push(0.0)), "edges and"),
            (
                Box::new(|r| {
                    r.features[0].edges = (0..1_000).map(f64::from).collect();
                    r.features[0].shares = vec![0.001; 1_001];
                }),
                "at most 100",
            ),
            (Box::new(|r| r.format = "v0".into()), "format"),
        ];
        for (break_it, message) in cases {
            let mut bad = good.clone();
            break_it(&mut bad);
            // NaN does not survive JSON: write the token Python writes.
            let text = serde_json::to_string(&bad).unwrap().replace("null", "NaN");
            let err = DriftReference::parse(text.as_bytes(), &names(2)).unwrap_err();
            assert!(err.to_string().contains(message), "{message}: {err}");
        }
        let err = DriftReference::parse(b"{\"format\": 1}", &names(2)).unwrap_err();
        assert!(err.to_string().contains(DRIFT_REFERENCE_FILE), "{err}");
    }
}
