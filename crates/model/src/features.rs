//! The archive-forecast features.
//!
//! The model forecasts one day's archive ingest volume (gigabytes written to the archive
//! that day) from the calendar and from the volumes of the days before it:
//!
//! | # | name             | meaning                                                        |
//! |---|------------------|----------------------------------------------------------------|
//! | 0 | `day_of_week`    | 0 = Monday … 6 = Sunday                                        |
//! | 1 | `day_of_month`   | 1 … 31                                                         |
//! | 2 | `month`          | 1 … 12                                                         |
//! | 3 | `is_weekend`     | 1 on Saturday and Sunday, else 0                               |
//! | 4 | `is_month_end`   | 1 on the last two days of the month (month-end batch jobs)     |
//! | 5 | `lag_1`          | the volume of the day before, GB                               |
//! | 6 | `lag_7`          | the volume of the same weekday one week before, GB             |
//! | 7 | `rolling_mean_7` | the mean volume of the 7 days before, GB                       |

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// The feature names, in the order the model takes them.
pub const FEATURE_NAMES: [&str; 8] = [
    "day_of_week",
    "day_of_month",
    "month",
    "is_weekend",
    "is_month_end",
    "lag_1",
    "lag_7",
    "rolling_mean_7",
];

/// Days of history a row needs before the day it describes.
pub const HISTORY_DAYS: usize = 7;

/// One day of archive ingest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DailyVolume {
    pub date: NaiveDate,
    pub gigabytes: f64,
}

/// The calendar part of the features of `date`.
pub fn calendar_features(date: NaiveDate) -> [f64; 5] {
    let weekday = date.weekday().num_days_from_monday();
    let days_in_month = days_in_month(date);
    [
        f64::from(weekday),
        f64::from(date.day()),
        f64::from(date.month()),
        if weekday >= 5 { 1.0 } else { 0.0 },
        if date.day() + 1 >= days_in_month {
            1.0
        } else {
            0.0
        },
    ]
}

fn days_in_month(date: NaiveDate) -> u32 {
    let (y, m) = if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|first_next| first_next.pred_opt())
        .map(|last| last.day())
        .unwrap_or(31)
}

/// The feature row for the day at `index`, built only from days before it; `None` for the
/// first [`HISTORY_DAYS`] days.
pub fn features_at(history: &[DailyVolume], index: usize) -> Option<[f64; 8]> {
    if index < HISTORY_DAYS || index >= history.len() {
        return None;
    }
    let [dow, dom, month, weekend, month_end] = calendar_features(history[index].date);
    let week = &history[index - HISTORY_DAYS..index];
    let mean_7 = week.iter().map(|d| d.gigabytes).sum::<f64>() / HISTORY_DAYS as f64;
    Some([
        dow,
        dom,
        month,
        weekend,
        month_end,
        history[index - 1].gigabytes,
        history[index - HISTORY_DAYS].gigabytes,
        mean_7,
    ])
}

/// All feature rows and targets of a history.
pub fn feature_matrix(history: &[DailyVolume]) -> (Vec<Vec<f64>>, Vec<f64>) {
    (HISTORY_DAYS..history.len())
        .filter_map(|i| features_at(history, i).map(|row| (row.to_vec(), history[i].gigabytes)))
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_features_mark_weekends_and_month_ends() {
        // 2024-02-28 is a Wednesday; February 2024 has 29 days.
        let d = NaiveDate::from_ymd_opt(2024, 2, 28).unwrap();
        assert_eq!(calendar_features(d), [2.0, 28.0, 2.0, 0.0, 1.0]);
        let sunday = NaiveDate::from_ymd_opt(2024, 3, 3).unwrap();
        assert_eq!(calendar_features(sunday), [6.0, 3.0, 3.0, 1.0, 0.0]);
        let dec31 = NaiveDate::from_ymd_opt(2023, 12, 31).unwrap();
        assert_eq!(calendar_features(dec31)[4], 1.0);
    }

    #[test]
    fn lag_features_look_only_backwards() {
        let start = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        let history: Vec<DailyVolume> = (0..10)
            .map(|i| DailyVolume {
                date: start + chrono::Days::new(i),
                gigabytes: i as f64 * 10.0,
            })
            .collect();
        assert!(features_at(&history, 6).is_none());
        let row = features_at(&history, 8).unwrap();
        assert_eq!(row[5], 70.0);
        assert_eq!(row[6], 10.0);
        assert_eq!(
            row[7],
            (10.0 + 20.0 + 30.0 + 40.0 + 50.0 + 60.0 + 70.0) / 7.0
        );
        let (x, y) = feature_matrix(&history);
        assert_eq!((x.len(), y.len()), (3, 3));
        assert_eq!(y[0], 70.0);
    }
}
