//! Watched caches of the objects the operator owns, so a reconcile reads them without
//! calling the API server, and server-side applies are skipped when the object is still
//! what the operator last applied.
//!
//! Each kind has one watch (label `app.kubernetes.io/managed-by=forecast-operator`) that
//! fills a reflector store and is shared with the controller, which reconciles the owner
//! when one of these objects changes.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::forecast_model::{ForecastModel, ForecastModelStatus};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodStatus, Service};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::resources::INSTANCE_LABEL;

/// Label every owned object carries.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=forecast-operator";
/// Events a slow subscriber may fall behind before the watch waits for it.
const SUBSCRIBER_BUFFER: usize = 1024;
/// How long a reconcile waits for the first list of a cache.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Read-only views of the watched objects.
#[derive(Clone)]
pub struct Caches {
    pub deployments: Store<Deployment>,
    pub services: Store<Service>,
    pub config_maps: Store<ConfigMap>,
    pub pods: Store<Pod>,
}

/// Change notifications for the controller (one per cache).
pub struct Subscriptions {
    pub deployments: ReflectHandle<Deployment>,
    pub services: ReflectHandle<Service>,
    pub config_maps: ReflectHandle<ConfigMap>,
    pub pods: ReflectHandle<Pod>,
}

fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) if !ns.is_empty() => Api::namespaced(client.clone(), ns),
        _ => Api::all(client.clone()),
    }
}

type Watch<K> = (
    Store<K>,
    ReflectHandle<K>,
    futures::future::BoxFuture<'static, ()>,
);

/// One watch feeding a store and a subscription; the returned future drives it.
fn watch<K>(api: Api<K>, slim: fn(&mut K)) -> Result<Watch<K>>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store_shared(SUBSCRIBER_BUFFER);
    let subscription = writer
        .subscribe()
        .ok_or(Error::CacheNotReady("a shared store without subscriptions"))?;
    let kind = K::kind(&()).into_owned();
    let driven = watcher(api, watcher::Config::default().labels(MANAGED_SELECTOR))
        .default_backoff()
        // Only what reconciles read is kept (memory with thousands of models).
        .modify(move |o: &mut K| {
            let meta = o.meta_mut();
            meta.managed_fields = None;
            meta.annotations = None;
            slim(o);
        })
        .reflect_shared(writer)
        .for_each(move |event| {
            if let Err(e) = event {
                tracing::warn!(kind = %kind, error = %e, "watch failed; retrying");
            }
            futures::future::ready(())
        })
        .boxed();
    Ok((store, subscription, driven))
}

/// Starts the watches; the future runs them until dropped.
pub fn start(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<(
    Caches,
    Subscriptions,
    impl std::future::Future<Output = ()> + Send + 'static,
)> {
    // Deployments and Services: their generation / resourceVersion is what is compared.
    let (deployments, deployment_events, d) = watch::<Deployment>(api(client, namespace), |o| {
        o.spec = Default::default();
        o.status = Default::default();
    })?;
    let (services, service_events, s) = watch::<Service>(api(client, namespace), |o| {
        o.spec = Default::default();
        o.status = Default::default();
    })?;
    let (config_maps, config_map_events, c) =
        watch::<ConfigMap>(api(client, namespace), |o| o.binary_data = None)?;
    // Pods: readiness, IP and labels.
    let (pods, pod_events, p) = watch::<Pod>(api(client, namespace), |o| {
        o.spec = Default::default();
        o.status = o.status.take().map(|s| PodStatus {
            pod_ip: s.pod_ip,
            conditions: s.conditions,
            ..PodStatus::default()
        });
    })?;
    let run = async move {
        futures::join!(d, s, c, p);
    };
    Ok((
        Caches {
            deployments,
            services,
            config_maps,
            pods,
        },
        Subscriptions {
            deployments: deployment_events,
            services: service_events,
            config_maps: config_map_events,
            pods: pod_events,
        },
        run,
    ))
}

/// The ForecastModel a predictor pod belongs to (by its instance label).
pub fn pod_owner(pod: Arc<Pod>) -> Option<ObjectRef<ForecastModel>> {
    let name = pod.labels().get(INSTANCE_LABEL)?;
    Some(ObjectRef::new(name).within(&pod.namespace()?))
}

async fn filled<K>(store: &Store<K>, kind: &'static str) -> Result<()>
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    tokio::time::timeout(READY_TIMEOUT, store.wait_until_ready())
        .await
        .map_err(|_| Error::CacheNotReady(kind))?
        .map_err(|_| Error::CacheNotReady(kind))
}

impl Caches {
    /// The owned ConfigMap `name` in `ns`, once the ConfigMap cache is filled.
    pub async fn config_map(&self, ns: &str, name: &str) -> Result<Option<Arc<ConfigMap>>> {
        filled(&self.config_maps, "configmaps").await?;
        Ok(self.config_maps.get(&ObjectRef::new(name).within(ns)))
    }

    /// The predictor pods of `fm` (by its selector labels), once the pod cache is filled.
    pub async fn pods_of(&self, fm: &ForecastModel) -> Result<Vec<Arc<Pod>>> {
        filled(&self.pods, "pods").await?;
        let ns = fm.namespace();
        let name = fm.name_any();
        Ok(self
            .pods
            .state()
            .into_iter()
            .filter(|p| {
                p.namespace() == ns
                    && p.labels().get(INSTANCE_LABEL) == Some(&name)
                    && p.labels().get("app.kubernetes.io/name").map(String::as_str)
                        == Some("forecast-predictor")
            })
            .collect())
    }
}

/// What the operator last applied to one object: a digest of the applied body and the
/// object's `metadata.generation` (Deployments) or `resourceVersion` (others) right after.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Applied {
    digest: u64,
    version: String,
}

