//! Act: make the owned objects what the spec says ([`owned`]), then carry out the plan's
//! rollout ([`rollout`] for the pods) and say how it went as one [`RolloutOutcome`].

pub mod canary;
pub mod owned;
pub mod rollout;
pub mod shadow;

use std::time::{Duration, Instant};

use api::forecast_model::{
    AnalysisFigures, ForecastModel, PodCounters, RolloutPhase, RolloutStrategy,
};
use api::reasons;
use tracing::{info, warn};

use crate::context::Context;
use crate::error::Result;
use crate::reconcile::canary::Stage;
use crate::reconcile::events::{self, Note};
use crate::reconcile::observe::{Observation, ValidSpec};
use crate::reconcile::plan::Plan;
use crate::reconcile::{report, status};
use owned::Owned;
use rollout::{PodFailure, PodTarget, Revert, Rolled, RolloutSettings};

/// How the plan's rollout went.
#[derive(Debug)]
pub enum RolloutOutcome {
    /// The plan moves nothing.
    Nothing,
    /// Every pod to roll serves `target`, and so does the ConfigMap.
    Succeeded {
        target: String,
        from: Option<String>,
        reloaded: Vec<String>,
        took: Duration,
        /// The canary analysis that let the rest follow, described.
        verdict: Option<String>,
    },
    /// `Restart` strategy: the ConfigMap and the pod template name `target`; the pods
    /// restart onto it.
    Restarting {
        target: String,
        from: Option<String>,
    },
    /// `Restart` strategy: pods created for `target` were not Ready on it within the
    /// verify timeout; the served version went back to `back` (pods restart onto it).
    RestartFailed {
        target: String,
        back: String,
        stuck: Vec<String>,
        verify_timeout: Duration,
    },
    /// The canary pods serve `target` (`reloaded` were switched now); the bake starts
    /// with every pod's counters in `window_start`.
    CanaryStarted {
        target: String,
        from: String,
        canary: Vec<String>,
        reloaded: Vec<String>,
        window_start: Vec<PodCounters>,
    },
    /// The canary bakes on: the figures so far; look again after `wait`.
    Baking {
        target: String,
        from: String,
        figures: AnalysisFigures,
        wait: Duration,
    },
    /// The canary verdict failed (`AnalysisFailed`) or had too little traffic by `maxBake`
    /// (`AnalysisInconclusive`); the canary pods were reloaded back to `from`.
    AnalysisFailed {
        target: String,
        from: String,
        reason: &'static str,
        message: String,
        figures: AnalysisFigures,
        revert: Revert,
    },
    /// A pod failed after `reloaded` were verified; the pods that may have switched were
    /// reloaded back to `from` as `revert` says.
    Failed {
        target: String,
        from: Option<String>,
        reloaded: Vec<String>,
        failure: PodFailure,
        revert: Revert,
    },
}

