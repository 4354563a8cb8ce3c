//! `forecastctl wait`: waits until a ForecastModel is `Current` or `Failed` by kstatus'
//! rules (`api::kstatus`, what Flux waits on) — what a CI step calls after `kubectl apply`.
//! Exits 0 when current, 1 when failed (with the reason and message), 2 at the timeout.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use api::forecast_model::ForecastModel;
use api::kstatus::{Kstatus, kstatus};
use kube::Api;

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// The ForecastModel's name.
    #[arg(long)]
    pub name: String,
    /// Its namespace (default: the kubeconfig context's).
    #[arg(long)]
    pub namespace: Option<String>,
    /// How long to wait, e.g. `90s`, `10m`.
    #[arg(long, default_value = "10m", value_parser = api::duration::parse_duration)]
    pub timeout: Duration,
}

/// kstatus' reading, except that a ForecastModel the operator has not reported on yet is
/// in progress (kstatus would call it current: it has no conditions to read).
fn judge(fm: &ForecastModel) -> Kstatus {
    if fm
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .is_none()
    {
        return Kstatus::InProgress {
            reason: "NotObserved".into(),
            message: "waiting for the operator to report on it".into(),
        };
    }
    kstatus(fm)
}

pub async fn run(args: &WaitArgs) -> anyhow::Result<ExitCode> {
    let client = kube::Client::try_default()
        .await
        .context("no cluster to ask: set KUBECONFIG or run in a pod")?;
    let api: Api<ForecastModel> = match &args.namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::default_namespaced(client),
    };
    let deadline = Instant::now() + args.timeout;
    let mut last: Option<Kstatus> = None;
    loop {
        let state = match api
            .get_opt(&args.name)
            .await
            .with_context(|| format!("reading ForecastModel {}", args.name))?
        {
            Some(fm) => judge(&fm),
            None => Kstatus::InProgress {
                reason: "NotFound".into(),
                message: "no such ForecastModel yet".into(),
            },
        };
        if last.as_ref() != Some(&state) {
            match &state {
                Kstatus::Current => {
                    println!("{}: Current", args.name);
                    return Ok(ExitCode::SUCCESS);
                }
                Kstatus::Failed { reason, message } => {
                    println!("{}: Failed: {reason}: {message}", args.name);
                    return Ok(ExitCode::from(1));
                }
                Kstatus::InProgress { reason, message } => {
                    println!("{}: InProgress: {reason}: {message}", args.name);
                }
            }
            last = Some(state);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            eprintln!(
                "forecastctl: {} is still in progress after {:?}",
                args.name, args.timeout
            );
            return Ok(ExitCode::from(2));
        }
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
}
