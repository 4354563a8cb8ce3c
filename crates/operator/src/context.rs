//! The `Context` every reconcile shares: clients, caches, metrics and the memory.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};

use crate::cache::Caches;
use crate::memory::Memory;
use crate::metrics::Metrics;
use crate::policy::SpecPolicy;
use crate::predictor_client::PredictorClient;

/// Shared by every reconcile.
pub struct Context {
    pub client: kube::Client,
    pub predictors: PredictorClient,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Timeout of `/model/info` calls while observing pods.
    pub observe_timeout: Duration,
    pub registry: Arc<crate::registry::Registry>,
    /// Watched Deployments, Services and pods the operator owns.
    pub caches: Caches,
    /// What this process remembers, one record per ForecastModel.
    pub memory: Arc<Memory>,
    /// What a ForecastModel may point at (`ALLOWED_TRACKING_URIS`,
    /// `ALLOWED_PREDICTOR_IMAGES`); allows any valid tracking URI unless set.
    pub policy: SpecPolicy,
    /// The proxy predictor pods send registry calls through (`PREDICTOR_REGISTRY_PROXY`,
    /// given to them as `MLFLOW_PROXY`); without it they call the registry directly.
    pub predictor_registry_proxy: Option<String>,
    /// ReplicaSets already checked on the way from a pod to its Deployment.
    pub replica_set_owners: crate::pod_ownership::ReplicaSetOwners,
    /// Cleared when leadership is lost: nothing new is started after that.
    pub acting: crate::leader::Acting,
}

impl Context {
    pub fn new(
        client: kube::Client,
        metrics: Arc<Metrics>,
        registry: Arc<crate::registry::Registry>,
        caches: Caches,
        memory: Arc<Memory>,
        instance: String,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30)) // < the predictor's 75 s keep-alive
            .build()
            .unwrap_or_default();
        let reporter = Reporter {
            controller: "forecast-operator".into(),
            instance: Some(instance),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            predictors: PredictorClient::new(http),
            metrics,
            observe_timeout: Duration::from_secs(3),
            registry,
            caches,
            memory,
            policy: SpecPolicy::default(),
            predictor_registry_proxy: None,
            replica_set_owners: Default::default(),
            acting: Default::default(),
        }
    }
}