/// `Restart` strategy: when pods restarted onto the served version are not Ready on it
/// within the verify timeout, the served version goes back to the previous one (not a
/// failed one) and the pods restart onto that. `None` when nothing is stuck or there is
/// nothing to go back to.
async fn restart_failure(
    ctx: &Context,
    fm: &ForecastModel,
    spec: &ValidSpec,
    observed: &Observation,
    owned: &Owned,
) -> Result<Option<RolloutOutcome>> {
    let Some(target) = owned.served.clone() else {
        return Ok(None);
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    let stuck = crate::reconcile::plan::stuck_after_restart(
        &observed.pods,
        &target,
        spec.verify_timeout,
        now,
    );
    let previous = &observed.previous;
    let back = previous
        .previous_version
        .clone()
        .filter(|p| *p != target && !previous.failed_versions.contains(p));
    let Some(back) = back.filter(|_| !stuck.is_empty()) else {
        return Ok(None);
    };
    warn!(
        target,
        back,
        ?stuck,
        "restarted pods are not Ready on the new version; going back"
    );
    owned::write_served_version(ctx, fm, &back).await?;
    owned::apply_workload(ctx, fm, Some(&back), observed.credentials_secret.as_deref()).await?;
    Ok(Some(RolloutOutcome::RestartFailed {
        target,
        back,
        stuck,
        verify_timeout: spec.verify_timeout,
    }))
}

/// Carries out `plan` (a rollout, or nothing) as `stage` says (a canary first, a bake to
/// judge, or every pod).
pub async fn roll_out(
    ctx: &Context,
    fm: &ForecastModel,
    spec: &ValidSpec,
    observed: &Observation,
    owned: &Owned,
    plan: &Plan,
    stage: &Stage,
) -> Result<RolloutOutcome> {
    if fm.spec.rollout.strategy == RolloutStrategy::Restart
        && let Some(failed) = restart_failure(ctx, fm, spec, observed, owned).await?
    {
        return Ok(failed);
    }
    let Plan::Rollout { target, from, pods } = plan else {
        return Ok(RolloutOutcome::Nothing);
    };
    let (target, from) = (target.clone(), from.clone());
    if fm.spec.rollout.strategy == RolloutStrategy::Restart {
        // Pods restart onto the new ConfigMap value.
        if owned.served.as_deref() != Some(target.as_str()) {
            owned::write_served_version(ctx, fm, &target).await?;
        }
        let credentials = observed.credentials_secret.as_deref();
        owned::apply_workload(ctx, fm, Some(&target), credentials).await?;
        return Ok(RolloutOutcome::Restarting { target, from });
    }
    let rolling = Rolling {
        ctx,
        fm,
        spec,
        observed,
        owned,
        target: &target,
        from: from.as_deref(),
    };
    let verdict = match stage {
        Stage::Start { canary, reload } => return canary::start(&rolling, canary, reload).await,
        Stage::Bake {
            progress,
            canary,
            settings,
        } => match canary::judge(&rolling, progress, canary, settings).await? {
            canary::Judged::Passed(verdict) => Some(verdict),
            canary::Judged::Not(outcome) => return Ok(outcome),
        },
        Stage::Promote => Some("the canary passed before this operator took over".to_owned()),
        Stage::Skipped { ready } => {
            let note = format!(
                "a canary needs a baseline pod beside it and {ready} pods are ready; rolling every pod to version {target}"
            );
            events::publish(ctx, fm, &[Note::warning(reasons::CANARY_SKIPPED, note)]).await;
            None
        }
        Stage::Direct => None,
    };
    rolling.pods(pods, verdict).await
}

/// One rollout being carried out: what every step of it needs.
pub struct Rolling<'a> {
    pub ctx: &'a Context,
    pub fm: &'a ForecastModel,
    pub spec: &'a ValidSpec,
    pub observed: &'a Observation,
    pub owned: &'a Owned,
    pub target: &'a str,
    pub from: Option<&'a str>,
}

