//! Reproducible archive-ingest history: generated from a seed, or read from a CSV file
//! with the columns `date,gigabytes`.

use std::path::Path;

use chrono::NaiveDate;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::ModelError;
use crate::features::DailyVolume;

/// The default seed of the shipped training data.
pub const DEFAULT_SEED: u64 = 42;

/// A synthetic history of `days` days starting on `start`: a growing base load, a weekly
/// cycle (weekends are quiet), month-end batch spikes, a yearly season and noise. The same
/// seed always gives the same history.
pub fn synthetic_history(seed: u64, days: usize, start: NaiveDate) -> Vec<DailyVolume> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(days);
    let mut date = start;
    for t in 0..days {
        let [dow, _, _, weekend, month_end] = crate::features::calendar_features(date);
        let trend = 800.0 + 0.4 * t as f64;
        let weekly = if weekend == 1.0 {
            -0.45 * trend
        } else {
            25.0 * (dow - 2.0).abs()
        };
        let spike = month_end * 350.0;
        let season = 120.0 * (2.0 * std::f64::consts::PI * t as f64 / 365.25).sin();
        let noise = 40.0 * standard_normal(&mut rng);
        let gigabytes = (trend + weekly + spike + season + noise).max(0.0);
        out.push(DailyVolume { date, gigabytes });
        date = date.succ_opt().unwrap_or(date);
    }
    out
}

fn standard_normal(rng: &mut impl Rng) -> f64 {
    // Box-Muller; `1 - u` keeps the logarithm finite.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Reads `date,gigabytes` rows (a header line is allowed), oldest first.
pub fn read_csv(path: &Path) -> Result<Vec<DailyVolume>, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (n == 0 && line.starts_with("date")) {
            continue;
        }
        let (date, value) = line.split_once(',').ok_or_else(|| {
            ModelError::format(path, format!("line {}: expected `date,gigabytes`", n + 1))
        })?;
        let date = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
            .map_err(|e| ModelError::format(path, format!("line {}: date {date:?}: {e}", n + 1)))?;
        let gigabytes: f64 = value.trim().parse().map_err(|_| {
            ModelError::format(path, format!("line {}: {value:?} is not a number", n + 1))
        })?;
        if !gigabytes.is_finite() {
            return Err(ModelError::format(
                path,
                format!("line {}: value is not finite", n + 1),
            ));
        }
        out.push(DailyVolume { date, gigabytes });
    }
    out.sort_by_key(|d| d.date);
    Ok(out)
}

/// Writes the history as `date,gigabytes` CSV.
pub fn write_csv(path: &Path, history: &[DailyVolume]) -> Result<(), ModelError> {
    let mut text = String::from("date,gigabytes\n");
    for d in history {
        text.push_str(&format!("{},{:.3}\n", d.date, d.gigabytes));
    }
    std::fs::write(path, text).map_err(|e| ModelError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_history() {
        let start = NaiveDate::from_ymd_opt(2022, 1, 1).unwrap();
        let a = synthetic_history(7, 100, start);
        let b = synthetic_history(7, 100, start);
        let c = synthetic_history(8, 100, start);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(
            a.iter()
                .all(|d| d.gigabytes.is_finite() && d.gigabytes >= 0.0)
        );
    }

    #[test]
    fn csv_round_trips_and_bad_rows_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.csv");
        let start = NaiveDate::from_ymd_opt(2022, 1, 1).unwrap();
        let history = synthetic_history(1, 20, start);
        write_csv(&path, &history).unwrap();
        let back = read_csv(&path).unwrap();
        assert_eq!(back.len(), 20);
        assert!((back[3].gigabytes - history[3].gigabytes).abs() < 1e-3);

        std::fs::write(&path, "date,gigabytes\n2022-01-01,12\n2022-01-02,lots\n").unwrap();
        let err = read_csv(&path).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
    }
}
