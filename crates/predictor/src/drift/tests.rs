use model::drift_reference::{DriftReference, FeatureReference};

use super::window::{SLOTS, Window};
use super::*;

fn names() -> Vec<String> {
    vec!["a".into(), "b".into()]
}

/// Rows with `a` spread evenly over [offset, offset + 1) and `b` missing every `gap`th row.
fn rows(n: usize, offset: f64, gap: usize) -> Matrix {
    let mut values = Vec::new();
    for i in 0..n {
        values.push(offset + (i % 100) as f64 / 100.0);
        values.push(if gap > 0 && i % gap == 0 {
            f64::NAN
        } else {
            1.0
        });
    }
    Matrix::new(values, 2)
}

fn reference() -> DriftReference {
    let training: Vec<Vec<f64>> = (0..1000)
        .map(|i| vec![(i % 100) as f64 / 100.0, 1.0])
        .collect();
    DriftReference::from_rows(&names(), &training, 10)
}

#[test]
fn psi_is_zero_for_the_same_shares_and_grows_with_the_shift() {
    assert_eq!(psi(&[0.5, 0.5], &[0, 0]), None);
    assert!(psi(&[0.5, 0.5], &[10, 10]).unwrap().abs() < 1e-12);
    // (0.9 − 0.5)·ln(0.9/0.5) + (0.1 − 0.5)·ln(0.1/0.5)
    let expected = 0.4 * (1.8f64).ln() + (-0.4) * (0.2f64).ln();
    assert!((psi(&[0.5, 0.5], &[9, 1]).unwrap() - expected).abs() < 1e-12);
    // An empty bin costs a bounded amount.
    let all_in_one = psi(&[0.5, 0.5], &[10, 0]).unwrap();
    assert!(all_in_one.is_finite() && all_in_one > 1.0, "{all_in_one}");
}

#[test]
fn live_rows_like_the_reference_stay_low_and_shifted_ones_rise() {
    let settings = DriftSettings::default();
    let drift = Drift::new(names(), Some(Ok(reference())), settings);
    drift.observe(&rows(500, 0.0, 4));
    let report = drift.report();
    assert_eq!(report.origin, "reference");
    assert_eq!(report.rows, 500);
    let a = &report.features[0];
    assert!(a.psi.unwrap() < 0.01, "{report:?}");
    assert_eq!(report.features[1].missing_ratio, Some(0.25));
    assert_eq!(a.missing_ratio, Some(0.0));

    let shifted = Drift::new(names(), Some(Ok(reference())), settings);
    shifted.observe(&rows(500, 0.5, 0));
    let report = shifted.report();
    assert!(report.features[0].psi.unwrap() > 0.25, "{report:?}");
    assert!(report.features[1].psi.unwrap() < 0.01, "{report:?}");
}

#[test]
fn without_a_reference_the_first_rows_served_become_the_baseline() {
    let settings = DriftSettings {
        window: Duration::from_secs(60),
        baseline_rows: 300,
    };
    let drift = Drift::new(names(), None, settings);
    drift.observe(&rows(200, 0.0, 0));
    let report = drift.report();
    assert_eq!(report.origin, "collecting");
    assert_eq!(
        (report.baseline_rows, report.baseline_collected),
        (Some(300), 200)
    );
    assert_eq!(report.features[0].psi, None);
    // The request that completes the baseline is not counted again in the window.
    drift.observe(&rows(200, 0.0, 0));
    let report = drift.report();
    assert_eq!((report.origin.as_str(), report.rows), ("traffic", 0));
    drift.observe(&rows(100, 0.0, 0));
    assert!(drift.report().features[0].psi.unwrap() < 0.01);
    drift.observe(&rows(1000, 5.0, 0));
    assert!(drift.report().features[0].psi.unwrap() > 0.25);
}

#[test]
fn a_refused_reference_is_reported_and_the_traffic_baseline_used() {
    let drift = Drift::new(
        names(),
        Some(Err(
            "drift_reference.json: 3 features, but the model takes 2".into(),
        )),
        DriftSettings::default(),
    );
    let report = drift.report();
    assert_eq!(report.origin, "collecting");
    assert!(report.reference_error.unwrap().contains("3 features"));
}

#[test]
fn the_baseline_is_bounded_whatever_the_setting() {
    let many: Vec<String> = (0..1000).map(|i| format!("f{i}")).collect();
    let drift = Drift::new(
        many,
        None,
        DriftSettings {
            window: Duration::from_secs(60),
            baseline_rows: usize::MAX,
        },
    );
    assert_eq!(
        drift.report().baseline_rows,
        Some((MAX_BASELINE_VALUES / 1000) as u64)
    );
}

#[test]
fn counts_older_than_the_window_leave_it() {
    let features = vec![FeatureReference {
        name: "a".into(),
        edges: vec![0.5],
        shares: vec![0.5, 0.5],
    }];
    let mut window = Window::new(&features, Duration::from_secs(12));
    assert_eq!(window.epoch(Duration::from_millis(999)), 0);
    assert_eq!(window.epoch(Duration::from_secs(1)), 1);
    let one = Matrix::new(vec![0.2], 1);
    let missing = Matrix::new(vec![f64::NAN], 1);
    window.observe(0, &one, &features);
    window.observe(3, &missing, &features);
    let totals = window.totals(SLOTS - 1);
    assert_eq!(totals.rows, 2);
    assert_eq!(totals.feature(0), (&[1, 0][..], 1));
    // One step later the first slot has left the window.
    let totals = window.totals(SLOTS);
    assert_eq!((totals.rows, totals.feature(0)), (1, (&[0, 0][..], 1)));
    // Its turn again: zeroed before counting.
    window.observe(SLOTS, &Matrix::new(vec![0.9], 1), &features);
    assert_eq!(window.totals(SLOTS).feature(0), (&[0, 1][..], 1));
}
