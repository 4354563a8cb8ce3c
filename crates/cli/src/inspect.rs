//! `forecastctl inspect`: load a model exactly as the predictor would (a local MLflow model
//! directory or a registered version) and print what `/model/info` would say, plus one
//! prediction, so a version can be checked before an alias moves.

use std::path::PathBuf;

use anyhow::{Context, bail};
use mlflow::MlflowClient;

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A local MLflow model directory (with `MLmodel`), or a bare joblib/pickle file.
    #[arg(long, conflicts_with_all = ["name", "version"])]
    model_dir: Option<PathBuf>,
    /// Registered model name (with --version).
    #[arg(long, requires = "version")]
    name: Option<String>,
    /// Registered model version (with --name).
    #[arg(long, requires = "name")]
    version: Option<String>,
    /// The row to predict, comma-separated in feature order (an empty field is a missing
    /// value); default all zeros.
    #[arg(long)]
    row: Option<String>,
    /// `text` or `json`.
    #[arg(long, default_value = "text")]
    output: String,
    /// The most a model file, or what it inflates to, may hold — the predictor's
    /// `MODEL_MAX_BYTES`, so a version is refused here as a pod would refuse it.
    #[arg(long, env = "MODEL_MAX_BYTES", default_value_t = model::MAX_MODEL_FILE_BYTES)]
    max_bytes: u64,
}

impl InspectArgs {
    pub fn needs_registry(&self) -> bool {
        self.model_dir.is_none()
    }
}

pub async fn run(client: Option<&MlflowClient>, args: &InspectArgs) -> anyhow::Result<()> {
    let staging;
    let (path, source) = match (&args.model_dir, &args.name, &args.version) {
        (Some(dir), _, _) => (dir.clone(), dir.display().to_string()),
        (None, Some(name), Some(version)) => {
            let client = client.context("a registry is needed for --name/--version")?;
            staging = tempfile_dir()?;
            let downloaded = client
                .download_model_version(name, version, &staging)
                .await
                .with_context(|| format!("downloading {name} version {version}"))?;
            (staging.clone(), downloaded.location)
        }
        _ => bail!("give --model-dir DIR, or --name NAME --version V"),
    };
    let loaded = model::load_model_path_within(&path, args.max_bytes);
    if args.model_dir.is_none() {
        let _ = std::fs::remove_dir_all(&path);
    }
    let loaded = loaded.with_context(|| format!("loading {source}"))?;
    let row = parse_row(args.row.as_deref(), loaded.n_features())?;
    if !loaded.accepts_missing && row.iter().any(|v| v.is_nan()) {
        bail!("this model does not accept missing values; fill every field of --row");
    }
    let prediction = loaded.ensemble.predict_row(&row);
    let info = serde_json::json!({
        "source": source,
        "flavor": loaded.flavor,
        "estimator": loaded.estimator,
        "n_trees": loaded.ensemble.n_trees(),
        "n_nodes": loaded.ensemble.n_nodes(),
        "feature_names": loaded.feature_names,
        "accepts_missing": loaded.accepts_missing,
        "digest": loaded.digest,
        "row": row.iter().map(|v| if v.is_nan() { None } else { Some(*v) }).collect::<Vec<_>>(),
        "prediction": prediction,
    });
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!("source:          {source}");
    println!("flavor:          {}", loaded.flavor);
    println!("estimator:       {}", loaded.estimator);
    println!(
        "trees:           {} ({} nodes)",
        loaded.ensemble.n_trees(),
        loaded.ensemble.n_nodes()
    );
    println!("features:        {}", loaded.feature_names.join(", "));
    println!("accepts missing: {}", loaded.accepts_missing);
    println!("digest:          {}", loaded.digest);
    println!("prediction:      {prediction}");
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "forecastctl-inspect-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn parse_row(row: Option<&str>, n: usize) -> anyhow::Result<Vec<f64>> {
    let Some(row) = row else {
        return Ok(vec![0.0; n]);
    };
    let values: Vec<f64> = row
        .split(',')
        .map(|field| {
            let field = field.trim();
            if field.is_empty() || field.eq_ignore_ascii_case("nan") {
                Ok(f64::NAN)
            } else {
                field
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .with_context(|| format!("--row: {field:?} is not a finite number"))
            }
        })
        .collect::<anyhow::Result<_>>()?;
    if values.len() != n {
        bail!(
            "--row has {} values; the model takes {n} features",
            values.len()
        );
    }
    Ok(values)
}
