//! `node-agent`: the test kubelet (see `kube_sim::node_agent`) as a process, pointed at
//! any API server by `KUBECONFIG`. `cargo xtask cluster up` starts one inside the
//! cluster's network namespace.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "node-agent", version)]
struct Args {
    /// The Node to register.
    #[arg(long, default_value = "node-1")]
    node_name: String,
    /// The node's InternalIP (the pods' hostIP).
    #[arg(long, default_value = "10.244.0.1")]
    node_ip: Ipv4Addr,
    /// The first pod address (each pod gets the next one).
    #[arg(long, default_value = "10.244.1.2")]
    first_pod_ip: Ipv4Addr,
    /// Run containers whose image is IMAGE (exactly, or by name without registry and tag)
    /// as this local binary. Repeatable.
    #[arg(long = "run", value_name = "IMAGE=BINARY")]
    run: Vec<String>,
    /// Pods' working directories and logs.
    #[arg(long)]
    workdir: PathBuf,
    /// Run pods whose image maps to no binary as simulated containers (running and
    /// ready, no process) instead of leaving them Pending with ErrImagePull: for
    /// benchmarks of thousands of pods.
    #[arg(long)]
    simulate_unknown_images: bool,
    /// The node's pod capacity (the scheduler places no more); its CPUs and memory grow
    /// with it (8 CPUs and 16 GiB per 110 pods).
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    kube_sim::install_crypto_provider();
    let args = Args::parse();
    let config = kube_sim::node_agent::NodeAgentConfig {
        node_name: args.node_name,
        node_ip: args.node_ip,
        first_pod_ip: args.first_pod_ip,
        images: kube_sim::sim::parse_image_mappings(&args.run)?,
        workdir: args.workdir,
        resync: Duration::from_millis(500),
        max_pods: args.max_pods,
        unknown_images: if args.simulate_unknown_images {
            kube_sim::node_agent::UnknownImages::Simulated
        } else {
            kube_sim::node_agent::UnknownImages::PullFails
        },
    };
    let client = kube::Client::try_default()
        .await
        .context("connecting to the API server (KUBECONFIG)")?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    kube_sim::node_agent::run(client, config, shutdown).await?;
    Ok(())
}
