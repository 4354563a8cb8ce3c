//! `status.rollout` and `status.history`, pure: where the rollout is after this reconcile
//! and which rollouts finished in it.

use api::forecast_model::{
    HISTORY_LIMIT, RolloutPhase, RolloutProgress, RolloutRecord, RolloutResult,
};
use api::reasons;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::reconcile::act::RolloutOutcome;

/// The progress of a rollout to `target` from `from` entering `phase`: the same rollout
/// as `previous` keeps its start, canary and bake; another starts now.
pub fn entering(
    previous: Option<&RolloutProgress>,
    phase: RolloutPhase,
    target: &str,
    from: Option<&str>,
    now: Timestamp,
) -> RolloutProgress {
    match previous.filter(|p| same_rollout(p, target, from)) {
        Some(p) => RolloutProgress { phase, ..p.clone() },
        None => RolloutProgress {
            phase,
            version: Some(target.to_owned()),
            from: from.map(str::to_owned),
            started_at: Some(Time(now)),
            ..RolloutProgress::default()
        },
    }
}

fn same_rollout(p: &RolloutProgress, target: &str, from: Option<&str>) -> bool {
    p.phase != RolloutPhase::Idle
        && p.version.as_deref() == Some(target)
        && p.from.as_deref() == from
}

fn idle() -> RolloutProgress {
    RolloutProgress::default()
}

/// Where the rollout is after this reconcile, and the rollouts that finished in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Next {
    pub progress: RolloutProgress,
    pub finished: Vec<RolloutRecord>,
}

/// `held`: the plan held everything (paused, registry unknown) — a bake in progress stays.
pub fn next(
    previous: Option<&RolloutProgress>,
    outcome: &RolloutOutcome,
    held: bool,
    now: Timestamp,
) -> Next {
    let active = previous.filter(|p| p.phase != RolloutPhase::Idle);
    let target = outcome.target();
    if held && target.is_none() {
        return Next {
            progress: previous.cloned().unwrap_or_default(),
            finished: Vec::new(),
        };
    }
    let mut finished = Vec::new();
    // A rollout in progress whose version is no longer the one acted on was superseded.
    if let Some(p) = active.filter(|p| p.version.as_deref() != target) {
        let message = match target {
            Some(t) => format!("the registry moved on; rolling version {t} instead"),
            None => "the registry moved back to the served version".to_owned(),
        };
        finished.push(record(
            p,
            now,
            RolloutResult::Aborted,
            reasons::SUPERSEDED,
            message,
        ));
    }
    let started = |target: &str, from: Option<&str>, fallback: Option<Time>| {
        active
            .filter(|p| same_rollout(p, target, from))
            .and_then(|p| p.started_at.clone())
            .or(fallback)
    };
    let mut end = |from: &Option<String>, to: &str, started_at, result, reason: &str, message| {
        finished.push(RolloutRecord {
            from: from.clone(),
            to: to.to_owned(),
            started_at,
            finished_at: Time(now),
            result,
            reason: reason.to_owned(),
            message,
        });
    };
    let progress = match outcome {
        RolloutOutcome::Nothing => match active {
            Some(p) if p.version.as_deref() == target => p.clone(),
            _ => idle(),
        },
        RolloutOutcome::Succeeded {
            target,
            from,
            reloaded,
            took,
            verdict,
        } => {
            if from.as_deref() != Some(target.as_str()) {
                let fallback = now
                    .checked_sub(SignedDuration::try_from(*took).unwrap_or_default())
                    .ok()
                    .map(Time);
                let message = match verdict {
                    Some(v) => format!("canary passed ({v}); {} pods reloaded", reloaded.len()),
                    None => format!("{} pods reloaded", reloaded.len()),
                };
                let started_at = started(target, from.as_deref(), fallback);
                end(
                    from,
                    target,
                    started_at,
                    RolloutResult::Succeeded,
                    reasons::ROLLOUT_SUCCEEDED,
                    message,
                );
            }
            idle()
        }
        RolloutOutcome::Restarting { target, from } => {
            if from.as_deref() != Some(target.as_str()) {
                let message = "strategy Restart: pods restart onto it".to_owned();
                end(
                    from,
                    target,
                    Some(Time(now)),
                    RolloutResult::Succeeded,
                    reasons::ROLLOUT_STARTED,
                    message,
                );
            }
            idle()
        }
        RolloutOutcome::RestartFailed {
            target,
            back,
            stuck,
            ..
        } => {
            let message = format!("pods {} were not Ready on it in time", stuck.join(", "));
            end(
                &Some(back.clone()),
                target,
                None,
                RolloutResult::Failed,
                reasons::ROLLOUT_FAILED,
                message,
            );
            idle()
        }
        RolloutOutcome::Failed {
            target,
            from,
            failure,
            ..
        } => {
            if from.as_deref() != Some(target.as_str()) {
                let (result, reason) = if failure.is_model_failure() {
                    (RolloutResult::Failed, reasons::ROLLOUT_FAILED)
                } else {
                    (RolloutResult::Aborted, reasons::ROLLOUT_INTERRUPTED)
                };
                let started_at = started(target, from.as_deref(), None);
                end(
                    from,
                    target,
                    started_at,
                    result,
                    reason,
                    failure.to_string(),
                );
            }
            idle()
        }
        RolloutOutcome::CanaryStarted {
            target,
            from,
            canary,
            window_start,
            ..
        } => RolloutProgress {
            canary_pods: canary.clone(),
            bake_started_at: Some(MicroTime(now)),
            window_start: window_start.clone(),
            analysis: None,
            ..entering(active, RolloutPhase::Baking, target, Some(from), now)
        },
        RolloutOutcome::Baking {
            target,
            from,
            figures,
            ..
        } => RolloutProgress {
            analysis: Some(figures.clone()),
            ..entering(active, RolloutPhase::Baking, target, Some(from), now)
        },
        RolloutOutcome::AnalysisFailed {
            target,
            from,
            reason,
            message,
            ..
        } => {
            let started_at = started(target, Some(from), None);
            end(
                &Some(from.clone()),
                target,
                started_at,
                RolloutResult::Failed,
                reason,
                message.clone(),
            );
            idle()
        }
    };
    Next { progress, finished }
}

fn record(
    p: &RolloutProgress,
    now: Timestamp,
    result: RolloutResult,
    reason: &str,
    message: String,
) -> RolloutRecord {
    RolloutRecord {
        from: p.from.clone(),
        to: p.version.clone().unwrap_or_default(),
        started_at: p.started_at.clone(),
        finished_at: Time(now),
        result,
        reason: reason.to_owned(),
        message,
    }
}

/// `status.history`: the rollouts that finished now, then the earlier ones, newest first,
/// at most [`HISTORY_LIMIT`].
pub fn history(previous: &[RolloutRecord], finished: &[RolloutRecord]) -> Vec<RolloutRecord> {
    finished
        .iter()
        .rev()
        .chain(previous.iter())
        .take(HISTORY_LIMIT)
        .cloned()
        .collect()
}
