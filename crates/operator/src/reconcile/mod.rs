//! The reconcile, as a pipeline of steps, one module each:
//!
//! ```text
//! observe  spec checked, registry answer, served version, pods and what each serves
//! act      owned objects made as the spec says (Secret, ConfigMap, Deployment, Service)
//! plan     the pure decision: which version, which pods, or hold
//! canary   the pure staging: a canary first, a bake to judge (analysis), or every pod
//! act      the rollout, reported as one RolloutOutcome; the shadow loaded in the pods
//! progress the pure status.rollout and status.history
//! status   a pure function to the whole status, its events and the next wake-up
//!          (outcome: what the rollout's outcome changes in it)
//! report   status written (server-side apply, status subresource), events published
//! ```

pub mod act;
pub mod analysis;
pub mod canary;
pub mod conditions;
pub mod drift;
pub mod env_sources;
pub mod events;
pub mod kstatus;
pub mod observe;
pub mod outcome;
pub mod plan;
pub mod progress;
pub mod report;
pub mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::forecast_model::ForecastModel;
use api::reasons;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::warn;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

pub async fn reconcile(fm: Arc<ForecastModel>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(&fm, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    let label = if result.is_ok() { "ok" } else { "error" };
    Metrics::count(&ctx.metrics.reconciles, label);
    result
}

#[tracing::instrument(skip_all, fields(forecastmodel = %format!("{}/{}", fm.namespace().unwrap_or_default(), fm.name_any())))]
async fn reconcile_inner(fm: &ForecastModel, ctx: &Context) -> Result<Action> {
    if !ctx.acting.allowed() {
        return Err(Error::NotLeader);
    }
    let generation = fm.metadata.generation;
    let spec = match observe::spec(fm, &ctx.policy) {
        Ok(spec) => spec,
        Err(message) => {
            // Reported, not retried: only a change of the spec helps.
            refuse(ctx, fm, reasons::INVALID_SPEC, &message).await?;
            return Ok(Action::await_change());
        }
    };
    let m = &ctx.metrics;
    if let Err(message) = m
        .timed("env_sources", env_sources::check_all(ctx, fm))
        .await?
    {
        // The owner of the Secret or ConfigMap may label it without the spec changing:
        // looked at again every poll.
        refuse(ctx, fm, reasons::INVALID_SPEC, &message).await?;
        return Ok(Action::requeue(spec.poll));
    }
    let observed = observe::observe(ctx, fm, &spec).await?;
    let owned = match m
        .timed("owned", act::owned::ensure(ctx, fm, &spec, &observed))
        .await
    {
        Err(conflict @ Error::OwnershipConflict { .. }) => {
            // Someone else's object is never taken over; looked at again every poll.
            refuse(ctx, fm, reasons::OWNERSHIP_CONFLICT, &conflict.to_string()).await?;
            return Ok(Action::requeue(spec.poll));
        }
        owned => owned?,
    };
    let failed_versions = plan::failed_versions_after(
        &observed.previous.failed_versions,
        observed.previous.desired_version.as_deref(),
        observed.registry.desired.as_deref(),
    );
    let plan = plan::plan(&plan::Observed {
        paused: fm.spec.paused,
        desired: observed.registry.desired.clone(),
        served: owned.served.clone(),
        failed_versions: failed_versions.clone(),
        pods: observed.pods.clone(),
    });
    let stage = canary::stage(
        &plan,
        spec.canary.as_ref(),
        observed.previous.rollout.as_ref(),
        &observed.pods,
    );
    let outcome = m
        .timed(
            "rollout",
            act::roll_out(ctx, fm, &spec, &observed, &owned, &plan, &stage),
        )
        .await?;
    let pods = match outcome.touched_pods() {
        true => observe::pods(ctx, fm, &observe::own_pods(ctx, fm).await?).await,
        false => observed.pods.clone(),
    };
    // The pods' /metrics, read once for the shadow comparison and the drift judgement.
    let reads = observe::MetricsReads::default();
    let shadow = m
        .timed(
            "shadow",
            act::shadow::sync(ctx, &spec, &observed, &pods, &owned.admin_token, &reads),
        )
        .await;
    let drift = match &spec.drift {
        Some(limits) => {
            let figures = match drift::served_by_pods(&pods) {
                Some(version) => {
                    m.timed("drift", observe::pod_drift(ctx, &reads, &pods, version))
                        .await
                }
                None => Vec::new(),
            };
            Some(drift::judge(limits, &figures))
        }
        None => None,
    };
    let report = status::report(&status::Inputs {
        generation,
        replicas: fm.spec.predictor.replicas,
        spec: &spec,
        observed: &observed,
        served: owned.served.as_deref(),
        failed_versions: &failed_versions,
        plan: &plan,
        outcome: &outcome,
        pods: &pods,
        shadow: shadow.status,
        drift: drift.as_ref(),
        now: Timestamp::now(),
    });
    m.timed("report", async {
        report::write(ctx, fm, &report).await?;
        events::publish(ctx, fm, &shadow.notes).await;
        Ok::<_, Error>(())
    })
    .await?;
    ctx.metrics.record(fm, &outcome, &report.status);
    ctx.metrics
        .record_drift(fm, drift.as_ref().map(|d| &d.worst));
    Ok(report
        .requeue_after
        .map_or_else(Action::await_change, Action::requeue))
}

/// Reports why the reconcile cannot act (`status::refused`).
async fn refuse(
    ctx: &Context,
    fm: &ForecastModel,
    reason: &'static str,
    message: &str,
) -> Result<()> {
    let previous = ctx.memory.previous_status(fm);
    let now = Timestamp::now();
    let report = status::refused(&previous, fm.metadata.generation, reason, message, now);
    report::write(ctx, fm, &report).await
}

pub fn error_policy(fm: Arc<ForecastModel>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(forecastmodel = %fm.name_any(), %error, "reconcile failed");
    ctx.metrics
        .errors
        .get_or_create(&crate::metrics::ErrorLabel {
            error: error.metric_label().into(),
        })
        .inc();
    Action::requeue(Duration::from_secs(5))
}
