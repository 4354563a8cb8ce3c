//! Watched caches of the objects the operator owns, so a reconcile reads them without
//! calling the API server (what it wrote itself is in `own_writes`).
//!
//! Each kind has one watch (label `app.kubernetes.io/managed-by=forecast-operator`) that
//! fills a reflector store and is shared with the controller, which reconciles the owner
//! when one of these objects changes.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use api::forecast_model::ForecastModel;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodCondition, PodStatus, Service};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::pod_index::{PodIndex, instance_of};
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
    /// The pods of `pods` by ForecastModel.
    pub pod_index: Arc<PodIndex>,
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

/// One watch feeding a store and a subscription, each event then shown to `follow`; the
/// returned future drives it.
fn watch<K>(
    api: Api<K>,
    slim: fn(&mut K),
    follow: impl Fn(&watcher::Event<K>) + Send + 'static,
) -> Result<Watch<K>>
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
            // Only the restart marker is read (pods of a `Restart` rollout).
            if let Some(a) = meta.annotations.as_mut() {
                a.retain(|k, _| k == crate::resources::RESTART_ANNOTATION);
            }
            if meta.annotations.as_ref().is_some_and(|a| a.is_empty()) {
                meta.annotations = None;
            }
            slim(o);
        })
        .reflect_shared(writer)
        .for_each(move |event| {
            match event {
                Ok(event) => follow(&event),
                Err(e) => tracing::warn!(kind = %kind, error = %e, "watch failed; retrying"),
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
    let (deployments, deployment_events, d) = watch::<Deployment>(
        api(client, namespace),
        |o| {
            o.spec = Default::default();
            o.status = Default::default();
        },
        |_| (),
    )?;
    let (services, service_events, s) = watch::<Service>(
        api(client, namespace),
        |o| {
            o.spec = Default::default();
            o.status = Default::default();
        },
        |_| (),
    )?;
    let (config_maps, config_map_events, c) =
        watch::<ConfigMap>(api(client, namespace), |o| o.binary_data = None, |_| ())?;
    // Pods: readiness, IP and labels; indexed by ForecastModel.
    let pod_index = Arc::new(PodIndex::default());
    let follow = pod_index.clone();
    let (pods, pod_events, p) = watch::<Pod>(
        api(client, namespace),
        |o| {
            o.spec = Default::default();
            // Of the conditions only Ready's status is read.
            o.status = o.status.take().map(|s| PodStatus {
                pod_ip: s.pod_ip,
                conditions: s.conditions.map(|c| {
                    c.into_iter()
                        .filter(|c| c.type_ == "Ready")
                        .map(|c| PodCondition {
                            type_: c.type_,
                            status: c.status,
                            ..PodCondition::default()
                        })
                        .collect()
                }),
                ..PodStatus::default()
            });
        },
        move |event| follow.observe(event),
    )?;
    let run = async move {
        futures::join!(d, s, c, p);
    };
    Ok((
        Caches {
            deployments,
            services,
            config_maps,
            pods,
            pod_index,
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

    /// The Deployment `name` in `ns`, once the Deployment cache is filled.
    pub async fn deployment(&self, ns: &str, name: &str) -> Result<Option<Arc<Deployment>>> {
        filled(&self.deployments, "deployments").await?;
        Ok(self.deployments.get(&ObjectRef::new(name).within(ns)))
    }

    /// The predictor pods of `fm` (by its selector labels), once the pod cache is filled:
    /// the index's names, each looked up in the cache.
    pub async fn pods_of(&self, fm: &ForecastModel) -> Result<Vec<Arc<Pod>>> {
        filled(&self.pods, "pods").await?;
        let ns = fm.namespace().unwrap_or_default();
        let name = fm.name_any();
        Ok(self
            .pod_index
            .names(&ns, &name)
            .into_iter()
            .filter_map(|pod| self.pods.get(&ObjectRef::new(&pod).within(&ns)))
            // The cache may be a step ahead of the index.
            .filter(|p| instance_of(p) == Some(&name))
            .collect())
    }
}
