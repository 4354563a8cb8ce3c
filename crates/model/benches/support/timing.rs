//! What the model crate's benchmarks share: the median time per row of a piece of work
//! over batches of rows, and where their inputs are.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The median over repeats (at least 5, for `seconds`) of the time per row, `work`
/// taking `batch` rows at a time.
pub fn per_row_us(
    rows: &[Vec<f64>],
    batch: usize,
    seconds: f64,
    mut work: impl FnMut(&[Vec<f64>]),
) -> f64 {
    let batches: Vec<&[Vec<f64>]> = rows.chunks_exact(batch).collect();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut samples = Vec::new();
    let mut i = 0;
    while Instant::now() < deadline || samples.len() < 5 {
        let chunk = batches[i % batches.len()];
        let start = Instant::now();
        work(chunk);
        samples.push(start.elapsed().as_secs_f64() * 1e6 / chunk.len() as f64);
        i += 1;
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// `FORECAST_BENCH_DIR` (set by `cargo xtask bench`) and `FORECAST_BENCH_SECONDS`.
pub fn bench_dir_and_seconds() -> Option<(PathBuf, f64)> {
    let Some(dir) = std::env::var_os("FORECAST_BENCH_DIR").map(PathBuf::from) else {
        eprintln!("set FORECAST_BENCH_DIR (cargo xtask bench does)");
        return None;
    };
    let seconds = std::env::var("FORECAST_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    Some((dir, seconds))
}
