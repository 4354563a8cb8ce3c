use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};

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
    pub registries: crate::registry::RegistryClients,
}

impl Context {
    pub fn new(client: kube::Client, metrics: Arc<Metrics>, instance: String) -> Self {
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
            registries: Default::default(),
        }
    }
}
