//! Observe: the spec checked, the registry's answer, the served version in the owned
//! ConfigMap, and the predictor pods with the version each says it serves. Reads only.

use std::sync::Arc;
use std::time::Duration;

use api::forecast_model::{
    ForecastModel, ForecastModelStatus, RolloutStrategy, Selector, SpecDuration,
};
use api::reasons;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{Api, ResourceExt};
use mlflow::{Credentials, MlflowError};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::policy::SpecPolicy;
use crate::reconcile::conditions::{ConditionState, ConditionStatus};
use crate::reconcile::plan::PodObservation;
use crate::registry::Answer;
use crate::resources::{self, SERVED_VERSION_KEY};

/// A spec the reconcile can act on: what the schema could not check, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSpec {
    pub poll: Duration,
    pub verify_timeout: Duration,
    pub selector: Selector,
    /// `spec.rollout.canary`, read.
    pub canary: Option<crate::reconcile::canary::Canary>,
    /// `spec.model.shadow`'s selector.
    pub shadow: Option<Selector>,
    /// `spec.monitoring.drift`, checked.
    pub drift: Option<api::forecast_model::DriftSpec>,
}

/// Checks what the schema cannot: durations, the selector, the tracking URI and the image
/// against the operator's policy. The error says which field.
pub fn spec(fm: &ForecastModel, policy: &SpecPolicy) -> Result<ValidSpec, String> {
    policy.check_tracking_uri(&fm.spec.registry.tracking_uri)?;
    policy.check_image(&fm.spec.predictor.image)?;
    if let Some(env) = fm
        .spec
        .predictor
        .env
        .iter()
        .find(|e| resources::RESERVED_ENV.contains(&e.name.as_str()))
    {
        return Err(format!(
            "spec.predictor.env: {} is set by the operator and cannot be overridden",
            env.name
        ));
    }
    let canary = match &fm.spec.rollout.canary {
        Some(_) if fm.spec.rollout.strategy == RolloutStrategy::Restart => {
            return Err(
                "spec.rollout.canary needs strategy Reload (a canary is judged on pods that switch in place)"
                    .into(),
            );
        }
        Some(c) => Some(crate::reconcile::canary::Canary::read(c)?),
        None => None,
    };
    let shadow = match &fm.spec.model.shadow {
        Some(s) => Some(s.selector()?),
        None => None,
    };
    let drift = fm.spec.monitoring.as_ref().and_then(|m| m.drift.clone());
    if let Some(d) = &drift
        && (!d.max_psi.is_finite() || d.max_psi < 0.0 || d.min_rows == 0)
    {
        return Err(format!(
            "spec.monitoring.drift: maxPsi {} must be a number of at least 0 and minRows {} at least 1",
            d.max_psi, d.min_rows
        ));
    }
    Ok(ValidSpec {
        canary,
        shadow,
        drift,
        poll: at_least_a_second("spec.pollInterval", &fm.spec.poll_interval)?,
        verify_timeout: at_least_a_second(
            "spec.rollout.verifyTimeout",
            &fm.spec.rollout.verify_timeout,
        )?,
        selector: fm.spec.model.selector()?,
    })
}

/// A spec duration that must be at least a second (a shorter poll interval or verify
/// timeout would spin); the error names the field.
fn at_least_a_second(field: &str, value: &SpecDuration) -> Result<Duration, String> {
    let d = value.value().map_err(|e| format!("{field}: {e}"))?;
    if d < Duration::from_secs(1) {
        return Err(format!(
            "{field}: {:?} is shorter than the minimum of 1s",
            value.as_str()
        ));
    }
    Ok(d)
}

/// What the registry said about the selector, as conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryAnswer {
    /// The version the selector points at.
    pub desired: Option<String>,
    /// `RegistryReachable`.
    pub reachable: ConditionState,
    /// A `Degraded` state when the registry was reached (or not asked) but gave no
    /// version: a spec, credentials or registry problem.
    pub problem: Option<ConditionState>,
}

