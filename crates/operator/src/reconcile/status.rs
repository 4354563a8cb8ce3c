//! Status: a pure function from what was observed, planned and done to the whole status,
//! the events that go with it and when to look again.

use std::time::Duration;

use api::forecast_model::{
    ForecastModel, ForecastModelStatus, PodVersion, RolloutPhase, RolloutProgress, ShadowStatus,
    condition,
};
use api::reasons;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::reconcile::act::RolloutOutcome;
use crate::reconcile::act::rollout::Revert;
use crate::reconcile::conditions::{self, ConditionState, ConditionStatus, Desired};
use crate::reconcile::events::Note;
use crate::reconcile::observe::{Observation, ValidSpec};
use crate::reconcile::plan::{self, Hold, Plan, PodObservation};
use crate::reconcile::progress;

/// How many pods `status.pods` lists.
pub const MAX_STATUS_PODS: usize = 20;

/// What the status step reads.
pub struct Inputs<'a> {
    pub generation: Option<i64>,
    /// `spec.predictor.replicas`.
    pub replicas: i32,
    pub spec: &'a ValidSpec,
    pub observed: &'a Observation,
    /// The served version before the rollout (after the owned objects were made).
    pub served: Option<&'a str>,
    pub failed_versions: &'a [String],
    pub plan: &'a Plan,
    pub outcome: &'a RolloutOutcome,
    /// The pods after acting.
    pub pods: &'a [PodObservation],
    /// The shadow's comparison over the pods (None: no shadow in the spec).
    pub shadow: Option<ShadowStatus>,
    pub now: Timestamp,
}

/// The status to write, the events to publish, and when to reconcile again.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub status: ForecastModelStatus,
    /// False when the status says what the last one said (it is not written again).
    pub changed: bool,
    pub notes: Vec<Note>,
    /// None: only when something changes.
    pub requeue_after: Option<Duration>,
}

/// The status when the reconcile cannot act (`reason`: an invalid spec the schema could
/// not refuse, an object it would own held by someone else): the last status with
/// `Ready=False` and `Degraded=True` saying why; told once per change of the spec or message.
pub fn refused(
    previous: &ForecastModelStatus,
    generation: Option<i64>,
    reason: &'static str,
    message: &str,
    now: Timestamp,
) -> Report {
    let mut desired = Desired::new();
    desired.insert(
        condition::READY,
        ConditionState::new(false, reason, message),
    );
    desired.insert(
        condition::DEGRADED,
        ConditionState::new(true, reason, message),
    );
    let status = ForecastModelStatus {
        observed_generation: generation,
        conditions: conditions::written(&previous.conditions, &desired, generation, &Time(now)),
        ..previous.clone()
    };
    let changed = *previous != status;
    Report {
        notes: changed
            .then(|| Note::warning(reason, message))
            .into_iter()
            .collect(),
        status,
        changed,
        requeue_after: None,
    }
}

/// The status written while pods are being reloaded: the last one, with the target as the
/// desired version and `Progressing=True`.
pub fn rolling_out(
    fm: &ForecastModel,
    previous: &ForecastModelStatus,
    target: &str,
    pods: usize,
    progress: RolloutProgress,
) -> ForecastModelStatus {
    let generation = fm.metadata.generation;
    let mut desired = Desired::new();
    let which = match progress.phase {
        RolloutPhase::Canary => "canary ",
        _ => "",
    };
    desired.insert(
        condition::PROGRESSING,
        ConditionState::new(
            true,
            reasons::ROLLING_OUT,
            format!("reloading {pods} {which}pods to version {target}"),
        ),
    );
    let mut merged = previous.conditions.clone();
    merged.retain(|c| c.type_ != condition::PROGRESSING);
    let now = Time(Timestamp::now());
    merged.extend(conditions::written(
        &previous.conditions,
        &desired,
        generation,
        &now,
    ));
    ForecastModelStatus {
        observed_generation: generation,
        desired_version: Some(target.to_owned()),
        conditions: merged,
        rollout: Some(progress),
        ..previous.clone()
    }
}

