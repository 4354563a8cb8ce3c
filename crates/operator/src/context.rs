use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};

use crate::cache::Caches;
use crate::metrics::Metrics;
use crate::own_writes::{AdminTokens, AppliedObjects, OwnStatuses, ServedVersions};
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
    /// Applies already made (skipped while their result is unchanged).
    pub applied: AppliedObjects,
    pub tokens: AdminTokens,
    /// Served versions written and not yet seen in the ConfigMap cache.
    pub served: ServedVersions,
    /// Statuses written and maybe not yet seen in the ForecastModel cache.
    pub statuses: OwnStatuses,
}

impl Context {
    pub fn new(
        client: kube::Client,
        metrics: Arc<Metrics>,
        registry: Arc<crate::registry::Registry>,
        caches: Caches,
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
            applied: Default::default(),
            tokens: Default::default(),
            served: Default::default(),
            statuses: Default::default(),
        }
    }
}
