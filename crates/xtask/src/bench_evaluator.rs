//! `cargo xtask bench` (evaluator part): per-row cost of the serving evaluator against each
//! library's own predict on the same models (100 trees, depth 10, 8 features), single
//! thread, batch 1 and batch 1024. The libraries are timed by
//! `tests/python/bench_libraries.py`, the evaluator by `cargo bench -p forecast-model
//! --bench evaluator`, on the same rows, one after the other.

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use serde_json::{Value, json};

use crate::root;

/// How much faster than each library the evaluator must be at batch 1, and at least how
/// fast (ratio 1) at batch 1024.
const TARGETS_BATCH_1: &[(&str, f64)] = &[
    ("sklearn", 10.0),
    ("xgboost", 10.0),
    ("lightgbm", 10.0),
    ("onnxruntime", 2.0),
];

/// Trains the four models, saves them as MLflow model directories with the rows in `dir`,
/// and times each library on them (`libraries.json`).
pub fn time_libraries(python: &Path, seconds: f64, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    eprintln!("xtask: timing scikit-learn, XGBoost, LightGBM and onnxruntime on their own models");
    crate::run(
        Command::new(python)
            .arg(root().join("tests/python/bench_libraries.py"))
            .arg("--out")
            .arg(dir)
            .args(["--seconds", &seconds.to_string()])
            .env("OMP_NUM_THREADS", "1"),
    )
}

pub fn run(python: &Path, seconds: f64, work: &Path) -> anyhow::Result<Value> {
    let dir = work.join("evaluator");
    time_libraries(python, seconds, &dir)?;
    eprintln!("xtask: timing the evaluator on the same models and rows");
    let evaluator = cargo_bench_json(
        "forecast-model",
        "evaluator",
        &dir,
        &[("FORECAST_BENCH_SECONDS", seconds.to_string())],
    )?;
    let libraries: Value = serde_json::from_slice(&std::fs::read(dir.join("libraries.json"))?)?;
    let timings = &libraries["timings"];

    println!("\nper-row cost, single thread, 100 trees of depth 10, 8 features (µs per row)\n");
    println!(
        "| model | library batch 1 | evaluator batch 1 | speed-up (target) | library batch 1024 | evaluator batch 1024 | speed-up (target ≥ 1) | max rel. diff |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows = serde_json::Map::new();
    for (name, target) in TARGETS_BATCH_1 {
        let lib = &timings[*name];
        let ours = &evaluator[*name];
        let get = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let (lib_1, ours_1) = (
            get(lib, "batch_1_us_per_row"),
            get(ours, "batch_1_us_per_row"),
        );
        let (lib_n, ours_n) = (
            get(lib, "batch_1024_us_per_row"),
            get(ours, "batch_1024_us_per_row"),
        );
        let diff = get(ours, "max_relative_difference");
        println!(
            "| {name} | {lib_1:.2} | {ours_1:.2} | {:.1}× ({target}×) | {lib_n:.2} | {ours_n:.2} | {:.2}× | {diff:.1e} |",
            lib_1 / ours_1,
            lib_n / ours_n,
        );
        rows.insert(
            (*name).to_owned(),
            json!({
                "library": lib, "evaluator": ours,
                "speedup_batch_1": lib_1 / ours_1, "target_batch_1": target,
                "speedup_batch_1024": lib_n / ours_n, "target_batch_1024": 1.0,
            }),
        );
    }
    Ok(Value::Object(rows))
}

/// Runs `cargo bench -p <package> --bench <bench>` on the models in `dir` and returns the
/// JSON object it prints last.
pub fn cargo_bench_json(
    package: &str,
    bench: &str,
    dir: &Path,
    env: &[(&str, String)],
) -> anyhow::Result<Value> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root())
        .args(["bench", "-q", "-p", package, "--bench", bench])
        .env("FORECAST_BENCH_DIR", dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .with_context(|| format!("cargo bench -p {package}"))?;
    anyhow::ensure!(
        out.status.success(),
        "the {bench} benchmark failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("the {bench} benchmark printed no JSON"))
}
