use super::*;

fn counters(
    pod: &str,
    version: &str,
    requests: u64,
    errors: u64,
    mean: f64,
    p: &[(f64, u64)],
) -> PodCounters {
    PodCounters {
        pod: pod.into(),
        version: version.into(),
        requests,
        errors,
        predictions: requests,
        prediction_sum: mean * requests as f64,
        latency: p
            .iter()
            .map(|(le, count)| LatencyBucket {
                le: *le,
                count: *count,
            })
            .collect(),
    }
}

#[test]
fn histograms_merge_bound_by_bound_in_order_and_counts_saturate() {
    let b = |le: f64, count: u64| LatencyBucket { le, count };
    let mut into = vec![b(0.001, 1), b(0.004, 4)];
    // Out of order, one bound shared, one new in the middle, one huge count.
    add_buckets(&mut into, &[b(0.004, u64::MAX), b(0.002, 2), b(0.001, 10)]);
    assert_eq!(into, vec![b(0.001, 11), b(0.002, 2), b(0.004, u64::MAX)]);
    let mut empty = Vec::new();
    add_buckets(&mut empty, &[b(1.0, 1)]);
    assert_eq!(empty, vec![b(1.0, 1)]);
}

#[test]
fn totals_of_absurd_pods_saturate_instead_of_wrapping() {
    let huge = counters(
        "a",
        "2",
        u64::MAX - 1,
        u64::MAX - 1,
        1.0,
        &[(0.001, u64::MAX)],
    );
    let (canary, _) = window(
        &[],
        &[
            huge.clone(),
            PodCounters {
                pod: "b".into(),
                ..huge
            },
        ],
        &["a".into(), "b".into()],
    );
    assert_eq!((canary.requests, canary.errors), (u64::MAX, u64::MAX));
    assert_eq!(canary.latency[0].count, u64::MAX);
}

#[test]
fn a_window_is_now_minus_its_start_unless_the_pod_restarted() {
    let start = PodCounters {
        pod: "a".into(),
        version: "2".into(),
        requests: 10,
        errors: 1,
        predictions: 20,
        prediction_sum: 50.0,
        latency: vec![LatencyBucket {
            le: 0.001,
            count: 5,
        }],
    };
    let now = PodCounters {
        requests: 15,
        errors: 3,
        predictions: 30,
        prediction_sum: 80.0,
        latency: vec![LatencyBucket {
            le: 0.001,
            count: 9,
        }],
        ..start.clone()
    };
    let d = delta(Some(&start), &now);
    assert_eq!(
        (d.requests, d.errors, d.predictions, d.prediction_sum),
        (5, 2, 10, 30.0)
    );
    assert_eq!(
        d.latency,
        vec![LatencyBucket {
            le: 0.001,
            count: 4
        }]
    );
    // Fewer predictions than at the start (requests alone still grew): a restart, so
    // everything now is the window.
    let restarted = PodCounters {
        predictions: 3,
        ..now.clone()
    };
    assert_eq!(delta(Some(&start), &restarted), restarted);
    assert_eq!(delta(None, &now), now);
}

#[test]
fn totals_add_every_pod_and_no_predictions_have_no_mean() {
    assert_eq!(Totals::default().mean_prediction(), None);
    let (canary, baseline) = window(
        &[],
        &[
            counters("a", "2", 10, 0, 2.0, &[]),
            counters("b", "2", 30, 0, 4.0, &[]),
            counters("c", "1", 5, 0, -1.0, &[]),
        ],
        &["a".into(), "b".into()],
    );
    assert_eq!((canary.predictions, canary.prediction_sum), (40, 140.0));
    assert_eq!(canary.mean_prediction(), Some(3.5));
    assert_eq!(baseline.mean_prediction(), Some(-1.0));
    // A pod's start counts only for the same pod and version: pod "a" started the
    // window on version 1, and another pod on version 2.
    let (canary, _) = window(
        &[
            counters("a", "1", 8, 0, 1.0, &[]),
            counters("b", "2", 9, 0, 1.0, &[]),
        ],
        &[counters("a", "2", 10, 0, 2.0, &[])],
        &["a".into()],
    );
    assert_eq!(canary.requests, 10);
}

