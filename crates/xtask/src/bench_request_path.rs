//! `cargo xtask bench --part request-path`: single-row `/predict` on this tree's predictor
//! against a reference commit's (072c47d, before predictions moved to the compute pool),
//! A/B in one run: both release builds serve the same `forecastctl train` model from disk,
//! get the same bodies from the same load generator, one after the other, three rounds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::bench_load::{LoadResult, load, serve_from_disk, wait_for};
use crate::root;

/// Rounds of reference-then-ours.
const ROUNDS: usize = 3;

/// The commit measured against: the predictor before requests went through the pool.
pub const REFERENCE_COMMIT: &str = "072c47d";

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// The reference commit's release predictor, built once into `target/bench/` (its source
/// from `git archive`, its own target directory: nothing of this tree's build is touched).
fn reference_predictor(commit: &str, work: &Path) -> anyhow::Result<PathBuf> {
    let source = work.join(format!("reference-{commit}"));
    if !source.join("Cargo.toml").exists() {
        std::fs::create_dir_all(&source)?;
        let archive = Command::new("git")
            .current_dir(root())
            .args(["archive", "--format=tar", commit])
            .stdout(Stdio::piped())
            .spawn()
            .context("git archive")?;
        let status = Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&source)
            .stdin(archive.stdout.context("git archive output")?)
            .status()?;
        if !status.success() {
            bail!("unpacking {commit} failed");
        }
    }
    let target = work.join("reference-target");
    eprintln!("xtask: building the predictor of {commit} (release)");
    crate::run(
        cargo()
            .current_dir(&source)
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--release", "-p", "forecast-predictor"]),
    )?;
    Ok(target.join("release/forecast-predictor"))
}

/// A feature row of the archive model (the shape `forecastctl train` learns).
fn row(day: u32) -> Value {
    json!([
        f64::from(day % 7),
        f64::from(day % 28 + 1),
        6.0,
        if day % 7 >= 5 { 1.0 } else { 0.0 },
        0.0,
        900.0 + f64::from(day),
        880.0,
        870.0
    ])
}

/// The load each server gets.
struct Load<'a> {
    runtime: &'a tokio::runtime::Runtime,
    model: &'a Path,
    bodies: Arc<Vec<Vec<u8>>>,
    concurrency: usize,
    seconds: u64,
}

/// One server under the single-row load.
fn measure(
    l: &Load<'_>,
    name: &'static str,
    binary: &Path,
    log: &Path,
) -> anyhow::Result<LoadResult> {
    let Load {
        runtime,
        model,
        bodies,
        concurrency,
        seconds,
    } = l;
    let (concurrency, seconds) = (*concurrency, *seconds);
    let (mut server, addr) = serve_from_disk(name, binary, model, &[], log)?;
    runtime.block_on(async {
        wait_for(addr, "/predict", &bodies[0], &mut server).await?;
        load(
            addr,
            "/predict",
            bodies.clone(),
            concurrency,
            Duration::from_secs(2),
        )
        .await?;
        load(
            addr,
            "/predict",
            bodies.clone(),
            concurrency,
            Duration::from_secs(seconds),
        )
        .await
    })
}

/// Runs the A/B and returns its report.
pub fn run(
    python: &Path,
    root_work: &Path,
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<Value> {
    let work = root_work.join("request-path");
    std::fs::create_dir_all(&work)?;
    crate::run(cargo().current_dir(root()).args([
        "build",
        "--release",
        "-p",
        "forecast-predictor",
        "-p",
        "forecast-cli",
    ]))?;
    let ours = root().join("target/release/forecast-predictor");
    let reference = reference_predictor(REFERENCE_COMMIT, root_work)?;
    let model = work.join("model");
    let _ = std::fs::remove_dir_all(&model);
    crate::run(
        Command::new(root().join("target/release/forecastctl"))
            .args(["train", "--seed", "1", "--trees", "100", "--out"])
            .arg(&model),
    )?;
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..64)
            .map(|d| json!({"instances": [row(d)]}).to_string().into_bytes())
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let l = Load {
        runtime: &runtime,
        model: &model,
        bodies,
        concurrency,
        seconds,
    };
    let mut rounds = Vec::new();
    let (mut ours_total, mut reference_total) = (0.0, 0.0);
    // Every latency of each server over all rounds: one p99 each, from all the samples
    // (a single round's p99 moves by ±50 % with the scheduling of the shared cores).
    let (mut ours_all, mut reference_all) = (LoadResult::default(), LoadResult::default());
    for round in 1..=ROUNDS {
        for (name, binary) in [("reference", reference.as_path()), ("ours", ours.as_path())] {
            eprintln!("xtask: round {round}, {name} predictor under load for {seconds} s");
            let log = work.join(format!("{name}-{round}.log"));
            let server = if name == "ours" {
                "forecast-predictor"
            } else {
                "reference predictor"
            };
            let result = measure(&l, server, binary, &log)?;
            if result.failed > 0 {
                bail!("the {name} predictor failed {} requests", result.failed);
            }
            let (rps, p50, p99) = (
                result.throughput(),
                result.percentile_ms(0.5),
                result.percentile_ms(0.99),
            );
            let (total, all) = if name == "ours" {
                (&mut ours_total, &mut ours_all)
            } else {
                (&mut reference_total, &mut reference_all)
            };
            *total += rps;
            all.latencies_us.extend_from_slice(&result.latencies_us);
            rounds.push(json!({
                "round": round, "server": name, "requests_per_second": rps,
                "p50_ms": p50, "p99_ms": p99,
            }));
        }
    }
    ours_all.latencies_us.sort_unstable();
    reference_all.latencies_us.sort_unstable();
    let (ours_p99, reference_p99) = (
        ours_all.percentile_ms(0.99),
        reference_all.percentile_ms(0.99),
    );
    let throughput_ratio = ours_total / reference_total;
    let p99_ratio = ours_p99 / reference_p99;
    println!(
        "\nsingle-row /predict, concurrency {concurrency}, {seconds} s per server and round, \
         this tree vs {REFERENCE_COMMIT}\n"
    );
    println!("| round | server | requests/s | p50 ms | p99 ms |");
    println!("|---:|---|---:|---:|---:|");
    for r in &rounds {
        println!(
            "| {} | {} | {:.0} | {:.3} | {:.3} |",
            r["round"],
            r["server"].as_str().unwrap_or_default(),
            r["requests_per_second"].as_f64().unwrap_or(f64::NAN),
            r["p50_ms"].as_f64().unwrap_or(f64::NAN),
            r["p99_ms"].as_f64().unwrap_or(f64::NAN),
        );
    }
    println!(
        "\nthroughput {:.0} % of {REFERENCE_COMMIT} (target ≥ 95 %); p99 over all rounds \
         {ours_p99:.3} ms against {reference_p99:.3} ms, {:.2}× (target ≤ 1.2×)",
        throughput_ratio * 100.0,
        p99_ratio
    );
    let batch = crate::bench_batch::run(python, root_work, &ours, &reference, 3.0)?;
    Ok(json!({
        "batch": batch,
        "reference": REFERENCE_COMMIT,
        "concurrency": concurrency,
        "seconds": seconds,
        "rounds": rounds,
        "throughput_ratio": throughput_ratio,
        "p99_ms": {"ours": ours_p99, "reference": reference_p99},
        "p99_ratio": p99_ratio,
    }))
}
