//! The operator process, wired as `controller-rs` does it: the configuration, then
//! `run()`: health and metrics server, leader election, the watched caches, the
//! `Controller` with its triggers, the webhook server, and a clean stop on a signal or on
//! losing the lease. `main.rs` only parses the configuration and sets up logging.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use api::forecast_model::ForecastModel;
use clap::Parser;
use futures::StreamExt;
use kube::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, predicates, reflector, watcher};

use crate::cache;
use crate::context::Context;
use crate::http::{HealthState, WebhookState, health_routes, webhook_routes};
use crate::leader::{LeaderElector, LeaseConfig};
use crate::memory::{self, Memory};
use crate::metrics::Metrics;
use crate::reconcile::{error_policy, reconcile};
use crate::registry::Registry;

/// The ForecastModel operator. Finds its cluster as kube-rs does (in-cluster, else
/// KUBECONFIG).
#[derive(Debug, Parser)]
#[command(name = "forecast-operator", version)]
pub struct Config {
    /// Address of /metrics, /health and /ready.
    #[arg(long, env = "OPERATOR_METRICS_ADDR", default_value = "0.0.0.0:8081")]
    pub metrics_addr: SocketAddr,
    /// Address of POST /webhooks/mlflow.
    #[arg(long, env = "OPERATOR_WEBHOOK_ADDR", default_value = "0.0.0.0:8082")]
    pub webhook_addr: SocketAddr,
    /// Secret that signs MLflow webhook deliveries (unset: ForecastModels' own secrets;
    /// with no secret at all deliveries are refused unless WEBHOOK_ALLOW_UNSIGNED).
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Accept unsigned webhook deliveries when no secret is configured (refused by default).
    #[arg(long, env = "WEBHOOK_ALLOW_UNSIGNED")]
    pub webhook_allow_unsigned: bool,
    /// Only watch this namespace (default: all).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Lease used for leader election.
    #[arg(
        long,
        env = "LEADER_ELECTION_LEASE",
        default_value = "forecast-operator-leader"
    )]
    pub lease_name: String,
    /// Namespace of the lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the lease (default: hostname and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a leader may go without renewing before another replica takes over.
    #[arg(long, env = "LEADER_ELECTION_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u64,
    /// Run without leader election (a single replica).
    #[arg(long, env = "DISABLE_LEADER_ELECTION")]
    pub disable_leader_election: bool,
    /// ForecastModels reconciled at once (the rest wait in the queue).
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = 16)]
    pub max_concurrent_reconciles: u16,
    /// How long one MLflow answer (model, selector, registry) is shared by every
    /// ForecastModel asking the same question; a webhook delivery for the model ends it
    /// early. `0s` still shares answers in flight.
    #[arg(long, env = "REGISTRY_ANSWER_TTL", default_value = "1s", value_parser = api::forecast_model::parse_duration)]
    pub registry_answer_ttl: Duration,
    /// `json` or `text`.
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    pub log_format: String,
}