fn settings() -> CanarySettings {
    CanarySettings {
        bake: Duration::from_secs(60),
        max_bake: Duration::from_secs(300),
        min_requests: 100,
        limits: AnalysisSpec::default(),
    }
}

#[test]
fn the_window_subtracts_the_start_and_survives_a_restarted_pod() {
    let start = vec![
        counters("a", "2", 50, 0, 10.0, &[(0.01, 50)]),
        counters("b", "1", 1000, 0, 10.0, &[(0.01, 1000)]),
        counters("c", "1", 900, 0, 10.0, &[(0.01, 900)]),
    ];
    let now = vec![
        counters("a", "2", 250, 1, 10.0, &[(0.01, 250)]),
        counters("b", "1", 1200, 0, 10.0, &[(0.01, 1200)]),
        // Restarted: its counters went down; everything it has is in the window.
        counters("c", "1", 30, 0, 10.0, &[(0.01, 30)]),
    ];
    let (canary, baseline) = window(&start, &now, &["a".into()]);
    assert_eq!((canary.requests, canary.errors), (200, 1));
    assert_eq!(baseline.requests, 230);
    assert_eq!(
        baseline.latency,
        vec![LatencyBucket {
            le: 0.01,
            count: 230
        }]
    );
}

#[test]
fn p99_is_interpolated_within_its_bucket() {
    let b = |p: &[(f64, u64)]| -> Vec<LatencyBucket> {
        p.iter()
            .map(|(le, count)| LatencyBucket {
                le: *le,
                count: *count,
            })
            .collect()
    };
    // 100 observations: 98 under 1 ms, 2 between 1 and 2 ms → p99 at 1.5 ms.
    let q = quantile(0.99, &b(&[(0.001, 98), (0.002, 100)]), 100).unwrap();
    assert!((q - 0.0015).abs() < 1e-12, "{q}");
    // Beyond the last finite bound: that bound.
    assert_eq!(quantile(0.99, &b(&[(0.001, 50)]), 100), Some(0.001));
    assert_eq!(quantile(0.99, &b(&[(0.001, 0)]), 0), None);
}

#[test]
fn a_shifted_canary_fails_naming_the_figure_and_a_good_one_passes() {
    let s = settings();
    let baseline = window(
        &[],
        &[counters("b", "1", 300, 0, 10.0, &[(0.01, 300)])],
        &[],
    )
    .1;
    let shifted = window(
        &[],
        &[counters("a", "2", 200, 0, 30.0, &[(0.01, 200)])],
        &["a".into()],
    )
    .0;
    let f = figures(&shifted, &baseline);
    assert_eq!(f.prediction_shift, Some(2.0));
    assert_eq!(f.latency_ratio, Some(1.0));
    match verdict(&f, &s, Duration::from_secs(61)) {
        Verdict::Fail(breaches) => assert_eq!(breaches, vec!["prediction shift 2.0000 > 0.25"]),
        v => panic!("{v:?}"),
    }
    assert!(describe(&f, &s).contains("prediction shift 2.0000 (max 0.25)"));
    let good = window(
        &[],
        &[counters("a", "2", 200, 1, 11.0, &[(0.01, 200)])],
        &["a".into()],
    )
    .0;
    assert_eq!(
        verdict(&figures(&good, &baseline), &s, Duration::from_secs(61)),
        Verdict::Pass
    );
    let failing = window(
        &[],
        &[counters("a", "2", 200, 10, 10.0, &[(0.01, 200)])],
        &["a".into()],
    )
    .0;
    assert!(
        matches!(verdict(&figures(&failing, &baseline), &s, Duration::from_secs(61)), Verdict::Fail(b) if b[0].starts_with("error rate 0.0500"))
    );
    let slow = window(
        &[],
        &[counters("a", "2", 200, 0, 10.0, &[(0.01, 0), (0.1, 200)])],
        &["a".into()],
    )
    .0;
    assert!(
        matches!(verdict(&figures(&slow, &baseline), &s, Duration::from_secs(61)), Verdict::Fail(b) if b[0].starts_with("latency ratio"))
    );
}

