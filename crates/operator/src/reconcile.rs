//! The reconcile loop: observe (registry, ConfigMap, pods), decide (`decide::plan`), act
//! (owned objects, rollout), write the whole status.

use api::reasons;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::forecast_model::{
    ForecastModel, ForecastModelStatus, PodVersion, RolloutStrategy, condition,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::context::Context;
use crate::decide::{self, ConditionState, Hold, Observed, Plan, PodObservation};
use crate::error::{Error, Result};
use crate::metrics::{Metrics, ModelLabel};
use crate::own_writes;
use crate::resources::{self, FIELD_MANAGER, SERVED_VERSION_KEY};
use crate::rollout::{self, PodTarget, RolloutResult, RolloutSettings};

/// How many pods `status.pods` lists.
const MAX_STATUS_PODS: usize = 20;

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

async fn publish(ctx: &Context, fm: &ForecastModel, type_: EventType, reason: &str, note: String) {
    publish_related(ctx, fm, type_, reason, note, None).await;
}

/// An event about `fm` that also names a related object (a pod), so events about
/// different pods stay apart instead of folding into one series.
async fn publish_related(
    ctx: &Context,
    fm: &ForecastModel,
    type_: EventType,
    reason: &str,
    note: String,
    related: Option<ObjectReference>,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: related,
    };
    if let Err(e) = ctx.recorder.publish(&event, &fm.object_ref(&())).await {
        warn!(error = %e, reason, "cannot publish event");
    }
}

fn pod_reference(ns: &str, pod: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(ns.to_owned()),
        name: Some(pod.to_owned()),
        ..ObjectReference::default()
    }
}

/// The admin token, created once per ForecastModel and kept. Its Secret is looked at
/// every few minutes, and whenever a pod is not ready (a pod cannot start without it); a
/// deleted Secret is recreated with the token the running pods hold.
async fn admin_token(
    ctx: &Context,
    fm: &ForecastModel,
    ns: &str,
    pods: &[Arc<Pod>],
) -> Result<String> {
    let uid = fm.uid().unwrap_or_default();
    let all_ready = pods.len() >= usize::try_from(fm.spec.predictor.replicas).unwrap_or(0)
        && pods.iter().all(|p| pod_ready(p));
    if let Some(token) = ctx.tokens.fresh(&uid).filter(|_| all_ready) {
        return Ok(token);
    }
    let names = resources::names(fm);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    if let Some(existing) = secrets.get_opt(&names.secret).await? {
        let token = crate::secrets::secret_value(&existing, resources::ADMIN_TOKEN_KEY);
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            ctx.tokens.record(&uid, &t);
            return Ok(t);
        }
    }
    let token = ctx.tokens.last(&uid).unwrap_or_else(random_token);
    secrets
        .patch(
            &names.secret,
            &apply_params(),
            &Patch::Apply(resources::admin_secret(fm, &token)),
        )
        .await?;
    ctx.tokens.record(&uid, &token);
    Ok(token)
}

fn random_token() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..40)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The predictor pods (from the pod cache), each ready one asked which version it serves.
async fn observe_pods(
    ctx: &Context,
    fm: &ForecastModel,
    listed: &[Arc<Pod>],
) -> Vec<PodObservation> {
    let port = fm.spec.predictor.port;
    let observations = listed
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
            let base_url = ip.map(|ip| {
                if ip.contains(':') {
                    format!("http://[{ip}]:{port}")
                } else {
                    format!("http://{ip}:{port}")
                }
            });
            (p.name_any(), base_url, pod_ready(p))
        })
        .map(|(name, base_url, ready)| async move {
            let version = match (&base_url, ready) {
                (Some(url), true) => ctx
                    .predictors
                    .info(url, ctx.observe_timeout)
                    .await
                    .ok()
                    .map(|i| i.model_version),
                _ => None,
            };
            PodObservation {
                name,
                base_url,
                ready,
                version,
            }
        });
    let mut out = futures::future::join_all(observations).await;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