/// The status after a reconcile that could act.
pub fn report(i: &Inputs) -> Report {
    let previous = &i.observed.previous;
    let registry = &i.observed.registry;
    let mut status = ForecastModelStatus {
        observed_generation: i.generation,
        selector: Some(i.spec.selector.to_string()),
        served_version: i.served.map(str::to_owned),
        desired_version: registry
            .desired
            .clone()
            .or(previous.desired_version.clone()),
        previous_version: previous.previous_version.clone(),
        failed_versions: i.failed_versions.to_vec(),
        last_rollout_duration: previous.last_rollout_duration.clone(),
        shadow: i.shadow.clone(),
        ..ForecastModelStatus::default()
    };
    let held = matches!(i.plan, Plan::Hold(_));
    let next = progress::next(previous.rollout.as_ref(), i.outcome, held, i.now);
    status.history = progress::history(&previous.history, &next.finished);
    status.rollout = Some(next.progress);
    let mut notes = Vec::new();
    let was_unreachable =
        conditions::status_of(&previous.conditions, condition::REGISTRY_REACHABLE)
            == Some(ConditionStatus::False);
    if registry.reachable.status == ConditionStatus::False && !was_unreachable {
        let note = format!("keeping the served version; {}", registry.reachable.message);
        notes.push(Note::warning(reasons::REGISTRY_UNREACHABLE, note));
    }
    let degraded = outcome_effects(i.outcome, &mut status, &mut notes)
        .or_else(|| registry.problem.clone())
        .or_else(|| held_back(previous, registry.desired.as_deref(), i.failed_versions))
        .unwrap_or_else(|| {
            ConditionState::new(
                false,
                reasons::AS_EXPECTED,
                "the last rollout succeeded or none was needed",
            )
        });
    let (ready, progressing) = pod_conditions(i, &mut status);
    let mut desired = Desired::new();
    desired.insert(condition::READY, ready);
    desired.insert(condition::PROGRESSING, progressing);
    desired.insert(condition::DEGRADED, degraded);
    desired.insert(condition::REGISTRY_REACHABLE, registry.reachable.clone());
    status.conditions =
        conditions::written(&previous.conditions, &desired, i.generation, &Time(i.now));
    let mut requeue = requeue_after(&status, i.spec.poll, i.now);
    if let Some(wait) = bake_wait(i) {
        requeue = requeue.min(wait);
    }
    Report {
        changed: *previous != status,
        requeue_after: Some(requeue),
        status,
        notes,
    }
}

/// While a canary bakes, when to look at it again.
fn bake_wait(i: &Inputs) -> Option<Duration> {
    match i.outcome {
        RolloutOutcome::Baking { wait, .. } => Some(*wait),
        RolloutOutcome::CanaryStarted { .. } => i.spec.canary.as_ref().map(|c| c.settings.bake),
        _ => None,
    }
}

/// The `Degraded` reasons that mark a version failed.
const FAILED_VERSION_REASONS: &[&str] = &[
    reasons::ROLLOUT_FAILED,
    reasons::ANALYSIS_FAILED,
    reasons::ANALYSIS_INCONCLUSIVE,
];

/// While the registry points at a version whose rollout failed, `Degraded` stays True
/// (`RolloutFailed`, with the failure's own message when it was the last one reported).
fn held_back(
    previous: &ForecastModelStatus,
    desired: Option<&str>,
    failed_versions: &[String],
) -> Option<ConditionState> {
    let desired = desired.filter(|d| failed_versions.iter().any(|f| f == d))?;
    let earlier = previous
        .conditions
        .iter()
        .find(|c| c.type_ == condition::DEGRADED)
        .filter(|c| c.status == ConditionStatus::True.as_str())
        .and_then(|c| {
            FAILED_VERSION_REASONS
                .iter()
                .find(|r| **r == c.reason)
                .map(|r| (*r, c.message.clone()))
        });
    let (reason, message) = earlier.unwrap_or_else(|| {
        let message = format!(
            "version {desired} failed its rollout; it is not tried again until the registry points elsewhere and back"
        );
        (reasons::ROLLOUT_FAILED, message)
    });
    Some(ConditionState::new(true, reason, message))
}

