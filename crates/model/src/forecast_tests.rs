use chrono::NaiveDate;

use super::*;
use crate::ensemble::{
    Aggregate, EnsembleSpec, InputPrecision, NodeSpec, PostTransform, SplitRule, TreeSpec,
};

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn names(order: &[&str]) -> Vec<String> {
    order.iter().map(|s| s.to_string()).collect()
}

/// `days` consecutive days from 2026-11-01, volume `100 + i`.
fn history(days: usize) -> Vec<DailyVolume> {
    (0..days)
        .map(|i| DailyVolume {
            date: date("2026-11-01") + chrono::Days::new(i as u64),
            gigabytes: 100.0 + i as f64,
        })
        .collect()
}

/// `x[feature] <= t ? low : high`.
fn stump(feature: usize, t: f64, low: f64, high: f64) -> TreeSpec {
    TreeSpec::new(vec![
        NodeSpec::Split {
            feature,
            rule: SplitRule::Leq,
            threshold: t,
            yes: 1,
            no: 2,
            missing_yes: true,
            missing_no: false,
            nan_as_zero: false,
            zero_is_missing: false,
        },
        NodeSpec::Leaf { leaf: low },
        NodeSpec::Leaf { leaf: high },
    ])
}

fn ensemble(aggregate: Aggregate, trees: Vec<TreeSpec>) -> TreeEnsemble {
    TreeEnsemble::new(&EnsembleSpec {
        n_features: 8,
        preprocess: Vec::new(),
        aggregate,
        base_value: 0.0,
        post_transform: PostTransform::None,
        input_precision: InputPrecision::F64,
        trees,
    })
    .unwrap()
}

#[test]
fn each_forecast_is_the_next_days_lag() {
    // lag_1 (column 5) <= 120 ? 150 : 50: the forecast alternates only if fed back.
    let model = ensemble(Aggregate::Sum, vec![stump(5, 120.0, 150.0, 50.0)]);
    let layout = FeatureLayout::of(&names(&FEATURE_NAMES)).unwrap();
    let days = forecast(&model, &layout, &history(10), 4).unwrap();
    let dates: Vec<String> = days.iter().map(|d| d.date.to_string()).collect();
    assert_eq!(
        dates,
        ["2026-11-11", "2026-11-12", "2026-11-13", "2026-11-14"]
    );
    let values: Vec<f64> = days.iter().map(|d| d.gigabytes).collect();
    // The last history day is 109 → 150 → 50 → 150 → 50.
    assert_eq!(values, [150.0, 50.0, 150.0, 50.0]);
    assert!(days.iter().all(|d| d.band.is_none()), "a sum has no band");
}

#[test]
fn the_rolling_mean_and_the_weekly_lag_take_forecasts_too() {
    // rolling_mean_7 (column 7) <= 100 ? 0 : 200, and lag_7 (column 6) passes through a
    // second tree: lag_7 <= 105 ? 1 : 2.
    let model = ensemble(
        Aggregate::Sum,
        vec![stump(7, 100.0, 0.0, 200.0), stump(6, 105.0, 1.0, 2.0)],
    );
    let layout = FeatureLayout::of(&names(&FEATURE_NAMES)).unwrap();
    // History 100..=106 (mean 103 > 100): day 1 = 200 + (lag_7 = 100 → 1) = 201.
    let days = forecast(&model, &layout, &history(7), 8).unwrap();
    assert_eq!(days[0].gigabytes, 201.0);
    // Day 8's lag_7 is day 1's forecast (201 > 105 → 2).
    assert_eq!(days[7].gigabytes, 202.0);
}

#[test]
fn the_model_s_own_column_order_is_followed() {
    let mut order: Vec<&str> = FEATURE_NAMES.to_vec();
    order.reverse(); // lag_1 is now column 2
    let layout = FeatureLayout::of(&names(&order)).unwrap();
    let model = ensemble(Aggregate::Sum, vec![stump(2, 120.0, 150.0, 50.0)]);
    let values: Vec<f64> = forecast(&model, &layout, &history(10), 3)
        .unwrap()
        .iter()
        .map(|d| d.gigabytes)
        .collect();
    assert_eq!(values, [150.0, 50.0, 150.0]);
}

#[test]
fn an_averaging_forest_has_a_band_of_its_trees() {
    // Five trees on lag_1: their leaves for lag_1 = 109 are 10, 20, 30, 40, 100.
    let trees = [10.0, 20.0, 30.0, 40.0, 100.0]
        .iter()
        .map(|&low| stump(5, 200.0, low, 0.0))
        .collect();
    let model = ensemble(Aggregate::Average, trees);
    let layout = FeatureLayout::of(&names(&FEATURE_NAMES)).unwrap();
    let day = forecast(&model, &layout, &history(8), 1).unwrap()[0];
    assert_eq!(day.gigabytes, 40.0);
    // numpy.percentile([10, 20, 30, 40, 100], [10, 90]) = [14, 76].
    let (low, high) = day.band.unwrap();
    assert!(
        (low - 14.0).abs() < 1e-12 && (high - 76.0).abs() < 1e-12,
        "{low} {high}"
    );
}

