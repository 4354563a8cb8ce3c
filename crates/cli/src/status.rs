use mlflow::MlflowClient;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[arg(long, default_value = api::predictor::DEFAULT_MODEL_NAME)]
    name: String,
    /// `text` or `json`.
    #[arg(long, default_value = "text")]
    output: String,
}

pub async fn run(client: &MlflowClient, args: &StatusArgs) -> anyhow::Result<()> {
    let model = client.get_registered_model(&args.name).await?;
    let mut versions = client
        .search_model_versions(&format!("name='{}'", args.name.replace('\'', "\\'")))
        .await?;
    versions.sort_by_key(|v| std::cmp::Reverse(v.number()));
    if args.output == "json" {
        let out = serde_json::json!({ "registered_model": model, "versions": versions });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("model: {}", model.name);
    if model.aliases.is_empty() {
        println!("aliases: (none)");
    } else {
        for a in &model.aliases {
            println!("alias {} -> version {}", a.alias, a.version);
        }
    }
    println!(
        "{:<8} {:<12} {:<8} {:<20} SOURCE",
        "VERSION", "STAGE", "STATUS", "ALIASES"
    );
    for v in &versions {
        println!(
            "{:<8} {:<12} {:<8} {:<20} {}",
            v.version,
            v.current_stage.as_deref().unwrap_or("None"),
            v.status.as_deref().unwrap_or(""),
            model
                .aliases
                .iter()
                .filter(|a| a.version == v.version)
                .map(|a| a.alias.as_str())
                .collect::<Vec<_>>()
                .join(","),
            v.source.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
