//! Per-row cost of the serving evaluator, single thread, at batch 1 and batch 1024, on the
//! models `tests/python/bench_libraries.py` saved (run by `cargo xtask bench`, which sets
//! `FORECAST_BENCH_DIR`). Prints one JSON object: per model, µs per row at each batch size
//! and the largest difference from the library's own predictions.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn per_row_us(
    rows: &[Vec<f64>],
    batch: usize,
    seconds: f64,
    mut predict: impl FnMut(&[Vec<f64>]),
) -> f64 {
    let batches: Vec<&[Vec<f64>]> = rows.chunks_exact(batch).collect();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut samples = Vec::new();
    let mut i = 0;
    while Instant::now() < deadline || samples.len() < 5 {
        let chunk = batches[i % batches.len()];
        let start = Instant::now();
        predict(chunk);
        samples.push(start.elapsed().as_secs_f64() * 1e6 / chunk.len() as f64);
        i += 1;
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let Some(dir) = std::env::var_os("FORECAST_BENCH_DIR").map(PathBuf::from) else {
        eprintln!("set FORECAST_BENCH_DIR (cargo xtask bench does)");
        return;
    };
    let seconds: f64 = std::env::var("FORECAST_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let libraries: Value =
        serde_json::from_slice(&std::fs::read(dir.join("libraries.json")).expect("libraries.json"))
            .expect("libraries.json is JSON");
    let rows: Vec<Vec<f64>> =
        serde_json::from_slice(&std::fs::read(dir.join("rows.json")).expect("rows.json"))
            .expect("rows.json is JSON");
    let mut report = serde_json::Map::new();
    for (name, path) in libraries["models"].as_object().expect("models") {
        let loaded = model::load_model_dir(&PathBuf::from(path.as_str().expect("path")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let ensemble = &loaded.ensemble;
        let expected: Vec<f64> = libraries["expected_first_256"][name]
            .as_array()
            .expect("expected")
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect();
        let got = ensemble.predict(&rows[..expected.len()]).expect("predict");
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(g, e)| (g - e).abs() / e.abs().max(1e-12))
            .fold(0.0, f64::max);
        let batch_1 = per_row_us(&rows, 1, seconds, |chunk| {
            black_box(ensemble.predict_row(black_box(&chunk[0])));
        });
        let mut out = vec![0.0; 1024];
        let batch_1024 = per_row_us(&rows, 1024, seconds, |chunk| {
            ensemble.predict_into(black_box(chunk), &mut out);
            black_box(&out);
        });
        report.insert(
            name.clone(),
            json!({
                "batch_1_us_per_row": batch_1,
                "batch_1024_us_per_row": batch_1024,
                "max_relative_difference": worst,
                "trees": ensemble.n_trees(),
                "nodes": ensemble.n_nodes(),
            }),
        );
    }
    println!("{}", Value::Object(report));
}