/// The `Degraded` reason for a registry answer that is not a version.
fn problem_reason(e: &MlflowError) -> &'static str {
    match e {
        MlflowError::NotFound { .. } => reasons::VERSION_NOT_FOUND,
        MlflowError::Unauthorized { .. } => reasons::REGISTRY_UNAUTHORIZED,
        MlflowError::Config(_) => reasons::REGISTRY_CREDENTIALS,
        _ => reasons::REGISTRY_ERROR,
    }
}

/// Reads a registry's answer (or why there is none) as conditions.
pub fn registry_answer(selector: &Selector, answer: &Answer) -> RegistryAnswer {
    match answer {
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
        Err(e) if matches!(e.as_ref(), MlflowError::Config(_)) => RegistryAnswer {
            desired: None,
            reachable: ConditionState::new(
                ConditionStatus::Unknown,
                reasons::NOT_ASKED,
                format!("the registry was not asked: {e}"),
            ),
            problem: Some(ConditionState::new(true, problem_reason(e), e.to_string())),
        },
        Err(e) => RegistryAnswer {
            desired: None,
            reachable: ConditionState::new(true, reasons::REACHABLE, "the registry answered"),
            problem: Some(ConditionState::new(true, problem_reason(e), e.to_string())),
        },
    }
}

/// Everything a reconcile looked at before acting.
#[derive(Debug, Clone)]
pub struct Observation {
    pub namespace: String,
    /// The status to start from (see `Memory::previous_status`).
    pub previous: ForecastModelStatus,
    pub registry: RegistryAnswer,
    /// The owned ConfigMap's served version.
    pub served: Option<String>,
    /// The `credentialsSecret`, when it exists and is labelled for registry credentials
    /// (only then do the pods get its keys).
    pub credentials_secret: Option<String>,
    /// The predictor pods from the pod cache whose owner chain leads to the Deployment.
    pub listed: Vec<Arc<Pod>>,
    /// The same pods, each ready one asked which version it serves.
    pub pods: Vec<PodObservation>,
    /// The shadow selector's version, or the registry's error (None: no shadow in the spec).
    pub shadow: Option<Result<String, String>>,
}

pub async fn observe(ctx: &Context, fm: &ForecastModel, spec: &ValidSpec) -> Result<Observation> {
    let namespace = fm
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let m = &ctx.metrics;
    let listed = m.timed("own_pods", own_pods(ctx, fm)).await?;
    let creds = m.timed("credentials", credentials(ctx, fm)).await;
    let credentials_secret = match &creds {
        Ok(_) => fm.spec.registry.credentials_secret.clone(),
        Err(_) => None,
    };
    let shadow_creds = match (&spec.shadow, &creds) {
        (Some(_), Ok(c)) => Ok(c.clone()),
        (_, Err(e)) => Err(MlflowError::Config(e.to_string())),
        (None, Ok(_)) => Ok(Credentials::None),
    };
    let ask_shadow = async {
        match &spec.shadow {
            Some(selector) => Some(
                ask_registry(ctx, fm, shadow_creds, selector)
                    .await
                    .map(|v| v.version)
                    .map_err(|e| e.to_string()),
            ),
            None => None,
        }
    };
    let (answer, pods, shadow) = futures::join!(
        m.timed("registry", ask_registry(ctx, fm, creds, &spec.selector)),
        m.timed("pods_asked", pods(ctx, fm, &listed)),
        ask_shadow
    );
    Ok(Observation {
        shadow,
        credentials_secret,
        previous: ctx.memory.previous_status(fm),
        registry: registry_answer(&spec.selector, &answer),
        served: m
            .timed("served_version", served_version(ctx, fm, &namespace))
            .await?,
        namespace,
        listed,
        pods,
    })
}

async fn ask_registry(
    ctx: &Context,
    fm: &ForecastModel,
    creds: Result<Credentials, MlflowError>,
    selector: &Selector,
) -> Answer {
    let creds = creds.map_err(Arc::new)?;
    let registry = &fm.spec.registry;
    ctx.registry
        .resolve(&registry.tracking_uri, creds, &fm.spec.model.name, selector)
        .await
}