impl Rolling<'_> {
    pub fn settings(&self) -> RolloutSettings {
        RolloutSettings {
            max_concurrent: self.fm.spec.rollout.max_concurrent,
            verify_timeout: self.spec.verify_timeout,
            smoke_input: self.fm.spec.rollout.smoke_input.clone(),
            admin_token: self.owned.admin_token.clone(),
            acting: self.ctx.acting.clone(),
        }
    }

    /// The named pods that have an address, to reload.
    pub fn targets(&self, names: &[String]) -> Vec<PodTarget> {
        self.observed
            .pods
            .iter()
            .filter(|p| names.contains(&p.name))
            .filter_map(|p| {
                Some(PodTarget {
                    name: p.name.clone(),
                    base_url: p.base_url.clone()?,
                })
            })
            .collect()
    }

    /// Writes the progress (`Progressing=True`, `status.rollout` in `phase`) before pods
    /// are reloaded, and tells it in an event.
    pub async fn announce(
        &self,
        phase: RolloutPhase,
        pods: usize,
        extra: impl FnOnce(&mut api::forecast_model::RolloutProgress),
        reason: &'static str,
        note: String,
    ) -> Result<()> {
        let previous = &self.observed.previous;
        let now = k8s_openapi::jiff::Timestamp::now();
        let mut progress = crate::reconcile::progress::entering(
            previous.rollout.as_ref(),
            phase,
            self.target,
            self.from,
            now,
        );
        extra(&mut progress);
        let status = status::rolling_out(self.fm, previous, self.target, pods, progress);
        report::write_status(self.ctx, self.fm, &status).await?;
        events::publish(self.ctx, self.fm, &[Note::normal(reason, note)]).await;
        Ok(())
    }

    /// Reloads `pods` to the target (every pod the plan names, or those left after a
    /// canary passed) and writes the ConfigMap once all serve it.
    async fn pods(&self, pods: &[String], verdict: Option<String>) -> Result<RolloutOutcome> {
        let (ctx, fm, target) = (self.ctx, self.fm, self.target.to_owned());
        let from = self.from.map(str::to_owned);
        let targets = self.targets(pods);
        let started = Instant::now();
        if !targets.is_empty() {
            let from_text = from.as_deref().unwrap_or("?");
            let note = format!(
                "rolling {} pods from version {from_text} to {target}",
                targets.len()
            );
            let phase = RolloutPhase::Promoting;
            self.announce(phase, targets.len(), |_| {}, reasons::ROLLOUT_STARTED, note)
                .await?;
            info!(target, from = ?from, pods = targets.len(), "rollout started");
        }
        let rolled = rollout::roll(
            &ctx.predictors,
            &targets,
            &target,
            from.as_deref(),
            &self.settings(),
        )
        .await;
        Ok(match rolled {
            Rolled::All { reloaded } => {
                if from.as_deref() != Some(target.as_str()) {
                    owned::write_served_version(ctx, fm, &target).await?;
                }
                let took = started.elapsed();
                info!(target, seconds = took.as_secs_f64(), "rollout succeeded");
                RolloutOutcome::Succeeded {
                    target,
                    from,
                    reloaded,
                    took,
                    verdict,
                }
            }
            Rolled::Stopped { reloaded } => {
                warn!(
                    target,
                    ?reloaded,
                    "leadership lost mid-rollout; stopping at a safe point"
                );
                return Err(crate::error::Error::NotLeader);
            }
            Rolled::Failed {
                reloaded,
                failure,
                revert,
            } => RolloutOutcome::failed(target, from, reloaded, failure, revert),
        })
    }
}

impl RolloutOutcome {
    /// A pod failed the rollout to `target` (logged here, once for every caller).
    pub fn failed(
        target: String,
        from: Option<String>,
        reloaded: Vec<String>,
        failure: PodFailure,
        revert: Revert,
    ) -> Self {
        warn!(target, %failure, ?revert, "rollout failed");
        RolloutOutcome::Failed {
            target,
            from,
            reloaded,
            failure,
            revert,
        }
    }

    /// Whether pods may serve something else than before (so they are observed again).
    pub fn touched_pods(&self) -> bool {
        !matches!(
            self,
            RolloutOutcome::Nothing | RolloutOutcome::Baking { .. }
        )
    }

    /// The version acted on (None: nothing was).
    pub fn target(&self) -> Option<&str> {
        match self {
            RolloutOutcome::Nothing => None,
            RolloutOutcome::Succeeded { target, .. }
            | RolloutOutcome::Restarting { target, .. }
            | RolloutOutcome::RestartFailed { target, .. }
            | RolloutOutcome::CanaryStarted { target, .. }
            | RolloutOutcome::Baking { target, .. }
            | RolloutOutcome::AnalysisFailed { target, .. }
            | RolloutOutcome::Failed { target, .. } => Some(target),
        }
    }
}
