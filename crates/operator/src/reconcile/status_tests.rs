//! The status step, one test per condition reason and event it can produce.

use std::sync::Arc;
use std::time::Duration;

use api::forecast_model::{ForecastModel, Selector};
use mlflow::{MlflowError, ModelVersion};

use super::*;
use crate::reconcile::observe::registry_answer;
use crate::registry::Answer;

const POLL: Duration = Duration::from_secs(30);

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

pub(super) fn pod(name: &str, version: Option<&str>, ready: bool) -> PodObservation {
    PodObservation {
        name: name.into(),
        base_url: Some(format!("http://{name}:8080")),
        ready,
        version: version.map(Into::into),
        ..PodObservation::default()
    }
}

pub(super) fn found(version: &str) -> Answer {
    Ok(ModelVersion {
        version: version.into(),
        ..Default::default()
    })
}

/// One reconcile's inputs, changed by each test.
pub(super) struct Case {
    pub(super) previous: ForecastModelStatus,
    pub(super) answer: Answer,
    pub(super) served: Option<&'static str>,
    pub(super) failed: Vec<String>,
    pub(super) plan: Plan,
    pub(super) outcome: RolloutOutcome,
    pub(super) pods: Vec<PodObservation>,
    pub(super) canary: Option<crate::reconcile::canary::Canary>,
    pub(super) drift: Option<crate::reconcile::drift::DriftVerdict>,
    pub(super) now: Timestamp,
}

impl Case {
    /// Two pods serving version 1, which the alias still points at.
    pub(super) fn steady() -> Self {
        Case {
            previous: ForecastModelStatus::default(),
            answer: found("1"),
            served: Some("1"),
            failed: vec![],
            plan: Plan::Steady {
                version: "1".into(),
            },
            outcome: RolloutOutcome::Nothing,
            pods: vec![pod("a", Some("1"), true), pod("b", Some("1"), true)],
            canary: None,
            drift: None,
            now: at(100),
        }
    }

    pub(super) fn report(&self) -> Report {
        let spec = ValidSpec {
            poll: POLL,
            verify_timeout: Duration::from_secs(10),
            selector: Selector::Alias("champion".into()),
            canary: self.canary.clone(),
            shadow: None,
            drift: None,
        };
        let observed = Observation {
            namespace: "team".into(),
            previous: self.previous.clone(),
            registry: registry_answer(&spec.selector, &self.answer),
            served: self.served.map(Into::into),
            credentials_secret: None,
            listed: vec![],
            pods: self.pods.clone(),
            shadow: None,
        };
        report(&Inputs {
            generation: Some(3),
            replicas: 2,
            spec: &spec,
            observed: &observed,
            served: self.served,
            failed_versions: &self.failed,
            plan: &self.plan,
            outcome: &self.outcome,
            pods: &self.pods,
            shadow: None,
            drift: self.drift.as_ref(),
            now: self.now,
        })
    }
}

/// `(status, reason)` of a condition in a report.
pub(super) fn condition(report: &Report, kind: &str) -> (String, String) {
    let c = report.status.conditions.iter().find(|c| c.type_ == kind);
    c.map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

/// Asserts the status and reason of a condition.
#[track_caller]
pub(super) fn has(report: &Report, kind: &str, status: &str, reason: &str) {
    let want = (status.to_owned(), reason.to_owned());
    assert_eq!(condition(report, kind), want, "{kind}");
}

pub(super) fn reasons_of(report: &Report) -> Vec<&'static str> {
    report.notes.iter().map(|n| n.reason).collect()
}

#[test]
fn every_pod_on_the_served_version_is_ready_idle_and_not_degraded() {
    let r = Case::steady().report();
    has(&r, "Ready", "True", reasons::SERVING);
    has(&r, "Progressing", "False", reasons::IDLE);
    has(&r, "Degraded", "False", reasons::AS_EXPECTED);
    has(&r, "RegistryReachable", "True", reasons::REACHABLE);
    has(&r, "Reconciling", "False", reasons::IDLE);
    has(&r, "Stalled", "False", reasons::AS_EXPECTED);
    assert_eq!(r.status.observed_generation, Some(3));
    assert_eq!((r.status.replicas, r.status.updated_replicas), (2, 2));
    assert_eq!(r.status.selector.as_deref(), Some("alias:champion"));
    assert!(r.notes.is_empty());
    assert!(r.changed, "a first status is written");
    assert_eq!(r.requeue_after, Some(POLL));
}

#[test]
fn a_status_that_says_what_the_last_one_said_is_not_written_again() {
    let first = Case::steady().report();
    let again = Case {
        previous: first.status.clone(),
        now: at(500),
        ..Case::steady()
    }
    .report();
    assert!(!again.changed);
    assert_eq!(again.status, first.status);
}

