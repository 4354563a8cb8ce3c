//! The status step after a failed rollout: a version proved bad, a pod that cannot come
//! back, a transient fault.

use api::reasons;

use super::tests::{Case, found, has, reasons_of};
use super::*;
use crate::predictor_client::{Call, PredictorError};
use crate::reconcile::act::rollout::{PodFailure, VerifyError};

fn failure() -> PodFailure {
    PodFailure::MayHaveSwitched {
        pod: "a".into(),
        error: VerifyError::Smoke(PredictorError::NotFinite(f64::NAN)),
    }
}

#[test]
fn a_failed_rollout_is_degraded_and_its_version_is_not_retried() {
    let r = Case {
        answer: found("2"),
        outcome: RolloutOutcome::Failed {
            target: "2".into(),
            from: Some("1".into()),
            reloaded: vec![],
            failure: failure(),
            revert: Revert::Done {
                reverted: vec!["a".into()],
                failures: vec![],
            },
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
    assert!(r.notes[0].note.contains("pod a") && r.notes[0].note.contains("not finite"));
    assert_eq!(r.notes[1].note, "reverted 1 pods to version 1");
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
