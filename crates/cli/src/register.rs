use std::path::PathBuf;

use anyhow::Context;
use mlflow::MlflowClient;

use crate::train::{TRAINING_FILE, TrainingRecord};

#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    /// The MLflow model directory to log (as written by `forecastctl train`).
    #[arg(long)]
    model_dir: PathBuf,
    /// Registered model name.
    #[arg(long, default_value = api::predictor::DEFAULT_MODEL_NAME)]
    name: String,
    /// Point this alias at the new version.
    #[arg(long)]
    alias: Option<String>,
    /// Move the new version to this stage (archiving the versions already in it).
    #[arg(long)]
    stage: Option<String>,
    /// Experiment to log the run in.
    #[arg(long, default_value = "archive-forecast")]
    experiment: String,
}

pub async fn run(client: &MlflowClient, args: &RegisterArgs) -> anyhow::Result<()> {
    // Refuse to register what the predictor could not serve.
    let loaded = model::load_model_dir(&args.model_dir)
        .with_context(|| format!("{} is not a servable model", args.model_dir.display()))?;
    let record: Option<TrainingRecord> = std::fs::read(args.model_dir.join(TRAINING_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());

    let experiment_id = client.ensure_experiment(&args.experiment).await?;
    let run = client
        .create_run(
            &experiment_id,
            &format!("register-{}", args.name),
            &[
                ("mlflow.source.name", "forecastctl"),
                ("model_digest", &loaded.digest),
            ],
        )
        .await?;
    let run_id = run.info.run_id.clone();
    let result = async {
        let (params, metrics) = match &record {
            Some(r) => (r.params.clone(), r.metrics.clone()),
            None => (Vec::new(), Vec::new()),
        };
        let mut params = params;
        params.push(("flavor".into(), loaded.flavor.clone()));
        params.push(("n_features".into(), loaded.n_features().to_string()));
        client.log_batch(&run_id, &params, &metrics).await?;
        let model_uri = format!("{}/model", run.info.artifact_uri.trim_end_matches('/'));
        let files = client.upload_dir(&args.model_dir, &model_uri).await?;
        client.ensure_registered_model(&args.name).await?;
        let version = client
            .create_model_version(&args.name, &model_uri, Some(&run_id))
            .await?;
        eprintln!(
            "logged {files} files to {model_uri}; registered {} version {}",
            args.name, version.version
        );
        anyhow::Ok(version)
    }
    .await;
    let version = match result {
        Ok(v) => {
            client.end_run(&run_id, "FINISHED").await?;
            v
        }
        Err(e) => {
            // Leave the run marked failed, not running forever.
            let _ = client.end_run(&run_id, "FAILED").await;
            return Err(e);
        }
    };
    if let Some(alias) = &args.alias {
        client
            .set_alias(&args.name, alias, &version.version)
            .await?;
        eprintln!("alias {alias} -> version {}", version.version);
    }
    if let Some(stage) = &args.stage {
        client
            .transition_stage(&args.name, &version.version, stage, true)
            .await?;
        eprintln!("version {} -> stage {stage}", version.version);
    }
    println!("{}", version.version);
    Ok(())
}