#[test]
fn a_pod_not_ready_or_on_another_version_is_converging_and_not_ready() {
    let r = Case {
        pods: vec![pod("a", Some("1"), true), pod("b", None, false)],
        ..Case::steady()
    }
    .report();
    has(&r, "Ready", "False", reasons::PODS_NOT_READY);
    has(&r, "Progressing", "True", reasons::CONVERGING);
    assert_eq!(r.status.pods.len(), 1, "only pods that answered are listed");
}

#[test]
fn no_version_known_yet_is_not_ready_with_no_version() {
    let r = Case {
        answer: Err(Arc::new(MlflowError::NotFound {
            message: "no alias champion".into(),
        })),
        served: None,
        plan: Plan::Hold(Hold::RegistryUnknown),
        pods: vec![],
        ..Case::steady()
    }
    .report();
    has(&r, "Ready", "False", reasons::NO_VERSION);
    has(&r, "Degraded", "True", reasons::VERSION_NOT_FOUND);
    has(&r, "RegistryReachable", "True", reasons::REACHABLE);
}

#[test]
fn registry_refusals_name_their_reason_in_degraded() {
    let cases = [
        (
            MlflowError::Unauthorized {
                status: 401,
                message: "no".into(),
            },
            reasons::REGISTRY_UNAUTHORIZED,
            ("True", reasons::REACHABLE),
        ),
        (
            MlflowError::Config("credentialsSecret creds: not found".into()),
            reasons::REGISTRY_CREDENTIALS,
            ("Unknown", reasons::NOT_ASKED),
        ),
        (
            MlflowError::Invalid {
                code: "INVALID_PARAMETER_VALUE".into(),
                message: "bad name".into(),
            },
            reasons::REGISTRY_ERROR,
            ("True", reasons::REACHABLE),
        ),
    ];
    for (error, degraded, reachable) in cases {
        let r = Case {
            answer: Err(Arc::new(error)),
            plan: Plan::Hold(Hold::RegistryUnknown),
            ..Case::steady()
        }
        .report();
        has(&r, "Degraded", "True", degraded);
        has(&r, "RegistryReachable", reachable.0, reachable.1);
        // The pods keep serving what they serve.
        has(&r, "Ready", "True", reasons::SERVING);
    }
}

#[test]
fn an_unreachable_registry_is_told_once_and_asked_again_with_backoff() {
    let down = Case {
        answer: Err(Arc::new(MlflowError::Unreachable {
            url: "http://mlflow:5000".into(),
            message: "connection refused".into(),
        })),
        plan: Plan::Hold(Hold::RegistryUnknown),
        ..Case::steady()
    };
    let first = down.report();
    has(&first, "RegistryReachable", "False", reasons::UNREACHABLE);
    assert_eq!(reasons_of(&first), vec![reasons::REGISTRY_UNREACHABLE]);
    assert_eq!(first.requeue_after, Some(Duration::from_secs(1)));
    let later = Case {
        previous: first.status.clone(),
        now: at(108),
        ..down
    }
    .report();
    assert!(later.notes.is_empty(), "the event is not repeated");
    assert_eq!(later.requeue_after, Some(Duration::from_secs(8)));
}

#[test]
fn a_successful_rollout_moves_the_served_and_previous_versions() {
    let r = Case {
        answer: found("2"),
        plan: Plan::Rollout {
            target: "2".into(),
            from: Some("1".into()),
            pods: vec!["a".into(), "b".into()],
        },
        outcome: RolloutOutcome::Succeeded {
            target: "2".into(),
            from: Some("1".into()),
            reloaded: vec!["a".into(), "b".into()],
            took: Duration::from_millis(1500),
            verdict: None,
        },
        pods: vec![pod("a", Some("2"), true), pod("b", Some("2"), true)],
        ..Case::steady()
    }
    .report();
    assert_eq!(r.status.served_version.as_deref(), Some("2"));
    assert_eq!(r.status.previous_version.as_deref(), Some("1"));
    assert_eq!(r.status.last_rollout_duration.as_deref(), Some("1.500s"));
    has(&r, "Ready", "True", reasons::SERVING);
    assert_eq!(
        reasons_of(&r),
        vec![
            reasons::POD_RELOADED,
            reasons::POD_RELOADED,
            reasons::ROLLOUT_SUCCEEDED
        ]
    );
    assert_eq!(r.notes[0].pod.as_deref(), Some("a"));
}

