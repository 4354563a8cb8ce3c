//! Act: make the owned objects what the spec says ([`owned`]), then carry out the plan's
//! rollout ([`rollout`] for the pods) and say how it went as one [`RolloutOutcome`].

pub mod owned;
pub mod rollout;

use std::time::{Duration, Instant};

use api::forecast_model::{ForecastModel, RolloutStrategy};
use api::reasons;
use tracing::{info, warn};

use crate::context::Context;
use crate::error::Result;
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

/// Carries out `plan` (a rollout, or nothing).
pub async fn roll_out(
    ctx: &Context,
    fm: &ForecastModel,
    spec: &ValidSpec,
    observed: &Observation,
    owned: &Owned,
    plan: &Plan,
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
    let targets: Vec<PodTarget> = observed
        .pods
        .iter()
        .filter(|p| pods.contains(&p.name))
        .filter_map(|p| {
            Some(PodTarget {
                name: p.name.clone(),
                base_url: p.base_url.clone()?,
            })
        })
        .collect();
    let started = Instant::now();
    if !targets.is_empty() {
        let progress = status::rolling_out(fm, &observed.previous, &target, targets.len());
        report::write_status(ctx, fm, &progress).await?;
        let from_text = from.as_deref().unwrap_or("?");
        let note = format!(
            "rolling {} pods from version {from_text} to {target}",
            targets.len()
        );
        events::publish(ctx, fm, &[Note::normal(reasons::ROLLOUT_STARTED, note)]).await;
        info!(target, from = ?from, pods = targets.len(), "rollout started");
    }
    let settings = RolloutSettings {
        max_concurrent: fm.spec.rollout.max_concurrent,
        verify_timeout: spec.verify_timeout,
        smoke_input: fm.spec.rollout.smoke_input.clone(),
        admin_token: owned.admin_token.clone(),
        acting: ctx.acting.clone(),
    };
    let rolled = rollout::roll(
        &ctx.predictors,
        &targets,
        &target,
        from.as_deref(),
        &settings,
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
        } => {
            warn!(target, %failure, ?revert, "rollout failed");
            RolloutOutcome::Failed {
                target,
                from,
                reloaded,
                failure,
                revert,
            }
        }
    })
}

impl RolloutOutcome {
    /// Whether pods may serve something else than before (so they are observed again).
    pub fn touched_pods(&self) -> bool {
        !matches!(self, RolloutOutcome::Nothing)
    }
}
