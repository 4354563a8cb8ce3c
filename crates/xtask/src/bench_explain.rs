//! `cargo xtask bench --part explain`: per-row cost of `/explain`'s TreeSHAP against
//! `shap.TreeExplainer` on the same 100-tree depth-10 scikit-learn forest, single thread,
//! batch 1 and batch 1024 (shap timed by `tests/python/bench_explain.py`, ours by `cargo
//! bench -p forecast-model --bench explain`, on the same rows).

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::bench_evaluator::{cargo_bench_json, time_libraries};
use crate::root;

/// How much faster than `shap.TreeExplainer` explaining one row must be.
const TARGET_BATCH_1: f64 = 100.0;

pub fn run(python: &Path, seconds: f64, work: &Path) -> anyhow::Result<Value> {
    let dir = work.join("evaluator");
    if !dir.join("libraries.json").is_file() {
        time_libraries(python, seconds, &dir)?;
    }
    eprintln!("xtask: timing shap.TreeExplainer on the scikit-learn forest");
    crate::run(
        Command::new(python)
            .arg(root().join("tests/python/bench_explain.py"))
            .arg("--models")
            .arg(&dir)
            .args(["--seconds", &seconds.to_string()])
            .env("OMP_NUM_THREADS", "1"),
    )?;
    eprintln!("xtask: timing the evaluator's explanations on the same forest and rows");
    let ours = cargo_bench_json(
        "forecast-model",
        "explain",
        &dir,
        &[("FORECAST_BENCH_SECONDS", seconds.to_string())],
    )?;
    let shap: Value = serde_json::from_slice(&std::fs::read(dir.join("explain.json"))?)?;
    let get = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let timings = &shap["timings"];
    let (shap_1, ours_1) = (
        get(timings, "batch_1_us_per_row"),
        get(&ours, "batch_1_us_per_row"),
    );
    let (shap_n, ours_n) = (
        get(timings, "batch_1024_us_per_row"),
        get(&ours, "batch_1024_us_per_row"),
    );
    let diff = get(&ours, "max_relative_difference");
    println!(
        "\nexplaining one row (exact TreeSHAP), single thread, 100 trees of depth 10, 8 features (µs per row)\n"
    );
    println!("| | shap.TreeExplainer | evaluator | speed-up (target) |\n|---|---:|---:|---:|");
    println!(
        "| batch 1 | {shap_1:.1} | {ours_1:.1} | {:.0}× ({TARGET_BATCH_1}×) |",
        shap_1 / ours_1
    );
    println!(
        "| batch 1024 | {shap_n:.1} | {ours_n:.1} | {:.1}× |",
        shap_n / ours_n
    );
    println!("largest difference from shap's values: {diff:.1e} of the row's scale");
    Ok(json!({
        "shap": timings, "evaluator": ours,
        "speedup_batch_1": shap_1 / ours_1, "target_batch_1": TARGET_BATCH_1,
        "speedup_batch_1024": shap_n / ours_n,
    }))
}
