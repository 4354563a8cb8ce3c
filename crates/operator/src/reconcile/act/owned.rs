//! Act on the owned objects: the admin-token Secret, the served-version ConfigMap, the
//! predictor Deployment and Service, each by server-side apply with one field manager.

use std::sync::Arc;

use api::forecast_model::{ForecastModel, RolloutStrategy, Selector};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::memory::digest;
use crate::reconcile::observe::{Observation, ValidSpec, pod_ready};
use crate::resources::{self, FIELD_MANAGER};

/// What the owned objects hold after this step.
#[derive(Debug, Clone)]
pub struct Owned {
    /// The admin token the pods accept on `/reload-model`.
    pub admin_token: String,
    /// The served version (the ConfigMap is created from the registry's first answer).
    pub served: Option<String>,
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Makes sure the owned objects exist and are as the spec says.
pub async fn ensure(
    ctx: &Context,
    fm: &ForecastModel,
    spec: &ValidSpec,
    observed: &Observation,
) -> Result<Owned> {
    let admin_token = admin_token(ctx, fm, &observed.namespace, &observed.listed).await?;
    let mut served = observed.served.clone();
    if served.is_none() {
        // Pausing holds changes, not the first deployment.
        let first = match &spec.selector {
            Selector::Version(v) => Some(v.clone()),
            _ => observed.registry.desired.clone(),
        };
        if let Some(v) = first {
            write_served_version(ctx, fm, &v).await?;
            served = Some(v);
        }
    }
    let restart_marker = match fm.spec.rollout.strategy {
        RolloutStrategy::Restart => served.as_deref(),
        RolloutStrategy::Reload => None,
    };
    apply_workload(
        ctx,
        fm,
        restart_marker,
        observed.credentials_secret.as_deref(),
    )
    .await?;
    Ok(Owned {
        admin_token,
        served,
    })
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
    let all_ready = pods.len() >= usize::try_from(fm.spec.predictor.replicas).unwrap_or(0)
        && pods.iter().all(|p| pod_ready(p));
    if let Some(token) = ctx.memory.fresh_admin_token(fm).filter(|_| all_ready) {
        return Ok(token);
    }
    tracing::debug!(
        all_ready,
        pods = pods.len(),
        ready = pods.iter().filter(|p| pod_ready(p)).count(),
        "reading the admin token's Secret"
    );
    let names = resources::names(fm);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    if let Some(existing) = secrets.get_opt(&names.secret).await? {
        if !resources::controlled_by(&existing.metadata, fm) {
            return Err(Error::OwnershipConflict {
                kind: "Secret",
                name: names.secret,
            });
        }
        let token = crate::secrets::secret_value(&existing, resources::ADMIN_TOKEN_KEY);
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            ctx.memory.record_admin_token(fm, &t);
            return Ok(t);
        }
    }
    let token = ctx.memory.last_admin_token(fm).unwrap_or_else(random_token);
    secrets
        .patch(
            &names.secret,
            &apply_params(),
            &Patch::Apply(resources::admin_secret(fm, &token)),
        )
        .await?;
    ctx.memory.record_admin_token(fm, &token);
    Ok(token)
}

/// Refuses to write over an object of that name that this ForecastModel does not control
/// (someone else's Deployment that happens to be called `<name>-predictor`). `cached` is
/// the watched copy when there is one; otherwise the API is asked.
async fn ensure_ours<K>(
    ctx: &Context,
    fm: &ForecastModel,
    ns: &str,
    name: &str,
    cached: Option<Arc<K>>,
) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    if let Some(c) = &cached
        && resources::controlled_by(c.meta(), fm)
    {
        return Ok(());
    }
    let existing = Api::<K>::namespaced(ctx.client.clone(), ns)
        .get_opt(name)
        .await?;
    match existing {
        Some(o) if !resources::controlled_by(o.meta(), fm) => Err(Error::OwnershipConflict {
            kind: <K as k8s_openapi::Resource>::KIND,
            name: name.to_owned(),
        }),
        _ => Ok(()),
    }
}

fn random_token() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..40)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Records `version` as the served one in the owned ConfigMap (what pods start on).
pub async fn write_served_version(ctx: &Context, fm: &ForecastModel, version: &str) -> Result<()> {
    let config_map = resources::config_map(fm, version);
    let ns = config_map.metadata.namespace.clone().unwrap_or_default();
    let name = resources::names(fm).config_map;
    let cached = ctx
        .caches
        .config_maps
        .get(&ObjectRef::new(&name).within(&ns));
    ensure_ours::<ConfigMap>(ctx, fm, &ns, &name, cached).await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let written = config_maps
        .patch(
            &resources::names(fm).config_map,
            &apply_params(),
            &Patch::Apply(&config_map),
        )
        .await?;
    ctx.memory.record_served(
        fm,
        version,
        written.metadata.resource_version.unwrap_or_default(),
    );
    Ok(())
}

/// Server-side applies the Deployment and the Service, each only when the watched object
/// is no longer exactly what the last apply of the same body produced.
pub async fn apply_workload(
    ctx: &Context,
    fm: &ForecastModel,
    restart_marker: Option<&str>,
    credentials_secret: Option<&str>,
) -> Result<()> {
    // What changes when someone else changes the object: a Deployment's generation (its
    // status moves on without it), a Service's resourceVersion.
    apply_unless_unchanged(
        ctx,
        fm,
        resources::deployment(
            fm,
            restart_marker,
            credentials_secret,
            ctx.predictor_registry_proxy.as_deref(),
        ),
        &ctx.caches.deployments,
        |d: &Deployment| d.metadata.generation.map(|g| g.to_string()),
    )
    .await?;
    apply_unless_unchanged(
        ctx,
        fm,
        resources::service(fm),
        &ctx.caches.services,
        |s: &Service| s.metadata.resource_version.clone(),
    )
    .await
}

/// Server-side applies `object`, unless the watched copy in `cache` still has the
/// `version` the last apply of the same body produced.
async fn apply_unless_unchanged<K>(
    ctx: &Context,
    fm: &ForecastModel,
    object: K,
    cache: &Store<K>,
    version: fn(&K) -> Option<String>,
) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let ns = object.meta().namespace.clone().unwrap_or_default();
    let digest = digest(&serde_json::to_value(&object)?);
    let cached = cache.get(&ObjectRef::new(&name).within(&ns));
    let observed = cached.as_ref().and_then(|o| version(o));
    if ctx.memory.applied_unchanged(
        fm,
        <K as k8s_openapi::Resource>::KIND,
        digest,
        observed.as_deref(),
    ) {
        return Ok(());
    }
    tracing::debug!(
        kind = <K as k8s_openapi::Resource>::KIND,
        observed,
        "applying: not what the last apply of this body produced"
    );
    ensure_ours(ctx, fm, &ns, &name, cached).await?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let applied = api
        .patch(&name, &apply_params(), &Patch::Apply(&object))
        .await?;
    if let Some(v) = version(&applied) {
        ctx.memory
            .record_applied(fm, <K as k8s_openapi::Resource>::KIND, digest, v);
    }
    Ok(())
}