#[test]
fn percentiles_interpolate_like_numpy() {
    let v = [1.0, 2.0, 4.0, 8.0];
    assert_eq!(percentile(&v, 0.0), 1.0);
    assert_eq!(percentile(&v, 100.0), 8.0);
    // numpy.percentile([1, 2, 4, 8], 10) = 1.3; 90 → 6.8; 50 → 3.
    assert!((percentile(&v, 10.0) - 1.3).abs() < 1e-12);
    assert!((percentile(&v, 90.0) - 6.8).abs() < 1e-12);
    assert_eq!(percentile(&v, 50.0), 3.0);
    assert_eq!(percentile(&[5.0], 90.0), 5.0);
    assert!(percentile(&[], 50.0).is_nan());
}

#[test]
fn other_features_are_not_forecast() {
    let err = |n: &[&str]| match FeatureLayout::of(&names(n)) {
        Err(ForecastError::Unavailable(why)) => why,
        other => panic!("{n:?}: {other:?}"),
    };
    let why = err(&["temperature", "pressure"]);
    assert!(
        why.contains("lacks day_of_week") && why.contains("takes temperature"),
        "{why}"
    );
    let mut extra = FEATURE_NAMES.to_vec();
    extra.push("holiday");
    assert!(err(&extra).contains("takes holiday"));
    let mut twice = FEATURE_NAMES.to_vec();
    twice[7] = "lag_1";
    assert!(err(&twice).contains("lacks rolling_mean_7"));
    assert!(err(&[]).contains("does not name its features"));
    // The layout of a model with the features but another input count is refused too.
    let wide = TreeEnsemble::new(&EnsembleSpec {
        n_features: 9,
        preprocess: Vec::new(),
        aggregate: Aggregate::Sum,
        base_value: 0.0,
        post_transform: PostTransform::None,
        input_precision: InputPrecision::F64,
        trees: vec![stump(0, 1.0, 1.0, 2.0)],
    })
    .unwrap();
    let layout = FeatureLayout::of(&names(&FEATURE_NAMES)).unwrap();
    assert!(matches!(
        forecast(&wide, &layout, &history(7), 1),
        Err(ForecastError::Unavailable(_))
    ));
}

#[test]
fn bad_histories_and_horizons_are_named() {
    let model = ensemble(Aggregate::Sum, vec![stump(5, 1.0, 1.0, 2.0)]);
    let layout = FeatureLayout::of(&names(&FEATURE_NAMES)).unwrap();
    let history_error = |h: &[DailyVolume]| match forecast(&model, &layout, h, 1) {
        Err(ForecastError::History(why)) => why,
        other => panic!("{other:?}"),
    };
    assert!(history_error(&history(6)).contains("has 6 days; a forecast needs at least 7"));
    let mut gap = history(9);
    gap.remove(4);
    assert!(
        history_error(&gap).contains("gap: 1 day(s) missing between 2026-11-04 and 2026-11-06")
    );
    let mut twice = history(9);
    twice[5].date = twice[4].date;
    assert!(history_error(&twice).contains("2026-11-05 appears twice"));
    let mut unsorted = history(9);
    unsorted.swap(3, 4);
    assert!(history_error(&unsorted).contains("send the days in date order"));
    let mut negative = history(9);
    negative[2].gigabytes = -1.0;
    assert!(history_error(&negative).contains("history day 2 (2026-11-03)"));
    let mut nan = history(9);
    nan[8].gigabytes = f64::NAN;
    assert!(history_error(&nan).contains("finite"));
    assert!(history_error(&history(MAX_HISTORY_DAYS + 1)).contains("at most 3660"));
    assert!(check_history(&history(MAX_HISTORY_DAYS)).is_ok());
    assert_eq!(
        forecast(&model, &layout, &history(9), 0),
        Err(ForecastError::Horizon(0))
    );
    assert_eq!(
        forecast(&model, &layout, &history(9), MAX_HORIZON_DAYS + 1),
        Err(ForecastError::Horizon(MAX_HORIZON_DAYS + 1))
    );
    assert_eq!(
        forecast(&model, &layout, &history(9), MAX_HORIZON_DAYS)
            .unwrap()
            .len(),
        MAX_HORIZON_DAYS
    );
}

#[test]
fn a_non_finite_forecast_names_its_day() {
    let model = ensemble(Aggregate::Sum, vec![stump(5, 1.0, 1.0, f64::MAX)]);
    let model2 = ensemble(
        Aggregate::Sum,
        vec![stump(5, 1.0, 1.0, f64::MAX), stump(5, 1.0, 1.0, f64::MAX)],
    );
    let layout = FeatureLayout::of(&names(&FEATURE_NAMES)).unwrap();
    assert!(forecast(&model, &layout, &history(7), 1).is_ok());
    assert_eq!(
        forecast(&model2, &layout, &history(7), 1),
        Err(ForecastError::NotFinite(date("2026-11-08")))
    );
}
