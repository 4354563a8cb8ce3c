//! What a rollout's outcome changes in the status (served, previous and failed versions,
//! the rollout duration), the events it calls for, and the `Degraded` state it leaves —
//! pure, for the status step.

use api::forecast_model::{ForecastModelStatus, condition};
use api::reasons;

use crate::reconcile::act::RolloutOutcome;
use crate::reconcile::act::rollout::Revert;
use crate::reconcile::conditions::{ConditionState, ConditionStatus};
use crate::reconcile::events::Note;

/// The `Degraded` reasons that mark a version failed.
const FAILED_VERSION_REASONS: &[&str] = &[
    reasons::ROLLOUT_FAILED,
    reasons::ANALYSIS_FAILED,
    reasons::ANALYSIS_INCONCLUSIVE,
];

/// While the registry points at a version whose rollout failed, `Degraded` stays True
/// (`RolloutFailed`, with the failure's own message when it was the last one reported).
pub fn held_back(
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
pub fn outcome_effects(
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
