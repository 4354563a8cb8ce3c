//! The `Context` every reconcile shares: clients, caches, metrics and the memory.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};

use crate::cache::Caches;
use crate::memory::Memory;
use crate::metrics::Metrics;
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
        }
    }
}