/// A digest of an apply body (stable within one operator build).
pub fn digest(body: &Value) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.to_string().hash(&mut h);
    h.finish()
}

/// The applies this process made, to skip repeating one whose result is unchanged.
#[derive(Default)]
pub struct AppliedObjects {
    applied: Mutex<HashMap<(String, &'static str), Applied>>,
}

impl AppliedObjects {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, &'static str), Applied>> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when `observed` is still exactly what applying `digest` produced.
    pub fn unchanged(
        &self,
        owner_uid: &str,
        kind: &'static str,
        digest: u64,
        observed: Option<&str>,
    ) -> bool {
        let Some(observed) = observed else {
            return false;
        };
        self.lock()
            .get(&(owner_uid.to_owned(), kind))
            .is_some_and(|a| a.digest == digest && a.version == observed)
    }

    pub fn record(&self, owner_uid: &str, kind: &'static str, digest: u64, version: String) {
        self.lock()
            .insert((owner_uid.to_owned(), kind), Applied { digest, version });
    }

    /// Keeps only the records of these ForecastModels (the others are gone).
    pub fn retain_owners(&self, owners: &std::collections::HashSet<String>) {
        self.lock().retain(|(uid, _), _| owners.contains(uid));
    }
}

/// How long a remembered admin token is used before its Secret is looked at again.
const TOKEN_RECHECK: Duration = Duration::from_secs(300);

/// The admin token of each ForecastModel (by uid), as this process last saw or wrote it.
#[derive(Default)]
pub struct AdminTokens {
    tokens: Mutex<HashMap<String, (std::time::Instant, String)>>,
}

impl AdminTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (std::time::Instant, String)>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token, when its Secret was seen less than five minutes ago.
    pub fn fresh(&self, owner_uid: &str) -> Option<String> {
        self.lock()
            .get(owner_uid)
            .filter(|(at, _)| at.elapsed() < TOKEN_RECHECK)
            .map(|(_, t)| t.clone())
    }

    /// The last token known, however old (the one running pods were started with).
    pub fn last(&self, owner_uid: &str) -> Option<String> {
        self.lock().get(owner_uid).map(|(_, t)| t.clone())
    }

    pub fn record(&self, owner_uid: &str, token: &str) {
        self.lock().insert(
            owner_uid.to_owned(),
            (std::time::Instant::now(), token.to_owned()),
        );
    }

    /// Keeps only the tokens of these ForecastModels.
    pub fn retain_owners(&self, owners: &std::collections::HashSet<String>) {
        self.lock().retain(|uid, _| owners.contains(uid));
    }
}

/// How long this process trusts its own ConfigMap write over an older cached copy.
const OWN_WRITE_WINDOW: Duration = Duration::from_secs(10);

/// The served versions this process wrote, so a reconcile that runs before the watch has
/// delivered the write does not read the previous value from the cache.
#[derive(Default)]
pub struct ServedVersions {
    written: Mutex<HashMap<String, (std::time::Instant, String, String)>>,
}

impl ServedVersions {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (std::time::Instant, String, String)>> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a write of `version` that produced `resource_version`.
    pub fn record(&self, owner_uid: &str, version: &str, resource_version: String) {
        self.lock().insert(
            owner_uid.to_owned(),
            (
                std::time::Instant::now(),
                version.to_owned(),
                resource_version,
            ),
        );
    }

