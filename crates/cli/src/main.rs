//! `forecastctl`: train the archive-forecast model, register it in MLflow, promote a
//! version (alias or stage), show a registered model's status, and inspect a model as the
//! predictor would load it; wait for a ForecastModel as Flux would; and show every
//! ForecastModel live in a local web page (`dashboard`).

mod dashboard;
mod inspect;
mod promote;
mod register;
mod status;
mod train;
mod wait;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mlflow::{ClientConfig, MlflowClient};

#[derive(Debug, Parser)]
#[command(name = "forecastctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct RegistryArgs {
    /// MLflow tracking server URL.
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    tracking_uri: String,
}

impl RegistryArgs {
    fn client(&self) -> anyhow::Result<MlflowClient> {
        let credentials = ClientConfig::credentials_from_env()?;
        MlflowClient::new(ClientConfig::new(&self.tracking_uri).with_credentials(credentials))
            .context("--tracking-uri / MLFLOW_TRACKING_URI")
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train the archive-forecast random forest and write an MLflow model directory.
    Train(train::TrainArgs),
    /// Log a model directory to MLflow as a run and create a registered-model version.
    Register {
        #[command(flatten)]
        registry: RegistryArgs,
        #[command(flatten)]
        args: register::RegisterArgs,
    },
    /// Point an alias at a version, or move a version to a stage.
    Promote {
        #[command(flatten)]
        registry: RegistryArgs,
        #[command(flatten)]
        args: promote::PromoteArgs,
    },
    /// Print the ForecastModel CustomResourceDefinition (YAML, generated from the types).
    Crd,
    /// Load a model as the predictor would (a local directory or a registered version)
    /// and print its flavor, estimator, trees, features and one prediction.
    Inspect {
        /// MLflow tracking server URL (for --name/--version).
        #[arg(long, env = "MLFLOW_TRACKING_URI")]
        tracking_uri: Option<String>,
        #[command(flatten)]
        args: inspect::InspectArgs,
    },
    /// Wait until a ForecastModel is Current (exit 0) or Failed (exit 1) by kstatus' rules,
    /// as Flux would judge it; exit 2 at the timeout.
    Wait(wait::WaitArgs),
    /// A local web page of every ForecastModel you can read: rollouts, canaries, shadows,
    /// pods, traffic and events, live (served on 127.0.0.1 with your kubeconfig).
    Dashboard(dashboard::DashboardArgs),
    /// Show a registered model's aliases, stages and versions.
    Status {
        #[command(flatten)]
        registry: RegistryArgs,
        #[command(flatten)]
        args: status::StatusArgs,
    },
}

/// The CRD as checked in under `crds/forecastmodel.yaml`.
fn api_crd_yaml() -> anyhow::Result<String> {
    use kube::CustomResourceExt;
    let yaml = serde_yaml::to_string(&api::forecast_model::ForecastModel::crd())?;
    Ok(format!(
        "# Generated from crates/api by `forecastctl crd`; do not edit by hand.\n{yaml}"
    ))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let done = match cli.command {
        Command::Wait(args) => return wait::run(&args).await,
        Command::Dashboard(args) => tokio::task::spawn_blocking(move || dashboard::run(args))
            .await
            .map_err(|e| anyhow::anyhow!("the dashboard stopped: {e}"))
            .and_then(|done| done),
        Command::Train(args) => train::run(&args),
        Command::Crd => {
            print!("{}", api_crd_yaml()?);
            Ok(())
        }
        Command::Register { registry, args } => register::run(&registry.client()?, &args).await,
        Command::Promote { registry, args } => promote::run(&registry.client()?, &args).await,
        Command::Status { registry, args } => status::run(&registry.client()?, &args).await,
        Command::Inspect { tracking_uri, args } => {
            let client = match (&tracking_uri, args.needs_registry()) {
                (Some(uri), true) => Some(
                    RegistryArgs {
                        tracking_uri: uri.clone(),
                    }
                    .client()?,
                ),
                (None, true) => anyhow::bail!(
                    "--name/--version need the registry: set --tracking-uri or MLFLOW_TRACKING_URI"
                ),
                _ => None,
            };
            inspect::run(client.as_ref(), &args).await
        }
    };
    done.map(|()| ExitCode::SUCCESS)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    mlflow::install_crypto_provider();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("forecastctl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
