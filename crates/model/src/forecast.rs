//! Multi-day forecasts of archive ingest: each day's features computed from the history
//! ([`crate::features`]), each day's forecast fed back as the next days' lags, and for an
//! averaging forest a band from its individual trees.
//!
//! The band is per step: day *k*'s p10 and p90 are the 10th and 90th percentiles of the
//! trees' predictions for day *k*'s feature row, whose lags are the point forecasts of the
//! days before. It shows how much the trees disagree about each day given the forecast
//! path; it does not accumulate the uncertainty of the earlier days' forecasts.

use chrono::NaiveDate;

use crate::ensemble::TreeEnsemble;
use crate::features::{DailyVolume, FEATURE_NAMES, HISTORY_DAYS, features_at};

/// The most days one forecast may ask for.
pub const MAX_HORIZON_DAYS: usize = 366;
/// The most days of history one forecast may send (only the last [`HISTORY_DAYS`] are
/// used; the rest are checked for gaps and order).
pub const MAX_HISTORY_DAYS: usize = 3660;
/// The band's percentiles.
pub const BAND_PERCENTILES: (f64, f64) = (10.0, 90.0);

/// Why a forecast cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    /// The model does not take the archive-forecast features.
    #[error("{0}")]
    Unavailable(String),
    /// The history is unusable (too short, a gap, out of order, a bad volume).
    #[error("{0}")]
    History(String),
    #[error("horizon {0} is out of range: ask for 1 to {MAX_HORIZON_DAYS} days")]
    Horizon(usize),
    #[error("the model forecast a non-finite value for {0}; no forecast is answered")]
    NotFinite(NaiveDate),
}

/// Where each archive-forecast feature sits in the model's input row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureLayout {
    /// `positions[k]` is the model column of `FEATURE_NAMES[k]`.
    positions: [usize; FEATURE_NAMES.len()],
}

impl FeatureLayout {
    /// The layout of a model taking `feature_names`: exactly the archive-forecast features,
    /// in any order.
    pub fn of(feature_names: &[String]) -> Result<Self, ForecastError> {
        if feature_names.is_empty() {
            return Err(ForecastError::Unavailable(
                "the model does not name its features, so they cannot be recognised as the \
                 archive-forecast features"
                    .into(),
            ));
        }
        let unknown: Vec<&str> = feature_names
            .iter()
            .map(String::as_str)
            .filter(|n| !FEATURE_NAMES.contains(n))
            .collect();
        let missing: Vec<&str> = FEATURE_NAMES
            .iter()
            .copied()
            .filter(|f| !feature_names.iter().any(|n| n == f))
            .collect();
        if !unknown.is_empty() || !missing.is_empty() || feature_names.len() != FEATURE_NAMES.len()
        {
            let mut why =
                String::from("the model's features are not the archive-forecast features (");
            why.push_str(&FEATURE_NAMES.join(", "));
            why.push(')');
            if !missing.is_empty() {
                why.push_str(&format!("; it lacks {}", missing.join(", ")));
            }
            if !unknown.is_empty() {
                let shown: Vec<&str> = unknown.iter().copied().take(10).collect();
                why.push_str(&format!("; it also takes {}", shown.join(", ")));
                if unknown.len() > shown.len() {
                    why.push_str(&format!(" and {} more", unknown.len() - shown.len()));
                }
            }
            if unknown.is_empty() && missing.is_empty() {
                why.push_str("; a feature is named twice");
            }
            return Err(ForecastError::Unavailable(why));
        }
        let mut positions = [0; FEATURE_NAMES.len()];
        for (k, name) in FEATURE_NAMES.iter().enumerate() {
            // Present: checked above.
            positions[k] = feature_names.iter().position(|n| n == name).unwrap_or(k);
        }
        Ok(FeatureLayout { positions })
    }

    /// The model's input row for the archive-forecast features `features`.
    fn row(&self, features: &[f64; FEATURE_NAMES.len()]) -> [f64; FEATURE_NAMES.len()] {
        let mut row = [0.0; FEATURE_NAMES.len()];
        for (k, &value) in features.iter().enumerate() {
            row[self.positions[k]] = value;
        }
        row
    }
}

/// One forecast day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastDay {
    pub date: NaiveDate,
    pub gigabytes: f64,
    /// The trees' p10 and p90 for this day (averaging forests only).
    pub band: Option<(f64, f64)>,
}

