use std::path::PathBuf;

use anyhow::Context;
use chrono::NaiveDate;
use model::dataset::{DEFAULT_SEED, read_csv, synthetic_history};
use model::features::{FEATURE_NAMES, feature_matrix};
use model::training::{ForestParams, train_forest};
use model::{ModelDirInfo, write_model_dir};
use serde::Serialize;

/// The file `train` writes beside the model files, read back by `register`.
pub const TRAINING_FILE: &str = "training.json";

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Directory to write the MLflow model to (created).
    #[arg(long)]
    out: PathBuf,
    /// Train on this `date,gigabytes` CSV instead of the generated history.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Seed of the generated history and of the forest.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Days of generated history.
    #[arg(long, default_value_t = 1500)]
    days: usize,
    #[arg(long, default_value_t = 100)]
    trees: u16,
    #[arg(long, default_value_t = 10)]
    max_depth: u16,
    #[arg(long, default_value_t = 1)]
    min_samples_leaf: usize,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct TrainingRecord {
    pub params: Vec<(String, String)>,
    pub metrics: Vec<(String, f64)>,
}

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let history = match &args.data {
        Some(path) => read_csv(path)?,
        None => synthetic_history(
            args.seed,
            args.days,
            NaiveDate::from_ymd_opt(2021, 1, 1).context("start date")?,
        ),
    };
    let (x, y) = feature_matrix(&history);
    let params = ForestParams {
        n_trees: args.trees,
        max_depth: args.max_depth,
        min_samples_leaf: args.min_samples_leaf,
        seed: args.seed,
        ..ForestParams::default()
    };
    let started = std::time::Instant::now();
    let trained = train_forest(&x, &y, &params).context("training the forest")?;
    let seconds = started.elapsed().as_secs_f64();
    let names: Vec<String> = FEATURE_NAMES.iter().map(|s| s.to_string()).collect();
    let source = match &args.data {
        Some(p) => p.display().to_string(),
        None => format!("synthetic(seed={}, days={})", args.seed, args.days),
    };
    write_model_dir(
        &args.out,
        &trained.ensemble,
        &names,
        &ModelDirInfo {
            metadata: vec![
                ("trained_with".into(), "smartcore random forest".into()),
                ("training_data".into(), source.clone()),
            ],
        },
    )?;
    // What the inputs looked like in training: the predictor measures drift against it.
    let reference = model::drift_reference::DriftReference::from_rows(
        &names,
        &x[..trained.metrics.train_rows],
        model::drift_reference::DEFAULT_BINS,
    );
    std::fs::write(
        args.out.join(model::drift_reference::DRIFT_REFERENCE_FILE),
        serde_json::to_vec_pretty(&reference)?,
    )
    .context("writing the drift reference")?;
    let m = trained.metrics;
    let record = TrainingRecord {
        params: vec![
            ("n_trees".into(), params.n_trees.to_string()),
            ("max_depth".into(), params.max_depth.to_string()),
            (
                "min_samples_leaf".into(),
                params.min_samples_leaf.to_string(),
            ),
            ("seed".into(), params.seed.to_string()),
            (
                "holdout_fraction".into(),
                params.holdout_fraction.to_string(),
            ),
            ("training_data".into(), source),
            ("features".into(), FEATURE_NAMES.join(",")),
        ],
        metrics: vec![
            ("mae".into(), m.mae),
            ("rmse".into(), m.rmse),
            ("r2".into(), m.r2),
            ("train_rows".into(), m.train_rows as f64),
            ("test_rows".into(), m.test_rows as f64),
            ("training_seconds".into(), seconds),
        ],
    };
    let path = args.out.join(TRAINING_FILE);
    std::fs::write(&path, serde_json::to_vec_pretty(&record)?)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "trained {} trees on {} rows in {seconds:.2}s: holdout MAE {:.1} GB, RMSE {:.1} GB, R² {:.3}",
        params.n_trees, m.train_rows, m.mae, m.rmse, m.r2
    );
    println!("{}", args.out.display());
    Ok(())
}
