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
use crate::reconcile::conditions::{self, ConditionState, ConditionStatus, Desired};
use crate::reconcile::events::Note;
use crate::reconcile::kstatus::add_kstatus_conditions;
use crate::reconcile::observe::{Observation, ValidSpec};
use crate::reconcile::outcome::{held_back, outcome_effects};
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
    /// The drift verdict (None: no `spec.monitoring.drift`).
    pub drift: Option<&'a crate::reconcile::drift::DriftVerdict>,
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
    add_kstatus_conditions(&mut desired, false);
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
    // Reconciling with Progressing; not stalled (a rollout moves). The rest as they were.
    add_kstatus_conditions(&mut desired, false);
    let mut merged = previous.conditions.clone();
    merged.retain(|c| !desired.contains_key(c.type_.as_str()));
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
    if let Some(drift) = i.drift {
        drift_notes(previous, &drift.state, &mut notes);
        desired.insert(condition::DRIFTING, drift.state.clone());
    }
    add_kstatus_conditions(&mut desired, shadow_loading(i));
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

/// An event when drift starts (Warning) or ends (Normal); none while it is unknown.
fn drift_notes(previous: &ForecastModelStatus, now: &ConditionState, notes: &mut Vec<Note>) {
    let before = conditions::status_of(&previous.conditions, condition::DRIFTING);
    match (before, now.status) {
        (Some(ConditionStatus::True), ConditionStatus::True) => {}
        (_, ConditionStatus::True) => {
            notes.push(Note::warning(reasons::DRIFT_DETECTED, now.message.clone()))
        }
        (Some(ConditionStatus::True), ConditionStatus::False) => {
            notes.push(Note::normal(reasons::NO_DRIFT, now.message.clone()))
        }
        _ => {}
    }
}

/// Whether the spec's shadow version is not yet held by every ready pod (and has not
/// failed to load).
fn shadow_loading(i: &Inputs) -> bool {
    let ready = i.pods.iter().filter(|p| p.ready).count();
    i.shadow
        .as_ref()
        .is_some_and(|s| s.load_failed.is_none() && usize::try_from(s.pods).unwrap_or(0) < ready)
}

/// While a canary bakes, when to look at it again.
fn bake_wait(i: &Inputs) -> Option<Duration> {
    match i.outcome {
        RolloutOutcome::Baking { wait, .. } => Some(*wait),
        RolloutOutcome::CanaryStarted { .. } => i.spec.canary.as_ref().map(|c| c.settings.bake),
        _ => None,
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
