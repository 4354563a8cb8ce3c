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
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Resource};

use crate::cache;
use crate::context::Context;
use crate::http::{HealthState, WebhookEndpoint, WebhookState, health_routes, webhook_routes};
use crate::leader::{LeaderElector, LeaseConfig};
use crate::memory::{self, Memory};
use crate::metrics::Metrics;
use crate::reconcile::{error_policy, reconcile};
use crate::registry::Registry;
use crate::renewal::Renewal;

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
    /// Seconds after the last renewal by which the leader must have renewed, else it
    /// stops acting (default: two thirds of the lease, 10 of 15).
    #[arg(long, env = "LEADER_ELECTION_RENEW_DEADLINE_SECONDS")]
    pub renew_deadline_seconds: Option<u64>,
    /// `host:port` where the other replicas reach this one's webhook listener (default:
    /// `POD_IP` and the webhook port; else the webhook address when it is not 0.0.0.0).
    #[arg(long, env = "WEBHOOK_ADVERTISE_ADDR")]
    pub webhook_advertise_addr: Option<String>,
    /// This pod's IP (from the downward API).
    #[arg(long, env = "POD_IP")]
    pub pod_ip: Option<String>,
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
    /// Tracking-URI prefixes a ForecastModel may name, comma-separated (default: any
    /// http(s) URI without user-info, query or fragment).
    #[arg(long, env = "ALLOWED_TRACKING_URIS", value_delimiter = ',')]
    pub allowed_tracking_uris: Vec<String>,
    /// Predictor image prefixes a ForecastModel may name, comma-separated (default: any).
    #[arg(long, env = "ALLOWED_PREDICTOR_IMAGES", value_delimiter = ',')]
    pub allowed_predictor_images: Vec<String>,
    /// The proxy URL predictor pods send registry calls through (set on them as
    /// `MLFLOW_PROXY`). Without it they call the registry directly: they ignore
    /// `HTTP(S)_PROXY`, which a ForecastModel's `spec.predictor.env` may not set either.
    #[arg(long, env = "PREDICTOR_REGISTRY_PROXY")]
    pub predictor_registry_proxy: Option<String>,
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
    #[error("{0}")]
    Policy(String),
    #[error("cannot find the cluster (in-cluster config or KUBECONFIG): {0}")]
    ClusterConfig(String),
    #[error(
        "LEADER_ELECTION_RENEW_DEADLINE_SECONDS ({renew}) must be shorter than the lease ({lease})"
    )]
    RenewDeadline { renew: u64, lease: u64 },
    #[error("lost the leader lease")]
    LostLeadership,
    #[error("cannot start the lease renewal thread: {0}")]
    Renewal(std::io::Error),
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
/// Two clients to the same cluster: one for request/response calls, with short read and
/// write timeouts (a hung call cannot stall a reconcile or the lease), and one for watches,
/// whose reads last as long as the watch (kube-rs' default, above the server's watch
/// timeout).
/// The API clients (calls, watches) and the configuration of the calls' one (the lease
/// renewal thread makes its own client from it).
async fn clients() -> Result<(kube::Client, kube::Client, kube::Config), RunError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| RunError::ClusterConfig(e.to_string()))?;
    let mut calls = config.clone();
    calls.connect_timeout = Some(Duration::from_secs(5));
    calls.read_timeout = Some(Duration::from_secs(15));
    calls.write_timeout = Some(Duration::from_secs(15));
    let mut watches = config;
    watches.connect_timeout = Some(Duration::from_secs(5));
    let calls_config = calls.clone();
    let calls = kube::Client::try_from(calls).map_err(RunError::Cluster)?;
    let watches = kube::Client::try_from(watches).map_err(RunError::Cluster)?;
    Ok((calls, watches, calls_config))
}

/// Where the other replicas reach this one's webhook listener.
fn webhook_advertise_address(config: &Config) -> Option<String> {
    if let Some(a) = config
        .webhook_advertise_addr
        .as_ref()
        .filter(|a| !a.is_empty())
    {
        return Some(a.clone());
    }
    let port = config.webhook_addr.port();
    if let Some(ip) = config.pod_ip.as_ref().filter(|ip| !ip.is_empty()) {
        return Some(if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        });
    }
    (!config.webhook_addr.ip().is_unspecified()).then(|| config.webhook_addr.to_string())
}