/// Registry credentials from the `credentialsSecret` (`token`, or `username`+`password`),
/// re-read at most every 30 s.
async fn credentials(ctx: &Context, fm: &ForecastModel) -> Result<Credentials, MlflowError> {
    let Some(name) = &fm.spec.registry.credentials_secret else {
        return Ok(Credentials::None);
    };
    if let Some(creds) = ctx.memory.credentials(fm, name) {
        return Ok(creds);
    }
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &fm.namespace().unwrap_or_default());
    let secret = secrets
        .get(name)
        .await
        .map_err(|e| MlflowError::Config(format!("credentialsSecret {name}: {e}")))?;
    crate::secrets::check_type(&secret, crate::secrets::REGISTRY_CREDENTIALS)
        .map_err(|e| MlflowError::Config(format!("credentialsSecret {name}: {e}")))?;
    let value = |key: &str| crate::secrets::secret_value(&secret, key);
    let creds = mlflow::credentials_from(value("token"), value("username"), value("password"))?;
    ctx.memory.record_credentials(fm, name, &creds);
    Ok(creds)
}

/// The ForecastModel's predictor pods from the pod cache: those with its labels whose
/// owner chain leads to its Deployment (the only pods ever called).
pub async fn own_pods(ctx: &Context, fm: &ForecastModel) -> Result<Vec<Arc<Pod>>> {
    crate::pod_ownership::ours(ctx, fm, ctx.caches.pods_of(fm).await?).await
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `http://<podIP>:<port>` of a pod that has an IP.
fn base_url(pod: &Pod, port: i32) -> Option<String> {
    let ip = pod.status.as_ref()?.pod_ip.as_ref()?;
    Some(if ip.contains(':') {
        format!("http://[{ip}]:{port}")
    } else {
        format!("http://{ip}:{port}")
    })
}

/// The listed pods, each ready one asked which version it serves, by name.
pub async fn pods(ctx: &Context, fm: &ForecastModel, listed: &[Arc<Pod>]) -> Vec<PodObservation> {
    let port = fm.spec.predictor.port;
    let observations = listed
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| async move {
            let base_url = base_url(p, port);
            let ready = pod_ready(p);
            let info = match (&base_url, ready) {
                (Some(url), true) => ctx.predictors.info(url, ctx.observe_timeout).await.ok(),
                _ => None,
            };
            let shadow = info
                .as_ref()
                .and_then(|i| i.shadow.as_ref().map(|s| s.version.clone()));
            PodObservation {
                name: p.name_any(),
                base_url,
                ready,
                version: info.map(|i| i.model_version),
                shadow,
                restart_marker: p.annotations().get(resources::RESTART_ANNOTATION).cloned(),
                created: p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            }
        });
    let mut out = futures::future::join_all(observations).await;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Each named pod's `/metrics`, read (pods that do not answer are left out).
pub async fn pod_metrics(
    ctx: &Context,
    pods: &[&PodObservation],
) -> Vec<(String, crate::pod_metrics::PodMetrics)> {
    let reads = pods.iter().filter_map(|p| {
        let url = p.base_url.clone()?;
        Some(async move {
            let text = ctx.predictors.metrics(&url, ctx.observe_timeout).await;
            match text {
                Ok(text) => Some((p.name.clone(), crate::pod_metrics::parse(&text))),
                Err(e) => {
                    tracing::debug!(pod = %p.name, error = %e, "no metrics from the pod");
                    None
                }
            }
        })
    });
    futures::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Pods' `/metrics`, each read at most once per reconcile: the shadow comparison and the
/// drift judgement both need them, after the rollout step.
#[derive(Default)]
pub struct MetricsReads {
    read: tokio::sync::Mutex<
        std::collections::HashMap<String, Option<crate::pod_metrics::PodMetrics>>,
    >,
}

impl MetricsReads {
    /// [`pod_metrics`] of `pods`, reading only the pods not read before.
    pub async fn of(
        &self,
        ctx: &Context,
        pods: &[&PodObservation],
    ) -> Vec<(String, crate::pod_metrics::PodMetrics)> {
        let mut read = self.read.lock().await;
        let missing: Vec<&PodObservation> = pods
            .iter()
            .filter(|p| !read.contains_key(&p.name))
            .copied()
            .collect();
        let fresh = pod_metrics(ctx, &missing).await;
        for p in &missing {
            read.insert(p.name.clone(), None);
        }
        for (name, metrics) in fresh {
            read.insert(name, Some(metrics));
        }
        pods.iter()
            .filter_map(|p| {
                let metrics = read.get(&p.name)?.clone()?;
                Some((p.name.clone(), metrics))
            })
            .collect()
    }
}

/// Each ready pod's drift figures for `version` (pods that do not answer, or have none
/// for it, are left out).
pub async fn pod_drift(
    ctx: &Context,
    reads: &MetricsReads,
    pods: &[PodObservation],
    version: &str,
) -> Vec<crate::pod_metrics::PodDrift> {
    let serving: Vec<&PodObservation> = pods
        .iter()
        .filter(|p| p.ready && p.version.as_deref() == Some(version))
        .collect();
    reads
        .of(ctx, &serving)
        .await
        .into_iter()
        .filter_map(|(_, mut m)| m.drift.remove(version))
        .collect()
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
    Ok(ctx.memory.served(fm, cached).filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlflow::ModelVersion;

    #[test]
    fn spec_durations_shorter_than_a_second_are_refused_by_name() {
        let d = SpecDuration::parse;
        assert_eq!(
            at_least_a_second("spec.pollInterval", &d("2m")),
            Ok(Duration::from_secs(120))
        );
        let e = at_least_a_second("spec.pollInterval", &d("0s")).unwrap_err();
        assert!(
            e.contains("spec.pollInterval") && e.contains("minimum of 1s"),
            "{e}"
        );
        assert!(at_least_a_second("spec.rollout.verifyTimeout", &d("500ms")).is_err());
        let e = at_least_a_second("spec.pollInterval", &d("99999999999999999999s")).unwrap_err();
        assert!(e.starts_with("spec.pollInterval: "), "{e}");
    }

    #[test]
    fn a_canary_or_shadow_the_schema_lets_through_is_refused_by_field() {
        let fm = |extra: serde_json::Value| {
            let mut spec = serde_json::json!({
                "registry": {"trackingUri": "http://mlflow:5000"},
                "model": {"name": "m", "alias": "champion"},
            });
            for (k, v) in extra.as_object().unwrap() {
                spec[k] = v.clone();
            }
            ForecastModel::new("daily", serde_json::from_value(spec).unwrap())
        };
        let check = |extra| spec(&fm(extra), &SpecPolicy::default());
        let ok = check(serde_json::json!({"rollout": {"canary": {"pods": "50%"}}})).unwrap();
        assert!(ok.canary.is_some());
        for (extra, field) in [
            (
                serde_json::json!({"rollout": {"strategy": "Restart", "canary": {}}}),
                "spec.rollout.canary needs strategy Reload",
            ),
            (
                serde_json::json!({"rollout": {"canary": {"pods": "half"}}}),
                "spec.rollout.canary.pods",
            ),
            (
                serde_json::json!({"rollout": {"canary": {"bake": "10m", "maxBake": "1m"}}}),
                "spec.rollout.canary.maxBake",
            ),
            (
                serde_json::json!({"model": {"name": "m", "alias": "a", "shadow": {}}}),
                "spec.model.shadow needs one of",
            ),
        ] {
            let e = check(extra.clone()).unwrap_err();
            assert!(e.starts_with(field), "{extra}: {e}");
        }
    }

    #[test]
    fn each_registry_answer_reads_as_its_conditions() {
        let alias = Selector::Alias("champion".into());
        let found: Answer = Ok(ModelVersion {
            version: "4".into(),
            ..Default::default()
        });
        let a = registry_answer(&alias, &found);
        assert_eq!(a.desired.as_deref(), Some("4"));
        assert_eq!(a.reachable.reason, reasons::REACHABLE);
        assert!(a.problem.is_none());

        let missing: Answer = Err(Arc::new(MlflowError::Config("no token".into())));
        let a = registry_answer(&alias, &missing);
        assert_eq!(a.reachable.status, ConditionStatus::Unknown);
        assert_eq!(a.reachable.reason, reasons::NOT_ASKED);
        assert_eq!(
            a.problem.map(|p| p.reason),
            Some(reasons::REGISTRY_CREDENTIALS)
        );
    }
}
