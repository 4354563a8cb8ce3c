//! The status step through a canary: baking, judged, failed, passed, superseded — and the
//! history it leaves.

use api::forecast_model::{AnalysisFigures, PodCounters, RolloutRecord, RolloutResult};
use api::reasons;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

use super::tests::{Case, found, has, pod, reasons_of};
use super::*;
use crate::reconcile::act::rollout::Revert;
use crate::reconcile::canary::Canary;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn canary() -> Canary {
    Canary::read(&serde_json::from_str(r#"{"bake": "10s", "maxBake": "5m"}"#).unwrap()).unwrap()
}

fn rollout_to_2() -> Plan {
    Plan::Rollout {
        target: "2".into(),
        from: Some("1".into()),
        pods: vec!["a".into(), "b".into(), "c".into()],
    }
}

/// Pod a was switched to 2 as the canary at `at(100)`.
fn canary_started() -> Case {
    Case {
        answer: found("2"),
        plan: rollout_to_2(),
        outcome: RolloutOutcome::CanaryStarted {
            target: "2".into(),
            from: "1".into(),
            canary: vec!["a".into()],
            reloaded: vec!["a".into()],
            window_start: vec![PodCounters {
                pod: "b".into(),
                version: "1".into(),
                requests: 40,
                ..PodCounters::default()
            }],
        },
        pods: vec![pod("a", Some("2"), true), pod("b", Some("1"), true)],
        canary: Some(canary()),
        ..Case::steady()
    }
}

fn figures(shift: f64) -> AnalysisFigures {
    AnalysisFigures {
        requests: 250,
        baseline_requests: 300,
        error_rate: 0.0,
        latency_ratio: Some(1.1),
        canary_p99_ms: Some(2.2),
        baseline_p99_ms: Some(2.0),
        prediction_shift: Some(shift),
    }
}

#[test]
fn a_started_canary_bakes_in_the_status_and_is_looked_at_when_the_bake_ends() {
    let r = canary_started().report();
    let progress = r.status.rollout.clone().unwrap();
    assert_eq!(progress.phase, RolloutPhase::Baking);
    assert_eq!(
        (progress.version.as_deref(), progress.from.as_deref()),
        (Some("2"), Some("1"))
    );
    assert_eq!(progress.canary_pods, vec!["a"]);
    assert_eq!(progress.bake_started_at, Some(MicroTime(at(100))));
    assert_eq!(progress.window_start.len(), 1);
    assert_eq!(
        r.status.served_version.as_deref(),
        Some("1"),
        "the baseline stays served"
    );
    has(&r, "Ready", "True", reasons::SERVING);
    has(&r, "Progressing", "True", reasons::CANARY_BAKING);
    has(&r, "Degraded", "False", reasons::AS_EXPECTED);
    // Ready (the baseline serves), but kstatus must not call the release done mid-bake.
    has(&r, "Reconciling", "True", reasons::CANARY_BAKING);
    has(&r, "Stalled", "False", reasons::AS_EXPECTED);
    assert_eq!(reasons_of(&r), vec![reasons::POD_RELOADED]);
    assert_eq!(
        r.requeue_after,
        Some(Duration::from_secs(10)),
        "the bake, not the poll interval"
    );
    assert!(r.status.history.is_empty());

    // Next look: the bake goes on; its start is kept, the figures so far shown.
    let baking = Case {
        previous: r.status.clone(),
        outcome: RolloutOutcome::Baking {
            target: "2".into(),
            from: "1".into(),
            figures: figures(0.01),
            wait: Duration::from_secs(2),
        },
        now: at(161),
        ..canary_started()
    }
    .report();
    let progress = baking.status.rollout.clone().unwrap();
    assert_eq!(progress.bake_started_at, Some(MicroTime(at(100))));
    assert_eq!(progress.analysis, Some(figures(0.01)));
    assert_eq!(baking.requeue_after, Some(Duration::from_secs(2)));
}

#[test]
fn a_failed_verdict_marks_the_version_failed_and_stays_degraded_while_the_alias_holds() {
    let started = canary_started().report().status;
    let message = "version 2 failed its canary analysis: prediction shift 2.0000 > 0.25; ...";
    let r = Case {
        previous: started,
        outcome: RolloutOutcome::AnalysisFailed {
            target: "2".into(),
            from: "1".into(),
            reason: reasons::ANALYSIS_FAILED,
            message: message.into(),
            figures: figures(2.0),
            revert: Revert::Done {
                reverted: vec!["a".into()],
                failures: vec![],
            },
        },
        pods: vec![pod("a", Some("1"), true), pod("b", Some("1"), true)],
        now: at(170),
        ..canary_started()
    }
    .report();
    has(&r, "Degraded", "True", reasons::ANALYSIS_FAILED);
    assert!(r.status.failed_versions.contains(&"2".to_string()));
    assert_eq!(
        reasons_of(&r),
        vec![reasons::ANALYSIS_FAILED, reasons::ROLLED_BACK]
    );
    assert_eq!(r.notes[0].note, message);
    assert_eq!(
        r.status.rollout.as_ref().map(|p| p.phase),
        Some(RolloutPhase::Idle)
    );
    let record = &r.status.history[0];
    assert_eq!(
        (record.from.as_deref(), record.to.as_str()),
        (Some("1"), "2")
    );
    assert_eq!(
        (record.result, record.reason.as_str()),
        (RolloutResult::Failed, reasons::ANALYSIS_FAILED)
    );
    assert_eq!(
        record.started_at,
        Some(Time(at(100))),
        "from the canary's start"
    );
    assert_eq!(record.finished_at, Time(at(170)));

    // The alias still points at 2: it stays failed and Degraded says why.
    let held = Case {
        previous: r.status.clone(),
        failed: vec!["2".into()],
        plan: Plan::Steady {
            version: "1".into(),
        },
        outcome: RolloutOutcome::Nothing,
        pods: vec![pod("a", Some("1"), true), pod("b", Some("1"), true)],
        now: at(200),
        ..canary_started()
    }
    .report();
    has(&held, "Degraded", "True", reasons::ANALYSIS_FAILED);
    assert_eq!(held.status.history, r.status.history, "told once");
}

#[test]
fn a_passed_canary_ends_in_a_succeeded_record_and_history_keeps_ten() {
    let started = canary_started().report().status;
    let r = Case {
        previous: started,
        outcome: RolloutOutcome::Succeeded {
            target: "2".into(),
            from: Some("1".into()),
            reloaded: vec!["b".into()],
            took: Duration::from_secs(1),
            verdict: Some("requests 250 (min 200)".into()),
        },
        pods: vec![pod("a", Some("2"), true), pod("b", Some("2"), true)],
        now: at(170),
        ..canary_started()
    }
    .report();
    let record = &r.status.history[0];
    assert_eq!(
        (record.result, record.reason.as_str()),
        (RolloutResult::Succeeded, reasons::ROLLOUT_SUCCEEDED)
    );
    assert!(
        record.message.contains("canary passed (requests 250"),
        "{}",
        record.message
    );
    assert_eq!(record.started_at, Some(Time(at(100))));

    let old = |i: i64| RolloutRecord {
        from: Some(i.to_string()),
        to: (i + 1).to_string(),
        started_at: None,
        finished_at: Time(at(i)),
        result: RolloutResult::Succeeded,
        reason: reasons::ROLLOUT_SUCCEEDED.into(),
        message: String::new(),
    };
    let earlier: Vec<RolloutRecord> = (0..10).map(old).collect();
    let history = progress::history(&earlier, &r.status.history[..1]);
    assert_eq!(history.len(), 10);
    assert_eq!(history[0], r.status.history[0]);
    assert_eq!(history[9], earlier[8]);
}

#[test]
fn a_bake_the_registry_moved_away_from_is_recorded_as_superseded() {
    let started = canary_started().report().status;
    let r = Case {
        previous: started,
        answer: found("3"),
        plan: Plan::Rollout {
            target: "3".into(),
            from: Some("1".into()),
            pods: vec!["a".into()],
        },
        outcome: RolloutOutcome::CanaryStarted {
            target: "3".into(),
            from: "1".into(),
            canary: vec!["a".into()],
            reloaded: vec!["a".into()],
            window_start: vec![],
        },
        now: at(130),
        ..canary_started()
    }
    .report();
    let record = &r.status.history[0];
    assert_eq!(
        (record.to.as_str(), record.result, record.reason.as_str()),
        ("2", RolloutResult::Aborted, reasons::SUPERSEDED)
    );
    let progress = r.status.rollout.unwrap();
    assert_eq!(
        (progress.version.as_deref(), progress.bake_started_at),
        (Some("3"), Some(MicroTime(at(130))))
    );
}
