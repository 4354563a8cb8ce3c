//! Per-row cost of the serving evaluator, single thread, at batch 1 and batch 1024, on the
//! models `tests/python/bench_libraries.py` saved (run by `cargo xtask bench`, which sets
//! `FORECAST_BENCH_DIR`). Prints one JSON object: per model, µs per row at each batch size
//! and the largest difference from the library's own predictions.

use std::hint::black_box;
use std::path::PathBuf;

#[path = "support/timing.rs"]
mod timing;

use timing::{bench_dir_and_seconds, per_row_us};

use serde_json::{Value, json};

fn main() {
    let Some((dir, seconds)) = bench_dir_and_seconds() else {
        return;
    };
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