struct RegistryAnswer {
    desired: Option<String>,
    reachable: ConditionState,
    /// Set when the registry could be reached but gave no version: the `Degraded` reason
    /// and message (a spec, credentials or registry problem).
    problem: Option<(&'static str, String)>,
}

/// The `Degraded` reason for a registry answer that is not a version.
fn problem_reason(e: &mlflow::MlflowError) -> &'static str {
    use mlflow::MlflowError as E;
    match e {
        E::NotFound { .. } => reasons::VERSION_NOT_FOUND,
        E::Unauthorized { .. } => reasons::REGISTRY_UNAUTHORIZED,
        E::Config(_) => reasons::REGISTRY_CREDENTIALS,
        _ => reasons::REGISTRY_ERROR,
    }
}

async fn ask_registry(
    ctx: &Context,
    fm: &ForecastModel,
    selector: &api::forecast_model::Selector,
) -> RegistryAnswer {
    let resolved = ctx.registry.resolve(&ctx.client, fm, selector).await;
    match resolved {
        Ok(v) => RegistryAnswer {
            desired: Some(v.version.clone()),
            reachable: ConditionState::new(
                true,
                reasons::REACHABLE,
                format!("{selector} resolves to version {}", v.version),
            ),
            problem: None,
        },
        Err(e) if e.is_unreachable() => RegistryAnswer {
            desired: None,
            reachable: ConditionState::new(false, reasons::UNREACHABLE, e.to_string()),
            problem: None,
        },
        // The credentials could not be read: the registry was not asked.
        Err(e) if matches!(e.as_ref(), mlflow::MlflowError::Config(_)) => RegistryAnswer {
            desired: None,
            reachable: ConditionState::unknown(
                reasons::NOT_ASKED,
                format!("the registry was not asked: {e}"),
            ),
            problem: Some((problem_reason(&e), e.to_string())),
        },
        Err(e) => RegistryAnswer {
            desired: None,
            reachable: ConditionState::new(true, reasons::REACHABLE, "the registry answered"),
            problem: Some((problem_reason(&e), e.to_string())),
        },
    }
}

