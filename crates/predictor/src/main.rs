use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context;
use clap::Parser;
use mlflow::{ClientConfig, MlflowClient, Proxy, credentials_from};
use predictor::config::Config;
use predictor::loader::Loader;
use predictor::state::AppState;

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "text" {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing(&config.log_format);
    mlflow::install_crypto_provider();

    let registry = match config.tracking_uri.as_deref().filter(|u| !u.is_empty()) {
        Some(uri) => {
            let credentials = credentials_from(
                config.tracking_token.clone(),
                config.tracking_username.clone(),
                config.tracking_password.clone(),
            )?;
            let proxy = match config.registry_proxy.as_deref().filter(|p| !p.is_empty()) {
                Some(url) => Proxy::Url(url.to_owned()),
                None => Proxy::Direct,
            };
            Some(
                MlflowClient::new(ClientConfig {
                    max_artifact_bytes: config.model_max_bytes,
                    proxy,
                    ..ClientConfig::new(uri).with_credentials(credentials)
                })
                .context("MLFLOW_TRACKING_URI")?,
            )
        }
        None => None,
    };
    let loader = Loader {
        registry,
        model_name: config.model_name.clone(),
        fallback_dir: config.fallback_dir.clone(),
        cache_versions: config.cache_versions,
        max_model_bytes: config.model_max_bytes as u64,
        drift: predictor::drift::DriftSettings {
            window: config.drift_window,
            baseline_rows: config.drift_baseline_rows,
        },
    };
    let mut state = AppState::new(
        loader,
        config.selector(),
        config.admin_token.clone(),
        config.max_instances,
    );
    // Bound to one address (the operator binds pods to their pod IP): the operator's
    // signed admin calls must be addressed to it.
    state.own_address = (!config.bind_addr.is_unspecified()).then(|| config.bind_addr.to_string());
    state.compute = predictor::compute::Compute::per_core(Duration::from_millis(
        config.predict_timeout_ms.max(1),
    ));
    state.ui = config.ui;
    let state = Arc::new(state);
    tracing::info!(
        model = %config.model_name,
        selector = %state.selector,
        registry = config.tracking_uri.as_deref().unwrap_or("(none)"),
        fallback_dir = ?config.fallback_dir,
        "starting forecast-predictor"
    );
    let retry = Duration::from_secs(config.retry_seconds.max(1));
    actix_web::rt::spawn(state.clone().return_to_registry(retry));
    if state.load_initial().await.is_err() {
        tracing::warn!(
            retry_seconds = config.retry_seconds,
            "serving without a model (/ready answers 503) and retrying"
        );
        actix_web::rt::spawn(state.clone().load_initial_until_served(retry));
    }

    let data = web::Data::from(state);
    let max_body = config.max_body_bytes;
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(middleware::from_fn(predictor::metrics::track_latency))
            .configure(predictor::configure_app(data.clone(), max_body))
    })
    // Longer than the operator's and common clients' pool idle timeouts, so a client never
    // reuses a connection the server is just closing.
    .keep_alive(Duration::from_secs(75))
    .shutdown_timeout(10);
    if let Some(workers) = config.workers {
        server = server.workers(workers.max(1));
    }
    let addr = (config.bind_addr, config.port);
    let server = server
        .bind(addr)
        .with_context(|| format!("cannot listen on {}:{}", config.bind_addr, config.port))?;
    for a in server.addrs() {
        tracing::info!(address = %a, "listening");
    }
    server.run().await.context("HTTP server")
}
