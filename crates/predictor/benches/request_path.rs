//! Where a batch request's time goes inside the predictor, single thread: reading an
//! `/invocations` body into rows — the tree reader every body went through before
//! (`serde_json::Value`, then rows) and the fast reader (straight into the matrix) — and
//! predicting those rows, at 1, 64 and 1,024 rows. On the onnxruntime model and rows that
//! `tests/python/bench_libraries.py` saved (`cargo xtask bench --part request-path` sets
//! `FORECAST_BENCH_DIR`). Prints one JSON object.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use predictor::input::{Matrix, Schema, invocation_rows, invocation_rows_by_tree};
use serde_json::{Value, json};

/// Median µs per row of `work` over `seconds`.
fn per_row_us(rows: usize, seconds: f64, mut work: impl FnMut()) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut samples = Vec::new();
    while Instant::now() < deadline || samples.len() < 5 {
        let start = Instant::now();
        work();
        samples.push(start.elapsed().as_secs_f64() * 1e6 / rows as f64);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let Some(dir) = std::env::var_os("FORECAST_BENCH_DIR").map(PathBuf::from) else {
        eprintln!("set FORECAST_BENCH_DIR (cargo xtask bench --part request-path does)");
        return;
    };
    let seconds: f64 = std::env::var("FORECAST_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let rows: Vec<Vec<f64>> =
        serde_json::from_slice(&std::fs::read(dir.join("rows.json")).expect("rows.json"))
            .expect("rows.json is JSON");
    let loaded = model::load_model_dir(&dir.join("onnxruntime")).expect("the ONNX model");
    let names: Vec<String> = (0..loaded.n_features()).map(|i| format!("f{i}")).collect();
    let schema = Schema {
        features: &names,
        accepts_missing: loaded.accepts_missing,
    };
    let mut report = serde_json::Map::new();
    for batch in [1usize, 64, 1024] {
        let body = json!({ "inputs": &rows[..batch] }).to_string().into_bytes();
        let tree = per_row_us(batch, seconds, || {
            black_box(invocation_rows_by_tree(black_box(&body), &schema, 10_000).expect("rows"));
        });
        let fast = per_row_us(batch, seconds, || {
            black_box(invocation_rows(black_box(&body), &schema, 10_000).expect("rows"));
        });
        let matrix: Matrix = invocation_rows(&body, &schema, 10_000).expect("rows");
        let mut out = vec![0.0; batch];
        // As the served model predicts: one row alone, more in blocks.
        let predict = per_row_us(batch, seconds, || {
            if batch == 1 {
                out[0] = loaded.ensemble.predict_row(black_box(matrix.row(0)));
            } else {
                loaded
                    .ensemble
                    .predict_matrix_into(black_box(matrix.values()), &mut out);
            }
            black_box(&out);
        });
        report.insert(
            format!("batch_{batch}"),
            json!({
                "tree_reader_us_per_row": tree,
                "fast_reader_us_per_row": fast,
                "predict_us_per_row": predict,
                "parse_share_before": tree / (tree + predict),
                "parse_share_after": fast / (fast + predict),
                "body_bytes": body.len(),
            }),
        );
    }
    println!("{}", Value::Object(report));
}