/// The lease timing, checked: the renew deadline must leave time to stop before another
/// replica may take the lease.
fn lease_timing(config: &Config) -> Result<(Duration, Duration), RunError> {
    let lease = Duration::from_secs(config.lease_seconds.max(2));
    let renew = config
        .renew_deadline_seconds
        .map(Duration::from_secs)
        .unwrap_or_else(|| LeaseConfig::default_renew_deadline(lease));
    if renew >= lease || renew.is_zero() {
        return Err(RunError::RenewDeadline {
            renew: renew.as_secs(),
            lease: lease.as_secs(),
        });
    }
    Ok((lease, renew))
}

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
/// remembered of deleted ForecastModels, and their metrics series.
fn controller(
    config: &Config,
    client: &kube::Client,
    memory: Arc<Memory>,
    metrics: Arc<Metrics>,
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
        // Field managers and kubectl's copy of the last applied spec are never read, and
        // with the status written by apply they are most of a stored object.
        .modify(|fm: &mut ForecastModel| {
            let meta = fm.meta_mut();
            meta.managed_fields = None;
            if let Some(a) = meta.annotations.as_mut() {
                a.remove("kubectl.kubernetes.io/last-applied-configuration");
            }
        })
        .reflect(writer);
    let fm_changes = memory::forget_deleted(fm_events, memory, metrics)
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

/// Drives `run` until a signal or a lost lease; then lets in-flight reconciles finish:
/// 30 s after a signal; after losing the lease nothing new starts (`acting`) and in-flight
/// work gets `after_loss` (what is left before another replica may take the lease).
async fn until_stopped(
    run: impl std::future::Future<Output = ()>,
    renewal: Option<&mut Renewal>,
    stop: tokio::sync::oneshot::Sender<()>,
    acting: &crate::leader::Acting,
    after_loss: Duration,
) -> Stopped {
    let lost = async {
        match renewal {
            Some(r) => r.lost().await,
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
            acting.stop();
            tracing::error!("lost the leader lease; stopping");
            (Stopped::LostLease, after_loss)
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
    let policy = crate::policy::SpecPolicy::new(
        &config.allowed_tracking_uris,
        &config.allowed_predictor_images,
    )
    .map_err(RunError::Policy)?;
    let (lease_duration, renew_deadline) = lease_timing(&config)?;
    let (client, watch_client, api_config) = clients().await?;
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

    let lease = (!config.disable_leader_election).then(|| LeaseConfig {
        name: config.lease_name.clone(),
        namespace: config.lease_namespace.clone(),
        identity: identity.clone(),
        duration: lease_duration,
        renew_deadline,
        webhook_address: webhook_advertise_address(&config),
    });
    let elector = lease
        .clone()
        .map(|lease| Arc::new(LeaderElector::new(client.clone(), lease)));
    // Every replica takes webhook deliveries: a standby relays them to the leader.
    let webhook = web::Data::new(WebhookEndpoint {
        local: Default::default(),
        elector: elector.clone(),
        http: crate::http::relay_client(),
        metrics: metrics.clone(),
    });
    let webhook_data = webhook.clone();
    let webhook_handle = serve_in_background("webhook", config.webhook_addr, move |cfg| {
        cfg.app_data(webhook_data.clone())
            .app_data(web::PayloadConfig::default().limit(1024 * 1024))
            .configure(webhook_routes);
    })?;
    if !become_leader(elector.as_deref(), &identity, &config.lease_name).await {
        webhook_handle.stop(true).await;
        health_handle.stop(true).await;
        return Ok(());
    }
    metrics.leader.set(1);
    // Renewals from here on run on their own thread, runtime and client.
    let mut renewal = match lease {
        Some(lease) => Some(Renewal::start(api_config, lease).map_err(RunError::Renewal)?),
        None => None,
    };

    // Owned Deployments, Services, ConfigMaps and pods: watched once, read by reconciles
    // from the caches, and changes reconcile their ForecastModel.
    let (caches, subscriptions, watches) =
        cache::start(&watch_client, watched_namespace(&config)).map_err(RunError::Watches)?;
    tokio::spawn(watches);
    tokio::spawn(crate::memory::release_freed_memory_periodically());
    let (trigger, triggers) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let memory = Arc::new(Memory::default());
    let controller = controller(
        &config,
        &watch_client,
        memory.clone(),
        metrics.clone(),
        subscriptions,
        triggers,
        stop_rx,
    );
    let registry = Arc::new(Registry::new(config.registry_answer_ttl, metrics.clone()));
    let local = webhook.local.set(WebhookState {
        registry: registry.clone(),
        client: client.clone(),
        store: controller.store(),
        trigger,
        secret: config.webhook_secret.clone().filter(|s| !s.is_empty()),
        allow_unsigned: config.webhook_allow_unsigned,
        deliveries: Default::default(),
        secrets: Default::default(),
        metrics: metrics.clone(),
    });
    debug_assert!(local.is_ok(), "the webhook state is set once");

    let mut ctx = Context::new(client, metrics.clone(), registry, caches, memory, identity);
    ctx.policy = policy;
    ctx.predictor_registry_proxy = config
        .predictor_registry_proxy
        .clone()
        .filter(|p| !p.is_empty());
    let acting = ctx.acting.clone();
    let ctx = Arc::new(ctx);
    let run = controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile");
            }
        });
    // After a lost lease: what is left before another replica may take it, less a second.
    let after_loss = lease_duration.saturating_sub(renew_deadline + Duration::from_secs(1));
    let stopped = until_stopped(run, renewal.as_mut(), stop_tx, &acting, after_loss).await;
    metrics.leader.set(0);
    if let Some(renewal) = renewal {
        renewal.stop().await;
    }
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