    /// The served version: the cached ConfigMap's (`cached`: version and resourceVersion),
    /// unless this process wrote a newer one the cache has not shown yet.
    pub fn current(&self, owner_uid: &str, cached: Option<(String, String)>) -> Option<String> {
        let mut written = self.lock();
        if let Some((at, version, rv)) = written.get(owner_uid) {
            let seen = cached
                .as_ref()
                .is_some_and(|(_, cached_rv)| cached_rv == rv);
            if !seen && at.elapsed() < OWN_WRITE_WINDOW {
                return Some(version.clone());
            }
            written.remove(owner_uid);
        }
        cached.map(|(version, _)| version)
    }
}

/// How long this process's own status write is preferred over the watched ForecastModel.
const OWN_STATUS_WINDOW: Duration = Duration::from_secs(30);

/// The status this process last wrote for each ForecastModel. The status subresource is
/// written only by the operator, so a reconcile that runs before the watch has delivered
/// the last write (an owned object's change can wake it at once) starts from this one
/// instead of a stale copy and loses nothing (previousVersion, failedVersions).
#[derive(Default)]
pub struct OwnStatuses {
    written: Mutex<HashMap<String, (std::time::Instant, ForecastModelStatus)>>,
}

impl OwnStatuses {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (std::time::Instant, ForecastModelStatus)>> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, owner_uid: &str, status: &ForecastModelStatus) {
        self.lock().insert(
            owner_uid.to_owned(),
            (std::time::Instant::now(), status.clone()),
        );
    }

    /// The status to start from: this process's recent write, else the watched one.
    pub fn previous(
        &self,
        owner_uid: &str,
        watched: Option<&ForecastModelStatus>,
    ) -> ForecastModelStatus {
        let mut written = self.lock();
        match written.get(owner_uid) {
            Some((at, status)) if at.elapsed() < OWN_STATUS_WINDOW => status.clone(),
            Some(_) => {
                written.remove(owner_uid);
                watched.cloned().unwrap_or_default()
            }
            None => watched.cloned().unwrap_or_default(),
        }
    }

    /// Keeps only the statuses of these ForecastModels.
    pub fn retain_owners(&self, owners: &std::collections::HashSet<String>) {
        self.lock().retain(|uid, _| owners.contains(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_apply_is_skipped_only_while_the_object_is_what_it_produced() {
        let applied = AppliedObjects::default();
        let body = json!({"spec": {"replicas": 3}});
        let d = digest(&body);
        assert!(!applied.unchanged("uid", "Deployment", d, Some("1")));
        applied.record("uid", "Deployment", d, "1".into());
        assert!(applied.unchanged("uid", "Deployment", d, Some("1")));
        // Someone changed the object (its generation moved on).
        assert!(!applied.unchanged("uid", "Deployment", d, Some("2")));
        // The desired body changed.
        let other = digest(&json!({"spec": {"replicas": 4}}));
        assert!(!applied.unchanged("uid", "Deployment", other, Some("1")));
        // The object is not in the cache (deleted, or not seen yet).
        assert!(!applied.unchanged("uid", "Deployment", d, None));
        applied.retain_owners(&Default::default());
        assert!(!applied.unchanged("uid", "Deployment", d, Some("1")));
    }

    #[test]
    fn an_own_write_wins_until_the_cache_shows_it() {
        let served = ServedVersions::default();
        let cached = |v: &str, rv: &str| Some((v.to_owned(), rv.to_owned()));
        assert_eq!(served.current("uid", cached("1", "10")), Some("1".into()));
        served.record("uid", "2", "11".into());
        // The watch has not delivered the write yet.
        assert_eq!(served.current("uid", cached("1", "10")), Some("2".into()));
        assert_eq!(served.current("uid", None), Some("2".into()));
        // Delivered: from now on the cache is the truth (also for later edits by others).
        assert_eq!(served.current("uid", cached("2", "11")), Some("2".into()));
        assert_eq!(served.current("uid", cached("3", "12")), Some("3".into()));
    }

    #[test]
    fn the_own_status_write_is_the_starting_point_until_it_is_old() {
        let own = OwnStatuses::default();
        let stale = ForecastModelStatus {
            served_version: Some("1".into()),
            ..Default::default()
        };
        assert_eq!(own.previous("uid", Some(&stale)), stale);
        let written = ForecastModelStatus {
            served_version: Some("2".into()),
            previous_version: Some("1".into()),
            ..Default::default()
        };
        own.record("uid", &written);
        assert_eq!(own.previous("uid", Some(&stale)), written);
        assert_eq!(own.previous("other", None), ForecastModelStatus::default());
        own.retain_owners(&Default::default());
        assert_eq!(own.previous("uid", Some(&stale)), stale);
    }

    #[test]
    fn digests_follow_the_body() {
        assert_eq!(
            digest(&json!({"a": 1, "b": 2})),
            digest(&json!({"b": 2, "a": 1}))
        );
        assert_ne!(digest(&json!({"a": 1})), digest(&json!({"a": 2})));
    }
}
