//! The status step after a failed rollout: a version proved bad, a pod that cannot come
//! back, a transient fault.

use api::reasons;

use super::tests::{Case, found, has, reasons_of};
use super::*;
use crate::predictor_client::{Call, PredictorError};
use crate::reconcile::act::rollout::{PodFailure, Revert, VerifyError};

fn failure() -> PodFailure {
    PodFailure::MayHaveSwitched {
        pod: "a".into(),
        error: VerifyError::Smoke(PredictorError::NotFinite(f64::NAN)),
    }
}

/// Version 2 failed on pod a, which was reverted to 1.
fn failed_rollout_of_2() -> RolloutOutcome {
    RolloutOutcome::Failed {
        target: "2".into(),
        from: Some("1".into()),
        reloaded: vec![],
        failure: failure(),
        revert: Revert::Done {
            reverted: vec!["a".into()],
            failures: vec![],
        },
    }
}

#[test]
fn a_failed_rollout_is_degraded_and_its_version_is_not_retried() {
    let r = Case {
        answer: found("2"),
        outcome: failed_rollout_of_2(),
        ..Case::steady()
    }
    .report();
    has(&r, "Degraded", "True", reasons::ROLLOUT_FAILED);
    assert_eq!(r.status.failed_versions, vec!["2".to_string()]);
    assert_eq!(r.status.served_version.as_deref(), Some("1"));
    assert_eq!(
        reasons_of(&r),
        vec![reasons::ROLLOUT_FAILED, reasons::ROLLED_BACK]
    );
    assert!(r.notes[0].note.contains("pod a") && r.notes[0].note.contains("not finite"));
    assert_eq!(r.notes[1].note, "reverted 1 pods to version 1");
}

#[test]
fn degraded_stays_true_while_the_registry_points_at_the_failed_version() {
    let failed = Case {
        answer: found("2"),
        outcome: failed_rollout_of_2(),
        ..Case::steady()
    }
    .report();
    // The next reconcile moves nothing: the failure is still what the status says.
    let next = Case {
        previous: failed.status.clone(),
        answer: found("2"),
        failed: vec!["2".into()],
        ..Case::steady()
    }
    .report();
    has(&next, "Degraded", "True", reasons::ROLLOUT_FAILED);
    // kstatus reads it as Failed: stalled until the registry moves.
    has(&failed, "Stalled", "True", reasons::ROLLOUT_FAILED);
    has(&next, "Stalled", "True", reasons::ROLLOUT_FAILED);
    has(&next, "Reconciling", "False", reasons::ROLLOUT_FAILED);
    let message = |r: &Report| {
        r.status
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded")
            .map(|c| c.message.clone())
    };
    assert_eq!(message(&next), message(&failed));
    // Once the registry points elsewhere, it clears.
    let moved = Case {
        previous: next.status.clone(),
        answer: found("3"),
        failed: vec![],
        ..Case::steady()
    }
    .report();
    has(&moved, "Degraded", "False", reasons::AS_EXPECTED);
    has(&moved, "Stalled", "False", reasons::AS_EXPECTED);
}

#[test]
fn a_restart_that_does_not_come_up_goes_back_and_marks_the_version_failed() {
    let r = Case {
        answer: found("2"),
        served: Some("2"),
        outcome: RolloutOutcome::RestartFailed {
            target: "2".into(),
            back: "1".into(),
            stuck: vec!["a".into(), "b".into()],
            verify_timeout: std::time::Duration::from_secs(60),
        },
        ..Case::steady()
    }
    .report();
    has(&r, "Degraded", "True", reasons::ROLLOUT_FAILED);
    assert_eq!(r.status.failed_versions, vec!["2".to_string()]);
    assert_eq!(r.status.served_version.as_deref(), Some("1"));
    assert_eq!(
        reasons_of(&r),
        vec![reasons::ROLLOUT_FAILED, reasons::ROLLED_BACK]
    );
    assert!(
        r.notes[0]
            .note
            .contains("pods a, b were not Ready on version 2")
    );
}

#[test]
fn a_pod_that_cannot_be_brought_back_to_the_served_version_is_a_converge_failure() {
    let r = Case {
        answer: found("2"),
        failed: vec!["2".into()],
        outcome: RolloutOutcome::Failed {
            target: "1".into(),
            from: Some("1".into()),
            reloaded: vec![],
            failure: PodFailure::NotSwitched {
                pod: "a".into(),
                error: PredictorError::Refused {
                    call: Call::Reload,
                    status: 503,
                    message: "busy".into(),
                },
            },
            revert: Revert::Done {
                reverted: vec![],
                failures: vec![],
            },
        },
        ..Case::steady()
    }
    .report();
    has(&r, "Degraded", "True", reasons::CONVERGE_FAILED);
    assert_eq!(r.status.failed_versions, vec!["2".to_string()]);
}

#[test]
fn a_transient_fault_interrupts_a_rollout_without_marking_the_version_failed() {
    let r = Case {
        answer: found("2"),
        outcome: RolloutOutcome::Failed {
            target: "2".into(),
            from: Some("1".into()),
            reloaded: vec![],
            failure: PodFailure::NotSwitched {
                pod: "a".into(),
                error: PredictorError::Refused {
                    call: Call::Reload,
                    status: 502,
                    message: "MLflow at http://mlflow is unreachable".into(),
                },
            },
            revert: Revert::Done {
                reverted: vec![],
                failures: vec![],
            },
        },
        ..Case::steady()
    }
    .report();
    has(&r, "Degraded", "True", reasons::ROLLOUT_INTERRUPTED);
    // Transient: not stalled, and kstatus waits on Ready instead.
    has(&r, "Stalled", "False", reasons::AS_EXPECTED);
    assert!(
        r.status.failed_versions.is_empty(),
        "{:?}",
        r.status.failed_versions
    );
    assert_eq!(
        reasons_of(&r),
        vec![reasons::ROLLOUT_FAILED, reasons::ROLLED_BACK]
    );
}