/// Every figure exactly at its limit, with enough traffic.
fn at_the_limits() -> AnalysisFigures {
    let l = AnalysisSpec::default();
    AnalysisFigures {
        requests: 100,
        baseline_requests: 1,
        error_rate: l.max_error_rate,
        latency_ratio: Some(l.max_latency_ratio),
        canary_p99_ms: Some(4.0),
        baseline_p99_ms: Some(2.0),
        prediction_shift: Some(l.max_prediction_shift),
    }
}

#[test]
fn limits_are_maxima_and_the_bake_is_judged_the_moment_it_ends() {
    let s = settings();
    assert_eq!(verdict(&at_the_limits(), &s, s.bake), Verdict::Pass);
    let over = |f: fn(&mut AnalysisFigures)| {
        let mut figures = at_the_limits();
        f(&mut figures);
        verdict(&figures, &s, s.bake)
    };
    assert!(matches!(over(|f| f.error_rate += 1e-9), Verdict::Fail(_)));
    assert!(matches!(
        over(|f| f.latency_ratio = Some(2.001)),
        Verdict::Fail(_)
    ));
    assert!(matches!(
        over(|f| f.prediction_shift = Some(0.2501)),
        Verdict::Fail(_)
    ));
    // No baseline traffic: nothing to compare with, whatever the canary did.
    assert!(matches!(
        over(|f| f.baseline_requests = 0),
        Verdict::Wait(_)
    ));
}

#[test]
fn figures_read_milliseconds_and_do_not_divide_by_a_zero_baseline() {
    let canary = window(
        &[],
        &[counters("a", "2", 100, 0, 2.0, &[(0.01, 100)])],
        &["a".into()],
    )
    .0;
    let baseline = window(&[], &[counters("b", "1", 100, 0, 0.0, &[(0.02, 100)])], &[]).1;
    let f = figures(&canary, &baseline);
    assert_eq!(
        (f.canary_p99_ms, f.baseline_p99_ms),
        (Some(9.9), Some(19.8))
    );
    // A baseline mean of 0: the absolute difference, not a division by zero.
    assert_eq!(f.prediction_shift, Some(2.0));
    // A baseline p99 of 0: no ratio rather than an infinite one.
    let instant = window(&[], &[counters("b", "1", 100, 0, 1.0, &[(0.0, 100)])], &[]).1;
    assert_eq!(figures(&canary, &instant).latency_ratio, None);
}

#[test]
fn the_bake_waits_for_its_time_then_for_traffic_then_gives_up() {
    let s = settings();
    let baseline = window(&[], &[counters("b", "1", 300, 0, 10.0, &[])], &[]).1;
    let quiet = window(&[], &[counters("a", "2", 20, 0, 10.0, &[])], &["a".into()]).0;
    let f = figures(&quiet, &baseline);
    assert_eq!(
        verdict(&f, &s, Duration::from_secs(10)),
        Verdict::Wait(Duration::from_secs(50))
    );
    assert_eq!(
        verdict(&f, &s, Duration::from_secs(100)),
        Verdict::Wait(RECHECK)
    );
    assert_eq!(
        verdict(&f, &s, Duration::from_secs(299)),
        Verdict::Wait(Duration::from_secs(1))
    );
    assert!(
        matches!(verdict(&f, &s, Duration::from_secs(300)), Verdict::Inconclusive(m) if m.contains("answered 20 predictions (needs 100)"))
    );
    // Enough canary traffic but none on the baseline: nothing to compare with.
    let busy = window(&[], &[counters("a", "2", 500, 0, 10.0, &[])], &["a".into()]).0;
    assert_eq!(
        verdict(
            &figures(&busy, &Totals::default()),
            &s,
            Duration::from_secs(100)
        ),
        Verdict::Wait(RECHECK)
    );
}
