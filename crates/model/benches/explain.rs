//! Per-row cost of explaining (exact TreeSHAP) with the serving evaluator, single thread,
//! at batch 1 (an explainer made per request, as `/explain` does) and batch 1024, on the
//! scikit-learn forest `tests/python/bench_libraries.py` saved; and the largest difference
//! from `shap.TreeExplainer`'s values (`tests/python/bench_explain.py`) on the first rows.
//! Run by `cargo xtask bench --part explain`, which sets `FORECAST_BENCH_DIR`. Prints one
//! JSON object.

use std::hint::black_box;

#[path = "support/timing.rs"]
mod timing;

use timing::{bench_dir_and_seconds, per_row_us};

use serde_json::{Value, json};

fn main() {
    let Some((dir, seconds)) = bench_dir_and_seconds() else {
        return;
    };
    let shap: Value =
        serde_json::from_slice(&std::fs::read(dir.join("explain.json")).expect("explain.json"))
            .expect("explain.json is JSON");
    let rows: Vec<Vec<f64>> =
        serde_json::from_slice(&std::fs::read(dir.join("rows.json")).expect("rows.json"))
            .expect("rows.json is JSON");
    let loaded = model::load_model_dir(&dir.join("sklearn")).expect("the scikit-learn forest");
    let ensemble = &loaded.ensemble;
    let n = ensemble.n_features();

    let expected_value = shap["expected_value"].as_f64().expect("expected_value");
    let mut worst: f64 = 0.0;
    let mut contributions = vec![0.0; n];
    for (row, theirs) in rows
        .iter()
        .zip(shap["shap_values"].as_array().expect("values"))
    {
        let e = ensemble
            .explain_row(row, &mut contributions)
            .expect("explainable");
        let theirs: Vec<f64> = theirs
            .as_array()
            .expect("a row")
            .iter()
            .map(|v| v.as_f64().expect("a number"))
            .collect();
        let scale = theirs
            .iter()
            .fold(expected_value.abs(), |m, v| m.max(v.abs()));
        worst = worst.max((e.expected_value - expected_value).abs() / scale);
        for (a, b) in contributions.iter().zip(&theirs) {
            worst = worst.max((a - b).abs() / scale);
        }
    }

    let batch_1 = per_row_us(&rows, 1, seconds, |chunk| {
        let mut explainer = ensemble.explainer().expect("explainable");
        let mut out = vec![0.0; n];
        black_box(explainer.explain_row(black_box(&chunk[0]), &mut out).ok());
        black_box(&out);
    });
    let mut out = vec![0.0; n * 1024];
    let batch_1024 = per_row_us(&rows, 1024, seconds, |chunk| {
        let mut explainer = ensemble.explainer().expect("explainable");
        for (row, out) in chunk.iter().zip(out.chunks_exact_mut(n)) {
            black_box(explainer.explain_row(black_box(row), out).ok());
        }
        black_box(&out);
    });
    println!(
        "{}",
        json!({
            "batch_1_us_per_row": batch_1,
            "batch_1024_us_per_row": batch_1024,
            "max_relative_difference": worst,
            "trees": ensemble.n_trees(),
            "nodes": ensemble.n_nodes(),
        })
    );
}