#[test]
fn a_restart_rollout_says_so_once() {
    let r = Case {
        answer: found("2"),
        outcome: RolloutOutcome::Restarting {
            target: "2".into(),
            from: Some("1".into()),
        },
        pods: vec![pod("a", Some("1"), true), pod("c", None, false)],
        ..Case::steady()
    }
    .report();
    assert_eq!(reasons_of(&r), vec![reasons::ROLLOUT_STARTED]);
    assert_eq!(r.status.served_version.as_deref(), Some("2"));
    has(&r, "Progressing", "True", reasons::CONVERGING);
    assert_eq!(r.status.last_rollout_duration, None);
}

#[test]
fn an_invalid_spec_is_reported_once_per_message() {
    let previous = Case::steady().report().status;
    let r = refused(
        &previous,
        Some(4),
        reasons::INVALID_SPEC,
        "spec.pollInterval: bad",
        at(200),
    );
    has(&r, "Ready", "False", reasons::INVALID_SPEC);
    has(&r, "Degraded", "True", reasons::INVALID_SPEC);
    has(&r, "Stalled", "True", reasons::INVALID_SPEC);
    has(&r, "Reconciling", "False", reasons::INVALID_SPEC);
    assert_eq!(r.status.observed_generation, Some(4));
    assert!(
        r.status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(4))
    );
    assert_eq!(reasons_of(&r), vec![reasons::INVALID_SPEC]);
    assert_eq!(
        r.status.served_version, previous.served_version,
        "nothing else is lost"
    );
    assert_eq!(r.requeue_after, None);
    let again = refused(
        &r.status,
        Some(4),
        reasons::INVALID_SPEC,
        "spec.pollInterval: bad",
        at(300),
    );
    assert!(!again.changed && again.notes.is_empty());
}

#[test]
fn the_progress_status_keeps_everything_but_progressing() {
    let previous = Case::steady().report().status;
    let spec = serde_json::from_value(serde_json::json!({
        "registry": {"trackingUri": "http://mlflow:5000"},
        "model": {"name": "m", "alias": "champion"},
    }))
    .unwrap();
    let fm = ForecastModel::new("daily", spec);
    let progress = rolling_out(&fm, &previous, "2", 2, Default::default());
    assert_eq!(progress.desired_version.as_deref(), Some("2"));
    assert_eq!(progress.served_version, previous.served_version);
    assert_eq!(progress.replicas, 2);
    let reasons: Vec<_> = progress
        .conditions
        .iter()
        .map(|c| c.reason.as_str())
        .collect();
    assert!(reasons.contains(&reasons::ROLLING_OUT) && reasons.contains(&reasons::SERVING));
    let status_of = |kind: &str| {
        progress
            .conditions
            .iter()
            .find(|c| c.type_ == kind)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    assert_eq!(
        status_of("Reconciling"),
        Some(("True".into(), reasons::ROLLING_OUT.into()))
    );
    assert_eq!(status_of("Stalled").map(|s| s.0), Some("False".into()));
    assert_eq!(
        progress
            .conditions
            .iter()
            .filter(|c| c.type_ == "Reconciling")
            .count(),
        1,
        "one of each"
    );
}

#[test]
fn drift_sets_its_condition_and_tells_when_it_starts_and_ends() {
    use crate::pod_metrics::PodDrift;
    use crate::reconcile::drift::judge;
    let spec = api::forecast_model::DriftSpec::default();
    let pod = |rows: u64, psi: f64| PodDrift {
        rows,
        psi: [("lag_1".to_owned(), psi)].into(),
    };
    let mut case = Case::steady();
    // No monitoring: no condition.
    assert_eq!(condition(&case.report(), "Drifting"), Default::default());

    case.drift = Some(judge(&spec, &[pod(10, 0.9)]));
    let unknown = case.report();
    has(&unknown, "Drifting", "Unknown", "TooFewRows");
    assert!(unknown.notes.is_empty(), "{:?}", unknown.notes);

    case.previous = unknown.status;
    case.drift = Some(judge(&spec, &[pod(5000, 0.9)]));
    let drifting = case.report();
    has(&drifting, "Drifting", "True", "DriftDetected");
    assert_eq!(drifting.notes.len(), 1, "{:?}", drifting.notes);
    assert_eq!(drifting.notes[0].reason, "DriftDetected");
    assert!(drifting.notes[0].note.contains("lag_1 (PSI 0.90)"));
    // Drift never holds or changes the served version.
    has(&drifting, "Ready", "True", "Serving");
    assert_eq!(drifting.status.served_version.as_deref(), Some("1"));

    case.previous = drifting.status;
    let still = case.report();
    assert!(still.notes.is_empty(), "told once: {:?}", still.notes);

    case.previous = still.status;
    case.drift = Some(judge(&spec, &[pod(5000, 0.01)]));
    let over = case.report();
    has(&over, "Drifting", "False", "NoDrift");
    assert_eq!(over.notes.len(), 1);
    assert_eq!(over.notes[0].reason, "NoDrift");
}
