use mlflow::MlflowClient;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["alias", "stage"])))]
pub struct PromoteArgs {
    #[arg(long, default_value = api::predictor::DEFAULT_MODEL_NAME)]
    name: String,
    #[arg(long)]
    version: String,
    /// Point this alias at the version.
    #[arg(long)]
    alias: Option<String>,
    /// Move the version to this stage (`Production`, `Staging`, `Archived`, `None`).
    #[arg(long)]
    stage: Option<String>,
    /// With --stage: keep the versions already in the stage there.
    #[arg(long)]
    keep_existing: bool,
}

pub async fn run(client: &MlflowClient, args: &PromoteArgs) -> anyhow::Result<()> {
    // Fails with "not found" before anything changes if the version does not exist.
    client.get_model_version(&args.name, &args.version).await?;
    if let Some(alias) = &args.alias {
        client.set_alias(&args.name, alias, &args.version).await?;
        println!("{} alias {alias} -> version {}", args.name, args.version);
    }
    if let Some(stage) = &args.stage {
        client
            .transition_stage(&args.name, &args.version, stage, !args.keep_existing)
            .await?;
        println!("{} version {} -> stage {stage}", args.name, args.version);
    }
    Ok(())
}
