//! The canary's I/O: switch the canary pods and read every pod's counters to open the
//! bake window; later read them again, judge (`analysis`, pure), and on a failed verdict
//! reload the canary pods back.

use std::time::Duration;

use api::forecast_model::{PodCounters, RolloutPhase, RolloutProgress};
use api::reasons;
use k8s_openapi::jiff::Timestamp;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::reconcile::act::rollout::{self, Rolled};
use crate::reconcile::act::{Rolling, RolloutOutcome};
use crate::reconcile::analysis::{self, CanarySettings, Verdict};
use crate::reconcile::events::{self, Note};
use crate::reconcile::observe;
use crate::reconcile::plan::PodObservation;

/// Switches `canary` to the target (`reload`: those not on it yet), then reads every
/// ready pod's counters: the start of the bake window.
pub async fn start(
    r: &Rolling<'_>,
    canary: &[String],
    reload: &[String],
) -> Result<RolloutOutcome> {
    let (target, from) = (r.target.to_owned(), r.from.unwrap_or_default().to_owned());
    let note = format!(
        "switching pods {} to version {target} as the canary; the others stay on {from} as the baseline",
        canary.join(", ")
    );
    r.announce(
        RolloutPhase::Canary,
        reload.len(),
        |p| p.canary_pods = canary.to_vec(),
        reasons::CANARY_STARTED,
        note,
    )
    .await?;
    info!(target, from, ?canary, "canary started");
    let rolled = rollout::roll(
        &r.ctx.predictors,
        &r.targets(reload),
        &target,
        Some(&from),
        &r.settings(),
    )
    .await;
    match rolled {
        Rolled::All { reloaded } => {
            let window_start = counters(r, canary, &r.observed.pods).await;
            Ok(RolloutOutcome::CanaryStarted {
                target,
                from,
                canary: canary.to_vec(),
                reloaded,
                window_start,
            })
        }
        Rolled::Stopped { .. } => Err(Error::NotLeader),
        Rolled::Failed {
            reloaded,
            failure,
            revert,
        } => Ok(RolloutOutcome::failed(
            target,
            Some(from),
            reloaded,
            failure,
            revert,
        )),
    }
}

/// Every ready pod's counters for the version it should serve now: the canary pods for the
/// target, the others for the baseline. Pods that do not answer are left out.
async fn counters(r: &Rolling<'_>, canary: &[String], pods: &[PodObservation]) -> Vec<PodCounters> {
    let from = r.from.unwrap_or_default();
    let counted: Vec<&PodObservation> = pods
        .iter()
        .filter(|p| p.ready)
        .filter(|p| canary.contains(&p.name) || p.version.as_deref() == Some(from))
        .collect();
    observe::pod_metrics(r.ctx, &counted)
        .await
        .into_iter()
        .map(|(pod, metrics)| {
            let version = if canary.contains(&pod) {
                r.target
            } else {
                from
            };
            metrics.counters(&pod, version)
        })
        .collect()
}

/// What a look at a baking canary decided.
pub enum Judged {
    /// The verdict passed: the rest follow. The figures, described.
    Passed(String),
    /// Baking on, or failed and reverted.
    Not(RolloutOutcome),
}

/// Reads the counters, computes the figures over the bake window and judges them.
pub async fn judge(
    r: &Rolling<'_>,
    progress: &RolloutProgress,
    canary: &[String],
    settings: &CanarySettings,
) -> Result<Judged> {
    let (target, from) = (r.target.to_owned(), r.from.unwrap_or_default().to_owned());
    let now_counters = counters(r, canary, &r.observed.pods).await;
    let (c, b) = analysis::window(&progress.window_start, &now_counters, canary);
    let figures = analysis::figures(&c, &b);
    r.ctx.metrics.record_analysis(r.fm, &figures);
    let baked = progress
        .bake_started_at
        .as_ref()
        .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
        .unwrap_or_default();
    let described = analysis::describe(&figures, settings);
    let (reason, message, label) = match analysis::verdict(&figures, settings, baked) {
        Verdict::Wait(wait) => {
            return Ok(Judged::Not(RolloutOutcome::Baking {
                target,
                from,
                figures,
                wait,
            }));
        }
        Verdict::Pass => {
            Metrics::count(&r.ctx.metrics.canary_verdicts, "pass");
            let note = format!(
                "version {target} passed on pods {}: {described}",
                canary.join(", ")
            );
            events::publish(r.ctx, r.fm, &[Note::normal(reasons::CANARY_PASSED, note)]).await;
            info!(target, %described, "canary passed");
            return Ok(Judged::Passed(described));
        }
        Verdict::Fail(breaches) => (
            reasons::ANALYSIS_FAILED,
            format!(
                "version {target} failed its canary analysis: {}; {described}",
                breaches.join(", ")
            ),
            "fail",
        ),
        Verdict::Inconclusive(why) => (
            reasons::ANALYSIS_INCONCLUSIVE,
            format!("version {target} could not be judged: {why}; {described}"),
            "inconclusive",
        ),
    };
    Metrics::count(&r.ctx.metrics.canary_verdicts, label);
    warn!(target, %message, "canary verdict: reverting the canary pods");
    let pods = r.targets(canary);
    let switched: Vec<&rollout::PodTarget> = pods.iter().collect();
    let revert = rollout::revert(&r.ctx.predictors, &switched, Some(&from), &r.settings()).await;
    Ok(Judged::Not(RolloutOutcome::AnalysisFailed {
        target,
        from,
        reason,
        message,
        figures,
        revert,
    }))
}