pub async fn reconcile(fm: Arc<ForecastModel>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(&fm, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    Metrics::count(
        &ctx.metrics.reconciles,
        if result.is_ok() { "ok" } else { "error" },
    );
    result
}

#[tracing::instrument(skip_all, fields(forecastmodel = %format!("{}/{}", fm.namespace().unwrap_or_default(), fm.name_any())))]
async fn reconcile_inner(fm: &ForecastModel, ctx: &Context) -> Result<Action> {
    let ns = fm
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = fm.name_any();
    let previous = ctx
        .statuses
        .previous(&fm.uid().unwrap_or_default(), fm.status.as_ref());
    let generation = fm.metadata.generation;
    let fms: Api<ForecastModel> = Api::namespaced(ctx.client.clone(), &ns);

    // Specs the schema could not reject are reported, not retried.
    let spec_checks = decide::at_least_a_second("spec.pollInterval", &fm.spec.poll_interval)
        .and_then(|poll| {
            decide::at_least_a_second(
                "spec.rollout.verifyTimeout",
                &fm.spec.rollout.verify_timeout,
            )
            .map(|verify| (poll, verify))
        })
        .and_then(|d| fm.spec.model.selector().map(|s| (d, s)));
    let ((poll, verify_timeout), selector) = match spec_checks {
        Ok(v) => v,
        Err(message) => {
            let mut status = previous.clone();
            status.observed_generation = generation;
            let mut want = BTreeMap::new();
            want.insert(
                condition::READY,
                ConditionState::new(false, reasons::INVALID_SPEC, message.clone()),
            );
            want.insert(
                condition::DEGRADED,
                ConditionState::new(true, reasons::INVALID_SPEC, message.clone()),
            );
            status.conditions = decide::conditions(&previous.conditions, &want, generation, &now());
            // Reported once per change of the spec or of the message.
            if previous != status {
                write_status(ctx, &fms, fm, &status).await?;
                publish(ctx, fm, EventType::Warning, reasons::INVALID_SPEC, message).await;
            }
            return Ok(Action::await_change());
        }
    };

    let listed = ctx.caches.pods_of(fm).await?;
    let token = admin_token(ctx, fm, &ns, &listed).await?;
    let answer = ask_registry(ctx, fm, &selector).await;
    let was_reachable = previous
        .conditions
        .iter()
        .find(|c| c.type_ == condition::REGISTRY_REACHABLE)
        .is_none_or(|c| c.status != "False");
    if !answer.reachable.status && !answer.reachable.unknown && was_reachable {
        publish(
            ctx,
            fm,
            EventType::Warning,
            reasons::REGISTRY_UNREACHABLE,
            format!("keeping the served version; {}", answer.reachable.message),
        )
        .await;
    }

    // The served version lives in the owned ConfigMap; it is created from the first
    // answer of the registry.
    let mut served = served_version(ctx, fm, &ns).await?;
    if served.is_none() {
        let first = match &selector {
            api::forecast_model::Selector::Version(v) => Some(v.clone()),
            _ => answer.desired.clone(),
        };
        // Pausing holds changes, not the first deployment.
        if let Some(v) = first {
            write_served_version(ctx, fm, &ns, &v).await?;
            served = Some(v);
        }
    }

    let restart_marker = match fm.spec.rollout.strategy {
        RolloutStrategy::Restart => served.clone(),
        RolloutStrategy::Reload => None,
    };
    apply_workload(ctx, fm, &ns, restart_marker.as_deref()).await?;

    let pods = observe_pods(ctx, fm, &listed).await;
    let failed_versions = decide::failed_versions_after(
        &previous.failed_versions,
        previous.desired_version.as_deref(),
        answer.desired.as_deref(),
    );
    let observed = Observed {
        paused: fm.spec.paused,
        desired: answer.desired.clone(),
        served: served.clone(),
        failed_versions: failed_versions.clone(),
        pods: pods.clone(),
    };
    let plan = decide::plan(&observed);

    let mut status = ForecastModelStatus {
        observed_generation: generation,
        selector: Some(selector.to_string()),
        served_version: served.clone(),
        desired_version: answer.desired.clone().or(previous.desired_version.clone()),
        previous_version: previous.previous_version.clone(),
        failed_versions,
        last_rollout_duration: previous.last_rollout_duration.clone(),
        ..ForecastModelStatus::default()
    };
    let mut degraded = answer
        .problem
        .as_ref()
        .map(|(reason, message)| ConditionState::new(true, reason, message.clone()));
    let mut progressing = ConditionState::new(false, reasons::IDLE, "no rollout in progress");

    if let Plan::Rollout {
        target,
        from,
        pods: to_roll,
    } = &plan
    {
        let rolled = match fm.spec.rollout.strategy {
            RolloutStrategy::Reload => {
                run_reload_rollout(
                    ctx,
                    fm,
                    &fms,
                    &status,
                    target,
                    from.as_deref(),
                    to_roll,
                    &pods,
                    &token,
                    verify_timeout,
                )
                .await?
            }
            RolloutStrategy::Restart => {
                // Pods restart onto the new ConfigMap value.
                if served.as_deref() != Some(target.as_str()) {
                    write_served_version(ctx, fm, &ns, target).await?;
                }
                apply_workload(ctx, fm, &ns, Some(target)).await?;
                // Later reconciles only watch the pods come up: one event per move.
                if from.as_deref() != Some(target.as_str()) {
                    publish(
                        ctx,
                        fm,
                        EventType::Normal,
                        reasons::ROLLOUT_STARTED,
                        format!("restarting pods onto version {target}"),
                    )
                    .await;
                }
                Ok(Duration::ZERO)
            }
        };
        match rolled {
            Ok(duration) => {
                if from.as_deref() != Some(target.as_str()) {
                    status.previous_version = from.clone();
                }
                status.served_version = Some(target.clone());
                if !duration.is_zero() {
                    status.last_rollout_duration = Some(format!("{:.3}s", duration.as_secs_f64()));
                }
            }
            Err(reason) if from.as_deref() == Some(target.as_str()) => {
                // Bringing stragglers back to the served version failed: not a bad
                // version, a pod problem; retried on the next reconcile.
                degraded = Some(ConditionState::new(true, reasons::CONVERGE_FAILED, reason));
            }
            Err(reason) => {
                if !status.failed_versions.contains(target) {
                    status.failed_versions.push(target.clone());
                }
                degraded = Some(ConditionState::new(true, reasons::ROLLOUT_FAILED, reason));
            }
        }
    }

    // Re-observe after acting, so the status says what pods serve now.
    let pods_now = if matches!(plan, Plan::Rollout { .. }) {
        observe_pods(ctx, fm, &ctx.caches.pods_of(fm).await?).await
    } else {
        pods
    };
    let served_now = status.served_version.clone();
    let ready_pods = pods_now.iter().filter(|p| p.ready).count() as i32;
    let on_served = pods_now
        .iter()
        .filter(|p| p.version.is_some() && p.version == served_now)
        .count() as i32;
    status.replicas = pods_now.len() as i32;
    status.updated_replicas = on_served;
    status.pods = pods_now
        .iter()
        .filter_map(|p| {
            p.version.as_ref().map(|v| PodVersion {
                pod: p.name.clone(),
                version: v.clone(),
            })
        })
        .take(MAX_STATUS_PODS)
        .collect();
    let wanted = fm.spec.predictor.replicas;
    let converged = ready_pods == wanted && on_served == wanted && status.replicas == wanted;
    if !converged {
        progressing = ConditionState::new(
            true,
            reasons::CONVERGING,
            format!(
                "{on_served}/{wanted} pods serve version {}",
                served_now.as_deref().unwrap_or("?")
            ),
        );
    }
    let ready = match (&plan, converged, served_now.as_deref()) {
        (_, true, Some(v)) => ConditionState::new(
            true,
            reasons::SERVING,
            format!("{wanted} pods serve version {v}"),
        ),
        (Plan::Hold(Hold::RegistryUnknown), _, _) if served_now.is_none() => {
            ConditionState::new(false, reasons::NO_VERSION, "no version is known yet")
        }
        _ => ConditionState::new(
            false,
            reasons::PODS_NOT_READY,
            format!("{ready_pods}/{wanted} pods ready, {on_served} on the served version"),
        ),
    };
    let mut want = BTreeMap::new();
    want.insert(condition::READY, ready);
    want.insert(condition::PROGRESSING, progressing);
    want.insert(
        condition::DEGRADED,
        degraded.unwrap_or_else(|| {
            ConditionState::new(
                false,
                reasons::AS_EXPECTED,
                "the last rollout succeeded or none was needed",
            )
        }),
    );
    let registry_ok = answer.reachable.status;
    want.insert(condition::REGISTRY_REACHABLE, answer.reachable);
    status.conditions = decide::conditions(&previous.conditions, &want, generation, &now());
    // A status that says what the last one said is not written again.
    if previous != status {
        write_status(ctx, &fms, fm, &status).await?;
    }

    if let Some(v) = status
        .served_version
        .as_ref()
        .and_then(|v| v.parse::<i64>().ok())
    {
        ctx.metrics
            .served_version
            .get_or_create(&ModelLabel {
                namespace: ns.clone(),
                name: name.clone(),
                model: fm.spec.model.name.clone(),
            })
            .set(v);
    }
    // Changes of owned objects and pods wake the reconcile; only an unreachable registry
    // is asked again sooner than the poll interval.
    let next = if registry_ok {
        poll
    } else {
        let down_since = status
            .conditions
            .iter()
            .find(|c| c.type_ == condition::REGISTRY_REACHABLE)
            .map(|c| c.last_transition_time.0);
        let unreachable_for = down_since
            .and_then(|t| {
                let elapsed = k8s_openapi::jiff::Timestamp::now().duration_since(t);
                Duration::try_from(elapsed).ok()
            })
            .unwrap_or_default();
        decide::registry_retry(unreachable_for, poll)
    };
    Ok(Action::requeue(next))
}

/// Reload strategy: records progress, rolls, then moves the ConfigMap. Ok(duration) on
/// success, Err(reason) after a revert.
#[allow(clippy::too_many_arguments)]
async fn run_reload_rollout(
    ctx: &Context,
    fm: &ForecastModel,
    fms: &Api<ForecastModel>,
    status: &ForecastModelStatus,
    target: &str,
    from: Option<&str>,
    to_roll: &[String],
    pods: &[PodObservation],
    token: &str,
    verify_timeout: Duration,
) -> Result<std::result::Result<Duration, String>> {
    let ns = fm.namespace().unwrap_or_default();
    let started = Instant::now();
    let targets: Vec<PodTarget> = pods
        .iter()
        .filter(|p| to_roll.contains(&p.name))
        .filter_map(|p| {
            p.base_url.clone().map(|base_url| PodTarget {
                name: p.name.clone(),
                base_url,
            })
        })
        .collect();
    if !targets.is_empty() {
        let mut progress = status.clone();
        progress.desired_version = Some(target.to_owned());
        let mut want = BTreeMap::new();
        want.insert(
            condition::PROGRESSING,
            ConditionState::new(
                true,
                reasons::ROLLING_OUT,
                format!("reloading {} pods to version {target}", targets.len()),
            ),
        );
        let previous = ctx
            .statuses
            .previous(&fm.uid().unwrap_or_default(), fm.status.as_ref())
            .conditions;
        let mut merged = previous.clone();
        merged.retain(|c| c.type_ != condition::PROGRESSING);
        merged.extend(decide::conditions(
            &previous,
            &want,
            fm.metadata.generation,
            &now(),
        ));
        progress.conditions = merged;
        write_status(ctx, fms, fm, &progress).await?;
        publish(
            ctx,
            fm,
            EventType::Normal,
            reasons::ROLLOUT_STARTED,
            format!(
                "rolling {} pods from version {} to {target}",
                targets.len(),
                from.unwrap_or("?")
            ),
        )
        .await;
        info!(target, from = ?from, pods = targets.len(), "rollout started");
    }
    let settings = RolloutSettings {
        max_concurrent: fm.spec.rollout.max_concurrent,
        verify_timeout,
        smoke_input: fm.spec.rollout.smoke_input.clone(),
        admin_token: token.to_owned(),
    };
    let mut reloaded_pods = Vec::new();
    let result = rollout::roll(&ctx.predictors, &targets, target, from, &settings, |p| {
        reloaded_pods.push(p.to_owned())
    })
    .await;
    for p in &reloaded_pods {
        publish_related(
            ctx,
            fm,
            EventType::Normal,
            reasons::POD_RELOADED,
            format!("pod {p} serves version {target}"),
            Some(pod_reference(&ns, p)),
        )
        .await;
    }
    match result {
        RolloutResult::Succeeded { .. } => {
            if from != Some(target) {
                write_served_version(ctx, fm, &ns, target).await?;
            }
            let took = started.elapsed();
            if !targets.is_empty() || from != Some(target) {
                ctx.metrics.rollout_duration.observe(took.as_secs_f64());
                Metrics::count(&ctx.metrics.rollouts, "succeeded");
                publish(
                    ctx,
                    fm,
                    EventType::Normal,
                    reasons::ROLLOUT_SUCCEEDED,
                    format!(
                        "every pod serves version {target} (in {:.2}s)",
                        took.as_secs_f64()
                    ),
                )
                .await;
                info!(target, seconds = took.as_secs_f64(), "rollout succeeded");
            }
            Ok(Ok(took))
        }
        RolloutResult::Failed {
            reason,
            reverted,
            revert_errors,
        } => {
            Metrics::count(&ctx.metrics.rollouts, "failed");
            warn!(target, %reason, reverted = ?reverted, "rollout failed");
            publish(
                ctx,
                fm,
                EventType::Warning,
                reasons::ROLLOUT_FAILED,
                format!("version {target}: {reason}"),
            )
            .await;
            let note = if revert_errors.is_empty() {
                format!(
                    "reverted {} pods to version {}",
                    reverted.len(),
                    from.unwrap_or("?")
                )
            } else {
                format!(
                    "reverted {} pods to version {}; could not revert: {}",
                    reverted.len(),
                    from.unwrap_or("?"),
                    revert_errors.join("; ")
                )
            };
            publish(ctx, fm, EventType::Warning, reasons::ROLLED_BACK, note).await;
            Ok(Err(reason))
        }
    }
}

/// The served version: the owned ConfigMap's (from the cache), or what this process
/// wrote there and the cache does not show yet.
async fn served_version(ctx: &Context, fm: &ForecastModel, ns: &str) -> Result<Option<String>> {
    let names = resources::names(fm);
    let cached = ctx
        .caches
        .config_map(ns, &names.config_map)
        .await?
        .and_then(|cm| {
            let version = cm.data.as_ref()?.get(SERVED_VERSION_KEY)?.clone();
            Some((version, cm.metadata.resource_version.clone()?))
        });
    Ok(ctx
        .served
        .current(&fm.uid().unwrap_or_default(), cached)
        .filter(|v| !v.is_empty()))
}

/// Records `version` as the served one in the owned ConfigMap (what pods start on).
async fn write_served_version(
    ctx: &Context,
    fm: &ForecastModel,
    ns: &str,
    version: &str,
) -> Result<()> {
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let written = config_maps
        .patch(
            &resources::names(fm).config_map,
            &apply_params(),
            &Patch::Apply(resources::config_map(fm, version)),
        )
        .await?;
    ctx.served.record(
        &fm.uid().unwrap_or_default(),
        version,
        written.metadata.resource_version.unwrap_or_default(),
    );
    Ok(())
}

/// Server-side applies the Deployment and the Service, each only when the watched object
/// is no longer exactly what the last apply of the same body produced.
async fn apply_workload(
    ctx: &Context,
    fm: &ForecastModel,
    ns: &str,
    restart_marker: Option<&str>,
) -> Result<()> {
    let names = resources::names(fm);
    // What changes when someone else changes the object: a Deployment's generation (its
    // status moves on without it), a Service's resourceVersion.
    apply_unless_unchanged(
        ctx,
        fm,
        ns,
        &names.deployment,
        resources::deployment(fm, restart_marker),
        &ctx.caches.deployments,
        |d: &Deployment| d.metadata.generation.map(|g| g.to_string()),
    )
    .await?;
    apply_unless_unchanged(
        ctx,
        fm,
        ns,
        &names.service,
        resources::service(fm),
        &ctx.caches.services,
        |s: &Service| s.metadata.resource_version.clone(),
    )
    .await
}

/// Server-side applies `body` as `name`, unless the watched copy in `cache` still has the
/// `version` the last apply of the same body produced.
async fn apply_unless_unchanged<K>(
    ctx: &Context,
    fm: &ForecastModel,
    ns: &str,
    name: &str,
    body: serde_json::Value,
    cache: &kube::runtime::reflector::Store<K>,
    version: fn(&K) -> Option<String>,
) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let uid = fm.uid().unwrap_or_default();
    let digest = own_writes::digest(&body);
    let observed = cache
        .get(&ObjectRef::new(name).within(ns))
        .and_then(|o| version(&o));
    if ctx
        .applied
        .unchanged(&uid, K::KIND, digest, observed.as_deref())
    {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let applied = api
        .patch(name, &apply_params(), &Patch::Apply(body))
        .await?;
    if let Some(v) = version(&applied) {
        ctx.applied.record(&uid, K::KIND, digest, v);
    }
    Ok(())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Server-side apply of the whole observed status on the status subresource.
async fn write_status(
    ctx: &Context,
    fms: &Api<ForecastModel>,
    fm: &ForecastModel,
    status: &ForecastModelStatus,
) -> Result<()> {
    let name = fm.name_any();
    let body = json!({
        "apiVersion": "forecast.dev/v1alpha1",
        "kind": "ForecastModel",
        "metadata": {"name": name},
        "status": status,
    });
    fms.patch_status(&name, &apply_params(), &Patch::Apply(body))
        .await?;
    ctx.statuses.record(&fm.uid().unwrap_or_default(), status);
    Ok(())
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
