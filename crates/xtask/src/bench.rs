//! `cargo xtask bench`: the predictor against `mlflow models serve` on the same
//! scikit-learn forest (100 trees, depth 10, 8 features), same machine, same load, in one
//! run. The predictor serves the skl2onnx export from the registry; MLflow serves the
//! pickled scikit-learn model. Both get the identical `/invocations` body.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;

use crate::bench_load::{load, post_once, wait_for};
use crate::connection::Connection;
use crate::mlflow_server::{MlflowServer, free_port};
use crate::server::spawn;
use crate::{root, venv};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Seconds of load per server.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Concurrent connections, each sending single-row requests back to back.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Workers of `mlflow models serve` (the predictor uses one per core).
    #[arg(long, default_value_t = 2)]
    mlflow_workers: usize,
    /// Which part to run: `evaluator` (per-row cost against each library), `explain`
    /// (TreeSHAP per row against `shap.TreeExplainer`), `request-path`
    /// (single-row `/predict` against the predictor of 072c47d, A/B), `servers` (the
    /// predictor against `mlflow models serve`), or `all`.
    #[arg(long, default_value = "all")]
    part: String,
    /// Seconds of timing per library, model and batch size in the evaluator part.
    #[arg(long, default_value_t = 2.0)]
    evaluator_seconds: f64,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let python = venv::ensure()?;
    let work = root().join("target").join("bench");
    std::fs::create_dir_all(&work)?;
    if matches!(args.part.as_str(), "all" | "evaluator") {
        let report = crate::bench_evaluator::run(&python, args.evaluator_seconds, &work)?;
        std::fs::write(
            work.join("evaluator.json"),
            serde_json::to_vec_pretty(&report)?,
        )?;
        eprintln!(
            "xtask: evaluator report in {}",
            work.join("evaluator.json").display()
        );
    }
    if matches!(args.part.as_str(), "all" | "explain") {
        let report = crate::bench_explain::run(&python, args.evaluator_seconds, &work)?;
        let path = work.join("explain.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
        eprintln!("xtask: explain report in {}", path.display());
    }
    if matches!(args.part.as_str(), "all" | "request-path") {
        let report =
            crate::bench_request_path::run(&python, &work, args.concurrency, args.seconds)?;
        let path = work.join("request-path.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
        eprintln!("xtask: request-path report in {}", path.display());
    }
    if !matches!(args.part.as_str(), "all" | "servers") {
        return Ok(());
    }
    crate::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root())
            .args(["build", "--release", "-p", "forecast-predictor"]),
    )?;
    let mlflow = MlflowServer::start(&python)?;
    let work = work.join("servers");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    eprintln!("xtask: training the scikit-learn forest and logging its ONNX export");
    let report_path = work.join("model.json");
    let sklearn_dir = work.join("sklearn-model");
    crate::run(
        Command::new(&python)
            .arg(root().join("tests/python/log_sklearn_onnx.py"))
            .args([
                "--name",
                "bench-forest",
                "--trees",
                "100",
                "--depth",
                "10",
                "--features",
                "8",
            ])
            .arg("--out")
            .arg(&report_path)
            .arg("--save-sklearn")
            .arg(&sklearn_dir)
            .env("MLFLOW_TRACKING_URI", mlflow.uri()),
    )?;
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_path)?)?;
    let version = report["version"].as_str().context("version")?.to_owned();
    // A second version of the same shape: the shadow challenger.
    let challenger_path = work.join("challenger.json");
    crate::run(
        Command::new(&python)
            .arg(root().join("tests/python/log_sklearn_onnx.py"))
            .args(["--name", "bench-forest", "--trees", "100", "--depth", "10"])
            .args(["--features", "8", "--seed", "8"])
            .arg("--out")
            .arg(&challenger_path)
            .env("MLFLOW_TRACKING_URI", mlflow.uri()),
    )?;
    let challenger: serde_json::Value = serde_json::from_slice(&std::fs::read(&challenger_path)?)?;
    let challenger = challenger["version"]
        .as_str()
        .context("challenger version")?
        .to_owned();
    let rows = report["rows"].as_array().context("rows")?.clone();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        rows.iter()
            .map(|r| {
                json!({"dataframe_split": {"data": [r]}})
                    .to_string()
                    .into_bytes()
            })
            .collect(),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    // The predictor.
    let predictor_port = free_port()?;
    let predictor_addr: SocketAddr = ([127, 0, 0, 1], predictor_port).into();
    let mut predictor = spawn(
        "forecast-predictor",
        Command::new(root().join("target/release/forecast-predictor"))
            .env("MLFLOW_TRACKING_URI", mlflow.uri())
            .env("MODEL_NAME", "bench-forest")
            .env("MODEL_VERSION", &version)
            .env("BIND_ADDR", "127.0.0.1")
            .env("PORT", predictor_port.to_string())
            .env("RUST_LOG", "warn"),
        &work.join("predictor.log"),
    )?;
    let (predictor_result, reload_result, predictor_rss, shadow_result) =
        runtime.block_on(async {
            wait_for(predictor_addr, "/invocations", &bodies[0], &mut predictor).await?;
            load(
                predictor_addr,
                "/invocations",
                bodies.clone(),
                args.concurrency,
                Duration::from_secs(2),
            )
            .await?;
            eprintln!("xtask: predictor under load for {} s", args.seconds);
            let result = load(
                predictor_addr,
                "/invocations",
                bodies.clone(),
                args.concurrency,
                Duration::from_secs(args.seconds),
            )
            .await?;
            let rss = predictor.rss_kib();
            // The same load while the model is reloaded every 250 ms.
            eprintln!("xtask: predictor under load while reloading");
            let reloading = Arc::new(AtomicBool::new(true));
            let reloads = {
                let (reloading, version) = (reloading.clone(), version.clone());
                tokio::spawn(async move {
                    let mut done = 0u32;
                    let body = json!({"version": version}).to_string();
                    while reloading.load(Ordering::Relaxed) {
                        if post_once(predictor_addr, "/reload-model", body.as_bytes()).await {
                            done += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    done
                })
            };
            let under_reload = load(
                predictor_addr,
                "/invocations",
                bodies.clone(),
                args.concurrency,
                Duration::from_secs(5),
            )
            .await?;
            reloading.store(false, Ordering::Relaxed);
            let reload_count = reloads.await?;
            // The same load with a shadow challenger scoring every request beside it.
            let body = json!({"version": challenger}).to_string();
            if !post_once(predictor_addr, "/shadow-model", body.as_bytes()).await {
                bail!("the predictor did not load the shadow version {challenger}");
            }
            eprintln!(
                "xtask: predictor under load with a shadow for {} s",
                args.seconds
            );
            let with_shadow = load(
                predictor_addr,
                "/invocations",
                bodies.clone(),
                args.concurrency,
                Duration::from_secs(args.seconds),
            )
            .await?;
            let (_, info) = Connection::open(predictor_addr)
                .await?
                .get("/model/info")
                .await?;
            let info: serde_json::Value = serde_json::from_slice(&info)?;
            let shadow = (with_shadow, info["shadow"].clone());
            anyhow::Ok((result, (under_reload, reload_count), rss, shadow))
        })?;
    drop(predictor);

    // mlflow models serve, on the pickled scikit-learn model.
    let mlflow_port = free_port()?;
    let mlflow_addr: SocketAddr = ([127, 0, 0, 1], mlflow_port).into();
    let venv_bin = python.parent().context("venv")?;
    let mlflow_bin = venv_bin.join("mlflow");
    // `mlflow models serve` execs uvicorn from PATH.
    let path = format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut serve = spawn(
        "mlflow models serve",
        Command::new(mlflow_bin)
            .args([
                "models",
                "serve",
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
            ])
            .args(["--port", &mlflow_port.to_string()])
            .args(["--workers", &args.mlflow_workers.to_string()])
            .arg("-m")
            .arg(&sklearn_dir)
            .env("PATH", path)
            .env("MLFLOW_TRACKING_URI", mlflow.uri()),
        &work.join("mlflow-serve.log"),
    )?;
    let (mlflow_result, mlflow_rss) = runtime.block_on(async {
        wait_for(mlflow_addr, "/invocations", &bodies[0], &mut serve).await?;
        load(
            mlflow_addr,
            "/invocations",
            bodies.clone(),
            args.concurrency,
            Duration::from_secs(2),
        )
        .await?;
        eprintln!(
            "xtask: mlflow models serve under load for {} s",
            args.seconds
        );
        let result = load(
            mlflow_addr,
            "/invocations",
            bodies.clone(),
            args.concurrency,
            Duration::from_secs(args.seconds),
        )
        .await?;
        anyhow::Ok((result, serve.rss_kib()))
    })?;
    drop(serve);
    drop(mlflow);

    let ratio = predictor_result.throughput() / mlflow_result.throughput();
    let (under_reload, reload_count) = reload_result;
    println!(
        "\nsingle-row /invocations, concurrency {}, {} s per server, same machine\n",
        args.concurrency, args.seconds
    );
    println!("| server | requests/s | p50 ms | p99 ms | failed | RSS MB |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, r, rss) in [
        (
            "forecast-predictor (ONNX export, native)",
            &predictor_result,
            predictor_rss,
        ),
        (
            "mlflow models serve (scikit-learn)",
            &mlflow_result,
            mlflow_rss,
        ),
    ] {
        println!(
            "| {name} | {:.0} | {:.3} | {:.3} | {} | {:.1} |",
            r.throughput(),
            r.percentile_ms(0.5),
            r.percentile_ms(0.99),
            r.failed,
            rss as f64 / 1024.0
        );
    }
    println!("\nthroughput ratio: {ratio:.0}x");
    println!(
        "predictor under reload ({reload_count} reloads in 5 s): {:.0} requests/s, {} failed, p99 {:.3} ms",
        under_reload.throughput(),
        under_reload.failed,
        under_reload.percentile_ms(0.99)
    );
    let (with_shadow, shadow_info) = &shadow_result;
    let shadow_share = with_shadow.throughput() / predictor_result.throughput();
    println!(
        "predictor with a shadow loaded: {:.0} requests/s ({:.0}% of without), p99 {:.3} ms, {} failed; the shadow compared {} requests and dropped {} (queue full)",
        with_shadow.throughput(),
        shadow_share * 100.0,
        with_shadow.percentile_ms(0.99),
        with_shadow.failed,
        shadow_info["compared"],
        shadow_info["dropped"]
    );
    let summary = json!({
        "with_shadow": {"rps": with_shadow.throughput(), "share_of_without": shadow_share,
            "p99_ms": with_shadow.percentile_ms(0.99), "failed": with_shadow.failed,
            "compared": shadow_info["compared"], "dropped": shadow_info["dropped"]},
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "predictor": {"rps": predictor_result.throughput(), "p50_ms": predictor_result.percentile_ms(0.5),
            "p99_ms": predictor_result.percentile_ms(0.99), "failed": predictor_result.failed,
            "rss_mb": predictor_rss as f64 / 1024.0},
        "mlflow": {"rps": mlflow_result.throughput(), "p50_ms": mlflow_result.percentile_ms(0.5),
            "p99_ms": mlflow_result.percentile_ms(0.99), "failed": mlflow_result.failed,
            "rss_mb": mlflow_rss as f64 / 1024.0, "workers": args.mlflow_workers},
        "throughput_ratio": ratio,
        "under_reload": {"reloads": reload_count, "rps": under_reload.throughput(),
            "failed": under_reload.failed, "p99_ms": under_reload.percentile_ms(0.99)},
    });
    std::fs::write(
        work.join("report.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    eprintln!("xtask: report in {}", work.join("report.json").display());
    if under_reload.failed > 0 || predictor_result.failed > 0 || with_shadow.failed > 0 {
        bail!("the predictor failed requests");
    }
    Ok(())
}
