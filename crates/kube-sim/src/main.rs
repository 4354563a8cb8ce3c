use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// A Kubernetes API simulator for tests (kube-rs and kubectl accept it).
#[derive(Debug, Parser)]
#[command(name = "kube-sim", version)]
struct Args {
    /// Address to serve on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to write the kubeconfig once serving.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Run pods whose image is IMAGE (exactly, or by name without registry and tag) as
    /// this local binary. Repeatable.
    #[arg(long = "run", value_name = "IMAGE=BINARY")]
    run: Vec<String>,
    /// Pods' working directories and logs.
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Watch events kept for resuming watches.
    #[arg(long, default_value_t = 20_000)]
    history: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = kube_sim::SimConfig {
        listen: args.listen,
        kubeconfig: Some(args.kubeconfig.clone()),
        images: kube_sim::sim::parse_image_mappings(&args.run)?,
        history_limit: args.history,
        workdir: args.workdir.clone(),
        ..kube_sim::SimConfig::default()
    };
    let sim = kube_sim::start(config).await.context("starting kube-sim")?;
    println!(
        "kube-sim serving on {} (kubeconfig {})",
        sim.url,
        sim.kubeconfig.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("kube-sim: stopping");
    sim.stop().await;
    Ok(())
}