/// What the rollout's outcome changes in the status, its events, and the `Degraded`
/// state it calls for.
fn outcome_effects(
    outcome: &RolloutOutcome,
    status: &mut ForecastModelStatus,
    notes: &mut Vec<Note>,
) -> Option<ConditionState> {
    let reloaded_notes = |reloaded: &[String], target: &str| -> Vec<Note> {
        reloaded
            .iter()
            .map(|p| {
                Note::normal(
                    reasons::POD_RELOADED,
                    format!("pod {p} serves version {target}"),
                )
                .about_pod(p)
            })
            .collect()
    };
    match outcome {
        RolloutOutcome::Nothing | RolloutOutcome::Baking { .. } => None,
        RolloutOutcome::CanaryStarted {
            target, reloaded, ..
        } => {
            notes.extend(reloaded_notes(reloaded, target));
            None
        }
        RolloutOutcome::AnalysisFailed {
            target,
            from,
            reason,
            message,
            revert,
            ..
        } => {
            notes.push(Note::warning(reason, message.clone()));
            notes.push(Note::warning(
                reasons::ROLLED_BACK,
                reverted_text(revert, Some(from)),
            ));
            if !status.failed_versions.contains(target) {
                status.failed_versions.push(target.clone());
            }
            Some(ConditionState::new(true, reason, message.clone()))
        }
        RolloutOutcome::Succeeded {
            target,
            from,
            reloaded,
            took,
            ..
        } => {
            let moved = from.as_deref() != Some(target.as_str());
            if moved {
                status.previous_version = from.clone();
            }
            status.served_version = Some(target.clone());
            status.last_rollout_duration = Some(format!("{:.3}s", took.as_secs_f64()));
            notes.extend(reloaded_notes(reloaded, target));
            if moved || !reloaded.is_empty() {
                let note = format!(
                    "every pod serves version {target} (in {:.2}s)",
                    took.as_secs_f64()
                );
                notes.push(Note::normal(reasons::ROLLOUT_SUCCEEDED, note));
            }
            None
        }
        RolloutOutcome::Restarting { target, from } => {
            if from.as_deref() != Some(target.as_str()) {
                status.previous_version = from.clone();
                // Later reconciles only watch the pods come up: one event per move.
                let note = format!("restarting pods onto version {target}");
                notes.push(Note::normal(reasons::ROLLOUT_STARTED, note));
            }
            status.served_version = Some(target.clone());
            None
        }
        RolloutOutcome::RestartFailed {
            target,
            back,
            stuck,
            verify_timeout,
        } => {
            let failure = format!(
                "pods {} were not Ready on version {target} within the verify timeout ({}s)",
                stuck.join(", "),
                verify_timeout.as_secs()
            );
            notes.push(Note::warning(
                reasons::ROLLOUT_FAILED,
                format!("version {target}: {failure}"),
            ));
            notes.push(Note::warning(
                reasons::ROLLED_BACK,
                format!("restarting pods onto version {back}"),
            ));
            status.served_version = Some(back.clone());
            status.previous_version = Some(target.clone());
            if !status.failed_versions.contains(target) {
                status.failed_versions.push(target.clone());
            }
            Some(ConditionState::new(true, reasons::ROLLOUT_FAILED, failure))
        }
        RolloutOutcome::Failed {
            target,
            from,
            reloaded,
            failure,
            revert,
        } => {
            notes.extend(reloaded_notes(reloaded, target));
            let rolled_back = reverted_text(revert, from.as_deref());
            notes.push(Note::warning(
                reasons::ROLLOUT_FAILED,
                format!("version {target}: {failure}"),
            ));
            notes.push(Note::warning(reasons::ROLLED_BACK, rolled_back));
            if from.as_deref() == Some(target.as_str()) {
                // Bringing stragglers back to the served version failed: not a bad
                // version, a pod problem; retried on the next reconcile.
                return Some(ConditionState::new(
                    true,
                    reasons::CONVERGE_FAILED,
                    failure.to_string(),
                ));
            }
            if !failure.is_model_failure() {
                // Not the version's fault: tried again on the next reconcile.
                let message = format!("{failure} (transient; version {target} is tried again)");
                return Some(ConditionState::new(
                    true,
                    reasons::ROLLOUT_INTERRUPTED,
                    message,
                ));
            }
            if !status.failed_versions.contains(target) {
                status.failed_versions.push(target.clone());
            }
            Some(ConditionState::new(
                true,
                reasons::ROLLOUT_FAILED,
                failure.to_string(),
            ))
        }
    }
}