/// Checks a history: at least [`HISTORY_DAYS`] days, at most [`MAX_HISTORY_DAYS`],
/// consecutive dates in order without repeats, each volume a finite number ≥ 0.
pub fn check_history(history: &[DailyVolume]) -> Result<(), ForecastError> {
    if history.len() < HISTORY_DAYS {
        return Err(ForecastError::History(format!(
            "the history has {} days; a forecast needs at least {HISTORY_DAYS} (the lags and \
             the 7-day mean)",
            history.len()
        )));
    }
    if history.len() > MAX_HISTORY_DAYS {
        return Err(ForecastError::History(format!(
            "the history has {} days; at most {MAX_HISTORY_DAYS} are accepted (only the last \
             {HISTORY_DAYS} are used)",
            history.len()
        )));
    }
    for (i, day) in history.iter().enumerate() {
        if !day.gigabytes.is_finite() || day.gigabytes < 0.0 {
            return Err(ForecastError::History(format!(
                "history day {i} ({}): gigabytes must be a finite number >= 0, not {}",
                day.date, day.gigabytes
            )));
        }
    }
    // Order first: a swapped pair would otherwise read as a gap.
    for (i, pair) in history.windows(2).enumerate() {
        let (previous, day) = (pair[0].date, pair[1].date);
        if day == previous {
            return Err(ForecastError::History(format!(
                "history day {}: {day} appears twice",
                i + 1
            )));
        }
        if day < previous {
            return Err(ForecastError::History(format!(
                "history day {}: {day} comes after {previous}; send the days in date order",
                i + 1
            )));
        }
    }
    for pair in history.windows(2) {
        let (previous, day) = (pair[0].date, pair[1].date);
        if previous.succ_opt() != Some(day) {
            let missing = (day - previous).num_days() - 1;
            return Err(ForecastError::History(format!(
                "the history has a gap: {missing} day(s) missing between {previous} and {day}"
            )));
        }
    }
    Ok(())
}

/// Forecasts the `horizon` days after the history's last day with `ensemble`, whose inputs
/// are laid out as `layout` says.
pub fn forecast(
    ensemble: &TreeEnsemble,
    layout: &FeatureLayout,
    history: &[DailyVolume],
    horizon: usize,
) -> Result<Vec<ForecastDay>, ForecastError> {
    if horizon == 0 || horizon > MAX_HORIZON_DAYS {
        return Err(ForecastError::Horizon(horizon));
    }
    check_history(history)?;
    if ensemble.n_features() != FEATURE_NAMES.len() {
        return Err(ForecastError::Unavailable(format!(
            "the model takes {} inputs, not the {} archive-forecast features",
            ensemble.n_features(),
            FEATURE_NAMES.len()
        )));
    }
    // The last week of history, then each forecast as it is made.
    let mut days: Vec<DailyVolume> = history[history.len() - HISTORY_DAYS..].to_vec();
    let mut out = Vec::with_capacity(horizon);
    let mut last = days[days.len() - 1].date;
    for _ in 0..horizon {
        let date = last
            .succ_opt()
            .ok_or_else(|| ForecastError::History(format!("no calendar day follows {last}")))?;
        days.push(DailyVolume {
            date,
            gigabytes: 0.0,
        });
        let at = days.len() - 1;
        let features = features_at(&days, at)
            .ok_or_else(|| ForecastError::History("too little history".into()))?;
        let row = layout.row(&features);
        let gigabytes = ensemble.predict_row(&row);
        if !gigabytes.is_finite() {
            return Err(ForecastError::NotFinite(date));
        }
        let band = ensemble
            .tree_predictions(&row)
            .map(|mut trees| {
                trees.sort_by(f64::total_cmp);
                (
                    percentile(&trees, BAND_PERCENTILES.0),
                    percentile(&trees, BAND_PERCENTILES.1),
                )
            })
            .filter(|(low, high)| low.is_finite() && high.is_finite());
        days[at].gigabytes = gigabytes;
        out.push(ForecastDay {
            date,
            gigabytes,
            band,
        });
        last = date;
    }
    Ok(out)
}

/// The `p`th percentile of sorted values, interpolated linearly between the two nearest
/// ranks (numpy's default `linear` method).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let rank = p / 100.0 * (n - 1) as f64;
            let below = (rank.floor() as usize).min(n - 1);
            let above = (below + 1).min(n - 1);
            let t = rank - below as f64;
            sorted[below] + (sorted[above] - sorted[below]) * t
        }
    }
}

#[cfg(test)]
#[path = "forecast_tests.rs"]
mod tests;
