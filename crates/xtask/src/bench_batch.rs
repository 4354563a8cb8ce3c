//! `cargo xtask bench --part request-path`, batch half: `/invocations` with 1, 64 and 1,024
//! rows through HTTP, one worker thread, one connection, against onnxruntime in process
//! (one thread) on the same forest and rows (the evaluator part's skl2onnx export of a
//! 100-tree, depth-10 forest); and where the predictor's time goes inside (`cargo bench -p
//! forecast-predictor --bench request_path`: the tree reader before, the fast reader after,
//! the prediction).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bench_load::{serve_from_disk, wait_for};
use crate::connection::Connection;

const BATCHES: [usize; 3] = [1, 64, 1024];

/// Median µs per row of sequential `/invocations` requests of each batch size.
async fn http_per_row(
    addr: SocketAddr,
    bodies: &[Vec<u8>],
    seconds: f64,
) -> anyhow::Result<Vec<f64>> {
    let mut conn = Connection::open(addr).await?;
    let mut out = Vec::new();
    for (batch, body) in BATCHES.iter().zip(bodies) {
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let mut samples = Vec::new();
        while Instant::now() < deadline || samples.len() < 5 {
            let start = Instant::now();
            let (status, _) = conn.post("/invocations", body).await?;
            anyhow::ensure!(status == 200, "/invocations answered {status}");
            samples.push(start.elapsed().as_secs_f64() * 1e6 / *batch as f64);
        }
        samples.sort_by(f64::total_cmp);
        out.push(samples[samples.len() / 2]);
    }
    Ok(out)
}

/// One predictor binary serving the ONNX model on one worker thread.
fn serve_and_time(
    runtime: &tokio::runtime::Runtime,
    name: &'static str,
    binary: &Path,
    model: &Path,
    bodies: &[Vec<u8>],
    seconds: f64,
    log: &Path,
) -> anyhow::Result<Vec<f64>> {
    let (mut server, addr) =
        serve_from_disk(name, binary, model, &[("PREDICTOR_WORKERS", "1")], log)?;
    runtime.block_on(async {
        wait_for(addr, "/invocations", &bodies[0], &mut server).await?;
        http_per_row(addr, bodies, seconds / 4.0).await?;
        http_per_row(addr, bodies, seconds).await
    })
}

pub fn run(
    python: &Path,
    work: &Path,
    ours: &Path,
    reference: &Path,
    seconds: f64,
) -> anyhow::Result<Value> {
    let dir = work.join("evaluator");
    let libraries_path = dir.join("libraries.json");
    let fresh = std::fs::read(&libraries_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(|l| l["timings"]["onnxruntime"]["batch_64_us_per_row"].is_number());
    let libraries = match fresh {
        Some(l) => l,
        None => {
            crate::bench_evaluator::time_libraries(python, 2.0, &dir)?;
            serde_json::from_slice(&std::fs::read(&libraries_path)?)?
        }
    };
    let rows: Vec<Value> = serde_json::from_slice(&std::fs::read(dir.join("rows.json"))?)?;
    let bodies: Vec<Vec<u8>> = BATCHES
        .iter()
        .map(|&b| json!({ "inputs": &rows[..b] }).to_string().into_bytes())
        .collect();
    let model = dir.join("onnxruntime");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    eprintln!("xtask: /invocations batches through HTTP, one worker thread");
    let ours_us = serve_and_time(
        &runtime,
        "forecast-predictor",
        ours,
        &model,
        &bodies,
        seconds,
        &work.join("request-path/batch-ours.log"),
    )?;
    let reference_us = serve_and_time(
        &runtime,
        "reference predictor",
        reference,
        &model,
        &bodies,
        seconds,
        &work.join("request-path/batch-reference.log"),
    )?;
    eprintln!("xtask: where the time goes inside the predictor");
    let inside =
        crate::bench_evaluator::cargo_bench_json("forecast-predictor", "request_path", &dir, &[])?;
    let onnx = &libraries["timings"]["onnxruntime"];
    println!(
        "\n/invocations through HTTP, one worker thread, vs onnxruntime in process (µs per row)\n"
    );
    println!(
        "| rows | onnxruntime | predictor (072c47d) | predictor (this tree) | tree reader | fast reader | predict | parse share before → after |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut batches = serde_json::Map::new();
    for (i, batch) in BATCHES.iter().enumerate() {
        let lib = onnx[format!("batch_{batch}_us_per_row")]
            .as_f64()
            .unwrap_or(f64::NAN);
        let parts = &inside[format!("batch_{batch}")];
        let get = |k: &str| parts[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {batch} | {lib:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} % → {:.0} % |",
            reference_us[i],
            ours_us[i],
            get("tree_reader_us_per_row"),
            get("fast_reader_us_per_row"),
            get("predict_us_per_row"),
            get("parse_share_before") * 100.0,
            get("parse_share_after") * 100.0,
        );
        batches.insert(
            format!("batch_{batch}"),
            json!({
                "onnxruntime_us_per_row": lib,
                "reference_http_us_per_row": reference_us[i],
                "http_us_per_row": ours_us[i],
                "inside": parts,
            }),
        );
    }
    Ok(Value::Object(batches))
}