/// What a revert did, for the `RolledBack` event.
fn reverted_text(revert: &Revert, from: Option<&str>) -> String {
    let from_text = from.unwrap_or("?");
    match revert {
        Revert::Done { reverted, failures } if failures.is_empty() => {
            format!("reverted {} pods to version {from_text}", reverted.len())
        }
        Revert::Done { reverted, failures } => {
            let errors: Vec<String> = failures.iter().map(ToString::to_string).collect();
            format!(
                "reverted {} pods to version {from_text}; could not revert: {}",
                reverted.len(),
                errors.join("; ")
            )
        }
        Revert::NoPreviousVersion { left } => format!(
            "no previous version is recorded; {} switched pods were left as they are",
            left.len()
        ),
    }
}

/// The pod counts in `status`, and the `Ready` and `Progressing` states they call for.
fn pod_conditions(
    i: &Inputs,
    status: &mut ForecastModelStatus,
) -> (ConditionState, ConditionState) {
    let served = status.served_version.clone();
    let ready_pods = i.pods.iter().filter(|p| p.ready).count() as i32;
    // While a canary bakes, its pods serve the new version as they should.
    let baking = status
        .rollout
        .as_ref()
        .filter(|p| p.phase == RolloutPhase::Baking);
    let as_planned = |p: &PodObservation| {
        baking.is_some_and(|b| b.canary_pods.contains(&p.name) && p.version == b.version)
    };
    let on_served = i
        .pods
        .iter()
        .filter(|p| p.version.is_some() && p.version == served)
        .count() as i32;
    let canary_pods = i.pods.iter().filter(|p| as_planned(p)).count() as i32;
    status.replicas = i.pods.len() as i32;
    status.updated_replicas = on_served;
    status.pods = i
        .pods
        .iter()
        .filter_map(|p| {
            Some(PodVersion {
                pod: p.name.clone(),
                version: p.version.clone()?,
            })
        })
        .take(MAX_STATUS_PODS)
        .collect();
    let wanted = i.replicas;
    let served_text = served.as_deref().unwrap_or("?");
    let converged = ready_pods == wanted && on_served == wanted && status.replicas == wanted;
    let serving = ready_pods == wanted && on_served + canary_pods == wanted;
    let progressing = if let Some(b) = baking {
        let version = b.version.as_deref().unwrap_or("?");
        ConditionState::new(
            true,
            reasons::CANARY_BAKING,
            format!(
                "canary pods {} serve version {version}; the others stay on {served_text} until the verdict",
                b.canary_pods.join(", ")
            ),
        )
    } else if converged {
        ConditionState::new(false, reasons::IDLE, "no rollout in progress")
    } else {
        ConditionState::new(
            true,
            reasons::CONVERGING,
            format!("{on_served}/{wanted} pods serve version {served_text}"),
        )
    };
    let ready = match (i.plan, converged, served.as_deref()) {
        (_, true, Some(v)) => ConditionState::new(
            true,
            reasons::SERVING,
            format!("{wanted} pods serve version {v}"),
        ),
        (_, false, Some(v)) if serving && canary_pods > 0 => ConditionState::new(
            true,
            reasons::SERVING,
            format!("{wanted} pods serve: {on_served} version {v}, {canary_pods} the canary"),
        ),
        (Plan::Hold(Hold::RegistryUnknown), _, None) => {
            ConditionState::new(false, reasons::NO_VERSION, "no version is known yet")
        }
        _ => ConditionState::new(
            false,
            reasons::PODS_NOT_READY,
            format!("{ready_pods}/{wanted} pods ready, {on_served} on the served version"),
        ),
    };
    (ready, progressing)
}

/// Changes of owned objects and pods wake the reconcile; only an unreachable registry is
/// asked again sooner than the poll interval, backing off as long as it has been down
/// (from the condition's `lastTransitionTime`, so a restarted operator keeps the pace).
fn requeue_after(status: &ForecastModelStatus, poll: Duration, now: Timestamp) -> Duration {
    let reachable = status
        .conditions
        .iter()
        .find(|c| c.type_ == condition::REGISTRY_REACHABLE);
    match reachable {
        Some(c) if c.status != ConditionStatus::True.as_str() => {
            let down_for = Duration::try_from(now.duration_since(c.last_transition_time.0))
                .unwrap_or_default();
            plan::registry_retry(down_for, poll)
        }
        _ => poll,
    }
}

#[cfg(test)]
#[path = "status_canary_tests.rs"]
mod canary_tests;
#[cfg(test)]
#[path = "status_failure_tests.rs"]
mod failure_tests;
#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
