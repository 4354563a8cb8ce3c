//! Input drift of the served version: per feature, live values counted in the bins of a
//! reference over a sliding window (`PREDICTOR_DRIFT_WINDOW`), and the population
//! stability index (PSI) of those counts against the reference's shares. The reference is
//! the version's `drift_reference.json` when it has a valid one, else the first
//! `PREDICTOR_DRIFT_BASELINE_ROWS` rows it served (their deciles).

mod window;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use api::predictor::{DriftInfo, FeatureDrift};
use model::drift_reference::{DEFAULT_BINS, DriftReference};

use crate::input::Matrix;
use window::Window;

/// Most feature values a traffic baseline holds (8 MB), whatever the row setting.
pub const MAX_BASELINE_VALUES: usize = 1_000_000;
/// Shares below this count as this in the PSI, so an empty bin costs a bounded amount
/// instead of infinity (the usual guard).
const MIN_SHARE: f64 = 1e-4;

/// `PREDICTOR_DRIFT_WINDOW` and `PREDICTOR_DRIFT_BASELINE_ROWS`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftSettings {
    pub window: Duration,
    pub baseline_rows: usize,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            window: Duration::from_secs(3600),
            baseline_rows: 10_000,
        }
    }
}

/// The population stability index of `counts` (live, per bin) against `expected` shares:
/// Σ (a − e) · ln(a / e) over the bins, shares floored at [`MIN_SHARE`]. `None` without a
/// counted value.
pub fn psi(expected: &[f64], counts: &[u64]) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let total = total as f64;
    Some(
        expected
            .iter()
            .zip(counts)
            .map(|(&e, &c)| {
                let a = (c as f64 / total).max(MIN_SHARE);
                let e = e.max(MIN_SHARE);
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

enum Stage {
    /// The first rows served, row-major, until there are `needed`.
    Collecting { values: Vec<f64>, needed: usize },
    Watching {
        reference: DriftReference,
        from_file: bool,
        window: Window,
    },
}

/// One served version's drift.
pub struct Drift {
    features: Vec<String>,
    settings: DriftSettings,
    reference_error: Option<String>,
    started: Instant,
    stage: Mutex<Stage>,
}

impl std::fmt::Debug for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drift")
            .field("features", &self.features.len())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Drift {
    /// The tracker of a model loaded from `dir` taking `features`, with the reference the
    /// directory holds (a refused one is logged and the traffic baseline used).
    pub fn of_model_dir(
        features: &[String],
        dir: &std::path::Path,
        settings: DriftSettings,
    ) -> std::sync::Arc<Drift> {
        let reference = DriftReference::read_from_dir(dir, features);
        if let Some(Err(e)) = &reference {
            tracing::warn!(error = %e, "the model's drift reference is refused; drift is measured against the first rows served");
        }
        std::sync::Arc::new(Drift::new(features.to_vec(), reference, settings))
    }

    /// `reference`: what the version's directory held (`None`: no file; an error: why it
    /// was refused, and the traffic baseline is used).
    pub fn new(
        features: Vec<String>,
        reference: Option<Result<DriftReference, String>>,
        settings: DriftSettings,
    ) -> Self {
        let (stage, reference_error) = match reference {
            Some(Ok(reference)) => (
                Stage::Watching {
                    window: Window::new(&reference.features, settings.window),
                    reference,
                    from_file: true,
                },
                None,
            ),
            other => (
                Stage::Collecting {
                    values: Vec::new(),
                    needed: settings
                        .baseline_rows
                        .clamp(1, MAX_BASELINE_VALUES / features.len().max(1)),
                },
                other.and_then(Result::err),
            ),
        };
        Drift {
            features,
            settings,
            reference_error,
            started: Instant::now(),
            stage: Mutex::new(stage),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stage> {
        // Counting cannot leave the counts half-updated in a way that matters: go on.
        self.stage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the rows a request was answered for (in the model's feature order).
    pub fn observe(&self, rows: &Matrix) {
        if rows.n_features() != self.features.len() {
            return;
        }
        let epoch_at = self.started.elapsed();
        let mut stage = self.lock();
        let next = match &mut *stage {
            Stage::Watching {
                reference, window, ..
            } => {
                let epoch = window.epoch(epoch_at);
                window.observe(epoch, rows, &reference.features);
                None
            }
            Stage::Collecting { values, needed } => {
                let n = self.features.len();
                if values.capacity() == 0 {
                    values.reserve_exact(*needed * n);
                }
                let take = (*needed - values.len() / n).min(rows.rows());
                values.extend_from_slice(&rows.values()[..take * n]);
                (values.len() / n >= *needed).then(|| {
                    let baseline: Vec<Vec<f64>> =
                        values.chunks_exact(n).map(<[f64]>::to_vec).collect();
                    DriftReference::from_rows(&self.features, &baseline, DEFAULT_BINS)
                })
            }
        };
        if let Some(reference) = next {
            *stage = Stage::Watching {
                window: Window::new(&reference.features, self.settings.window),
                reference,
                from_file: false,
            };
        }
    }

    /// What `/model/info.drift` shows and the metrics export.
    pub fn report(&self) -> DriftInfo {
        let epoch_at = self.started.elapsed();
        let stage = self.lock();
        let mut info = DriftInfo {
            origin: String::new(),
            reference_error: self.reference_error.clone(),
            baseline_rows: None,
            baseline_collected: 0,
            window_seconds: self.settings.window.as_secs(),
            rows: 0,
            features: Vec::new(),
        };
        match &*stage {
            Stage::Collecting { values, needed } => {
                info.origin = "collecting".into();
                info.baseline_rows = Some(*needed as u64);
                info.baseline_collected = (values.len() / self.features.len().max(1)) as u64;
                info.features = self
                    .features
                    .iter()
                    .map(|name| FeatureDrift {
                        name: name.clone(),
                        psi: None,
                        missing_ratio: None,
                    })
                    .collect();
            }
            Stage::Watching {
                reference,
                from_file,
                window,
            } => {
                info.origin = if *from_file { "reference" } else { "traffic" }.into();
                let totals = window.totals(window.epoch(epoch_at));
                info.rows = totals.rows;
                info.features = reference
                    .features
                    .iter()
                    .enumerate()
                    .map(|(f, r)| {
                        let (counts, missing) = totals.feature(f);
                        FeatureDrift {
                            name: r.name.clone(),
                            psi: psi(&r.shares, counts),
                            missing_ratio: (totals.rows > 0)
                                .then(|| missing as f64 / totals.rows as f64),
                        }
                    })
                    .collect();
            }
        }
        info
    }
}

#[cfg(test)]
mod tests;