/// Why the operator process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot reach the cluster (in-cluster config or KUBECONFIG): {0}")]
    Cluster(#[source] kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch the owned objects: {0}")]
    Watches(#[source] crate::error::Error),
    #[error("lost the leader lease")]
    LostLeadership,
}

/// A one-worker HTTP server run in the background (the process handles signals itself).
fn serve_in_background(
    what: &'static str,
    addr: SocketAddr,
    configure: impl Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
) -> Result<actix_web::dev::ServerHandle, RunError> {
    let server = HttpServer::new(move || App::new().configure(configure.clone()))
        .workers(1)
        .disable_signals()
        .bind(addr)
        .map_err(|source| RunError::Listen { addr, source })?;
    for a in server.addrs() {
        tracing::info!(address = %a, server = what, "listening");
    }
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(handle)
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// This replica's identity in the Lease: `POD_NAME`, else hostname and pid.
fn identity(config: &Config) -> String {
    config.identity.clone().unwrap_or_else(|| {
        let host =
            std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "forecast-operator".into());
        format!("{}-{}", host.trim(), std::process::id())
    })
}

/// Waits for the lease (no elector: at once). False when a signal came first.
async fn become_leader(elector: Option<&LeaderElector>, identity: &str, lease: &str) -> bool {
    let Some(e) = elector else {
        return true;
    };
    tracing::info!(identity, lease, "waiting to become the leader");
    tokio::select! {
        _ = e.acquire() => {}
        _ = shutdown_signal() => return false,
    }
    tracing::info!(identity, "became the leader");
    true
}

/// The ForecastModel controller: reconciles on spec changes (not on its own status
/// writes), on changes of owned objects and pods, and on webhook triggers; forgets what it
/// remembered of deleted ForecastModels.
fn controller(
    config: &Config,
    client: &kube::Client,
    memory: Arc<Memory>,
    subscriptions: cache::Subscriptions,
    triggers: tokio::sync::mpsc::UnboundedReceiver<ObjectRef<ForecastModel>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Controller<ForecastModel> {
    let fms: Api<ForecastModel> = match watched_namespace(config) {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (reader, writer) = reflector::store();
    let fm_events = watcher(fms, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer);
    let fm_changes = memory::forget_deleted(fm_events, memory)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let trigger_stream = futures::stream::unfold(triggers, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });
    Controller::for_stream(fm_changes, reader)
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(config.max_concurrent_reconciles.max(1)),
        )
        .owns_shared_stream(subscriptions.deployments)
        .owns_shared_stream(subscriptions.services)
        .owns_shared_stream(subscriptions.config_maps)
        .watches_shared_stream(subscriptions.pods, cache::pod_owner)
        .reconcile_on(trigger_stream)
        .graceful_shutdown_on(async move {
            let _ = stop.await;
        })
}

fn watched_namespace(config: &Config) -> Option<&str> {
    config
        .watch_namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
}

/// Why the controller stopped.
enum Stopped {
    Signal,
    LostLease,
    Ended,
}

/// Drives `run` until a signal or a lost lease; then lets in-flight reconciles finish
/// (30 s after a signal, 10 s after losing the lease: the next leader is waiting).
async fn until_stopped(
    run: impl std::future::Future<Output = ()>,
    elector: Option<&LeaderElector>,
    stop: tokio::sync::oneshot::Sender<()>,
) -> Stopped {
    let lost = async {
        match elector {
            Some(e) => e.hold().await,
            None => futures::future::pending::<()>().await,
        }
    };
    tokio::pin!(run);
    let (stopped, grace) = tokio::select! {
        _ = &mut run => return Stopped::Ended,
        _ = shutdown_signal() => {
            tracing::info!("shutting down: finishing in-flight reconciles");
            (Stopped::Signal, Duration::from_secs(30))
        }
        _ = lost => {
            tracing::error!("lost the leader lease; stopping");
            (Stopped::LostLease, Duration::from_secs(10))
        }
    };
    let _ = stop.send(());
    let _ = tokio::time::timeout(grace, &mut run).await;
    stopped
}

/// Runs the operator until a signal (Ok) or until leadership is lost (an error, so the
/// process exits and its replacement waits for the lease).
pub async fn run(config: Config) -> Result<(), RunError> {
    mlflow::install_crypto_provider();
    let client = kube::Client::try_default()
        .await
        .map_err(RunError::Cluster)?;
    let identity = identity(&config);
    let metrics = Arc::new(Metrics::default());
    let health = web::Data::new(HealthState {
        metrics: metrics.clone(),
        ready: Default::default(),
    });
    let health_data = health.clone();
    let health_handle =
        serve_in_background("metrics and health", config.metrics_addr, move |cfg| {
            cfg.app_data(health_data.clone()).configure(health_routes);
        })?;
    health.ready.store(true, Ordering::Relaxed);

    let elector = (!config.disable_leader_election).then(|| {
        let lease = LeaseConfig {
            name: config.lease_name.clone(),
            namespace: config.lease_namespace.clone(),
            identity: identity.clone(),
            duration: Duration::from_secs(config.lease_seconds.max(2)),
        };
        LeaderElector::new(client.clone(), lease)
    });
    if !become_leader(elector.as_ref(), &identity, &config.lease_name).await {
        health_handle.stop(true).await;
        return Ok(());
    }
    metrics.leader.set(1);

    // Owned Deployments, Services, ConfigMaps and pods: watched once, read by reconciles
    // from the caches, and changes reconcile their ForecastModel.
    let (caches, subscriptions, watches) =
        cache::start(&client, watched_namespace(&config)).map_err(RunError::Watches)?;
    tokio::spawn(watches);
    let (trigger, triggers) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let memory = Arc::new(Memory::default());
    let controller = controller(
        &config,
        &client,
        memory.clone(),
        subscriptions,
        triggers,
        stop_rx,
    );
    let registry = Arc::new(Registry::new(config.registry_answer_ttl, metrics.clone()));
    let webhook_data = web::Data::new(WebhookState {
        registry: registry.clone(),
        client: client.clone(),
        store: controller.store(),
        trigger,
        secret: config.webhook_secret.clone().filter(|s| !s.is_empty()),
        allow_unsigned: config.webhook_allow_unsigned,
        deliveries: Default::default(),
        metrics: metrics.clone(),
    });
    let webhook_handle = serve_in_background("webhook", config.webhook_addr, move |cfg| {
        cfg.app_data(webhook_data.clone())
            .app_data(web::PayloadConfig::default().limit(1024 * 1024))
            .configure(webhook_routes);
    })?;

    let ctx = Arc::new(Context::new(
        client,
        metrics.clone(),
        registry,
        caches,
        memory,
        identity,
    ));
    let run = controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile");
            }
        });
    let stopped = until_stopped(run, elector.as_ref(), stop_tx).await;
    metrics.leader.set(0);
    if let Some(e) = &elector {
        e.release().await;
    }
    webhook_handle.stop(true).await;
    health_handle.stop(true).await;
    match stopped {
        Stopped::LostLease => Err(RunError::LostLeadership),
        Stopped::Signal | Stopped::Ended => Ok(()),
    }
}
