//! The benchmarks' load generator: keep-alive connections POSTing bodies back to back,
//! every latency kept; and waiting for a server to answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::connection::Connection;
use crate::server::Server;

#[derive(Debug, Default)]
pub struct LoadResult {
    pub ok: u64,
    pub failed: u64,
    pub seconds: f64,
    pub latencies_us: Vec<u64>,
}

impl LoadResult {
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.seconds
    }
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// `concurrency` connections POSTing `bodies` to `path` round-robin for `duration`.
pub async fn load(
    addr: SocketAddr,
    path: &'static str,
    bodies: Arc<Vec<Vec<u8>>>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (bodies, stop, failed) = (bodies.clone(), stop.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut conn = Connection::open(addr).await.ok();
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let body = &bodies[i % bodies.len()];
                let t = Instant::now();
                let outcome = match conn.as_mut() {
                    Some(c) => c.post(path, body).await,
                    None => Err(anyhow::anyhow!("not connected")),
                };
                match outcome {
                    Ok((200, _)) => latencies.push(t.elapsed().as_micros() as u64),
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        conn = Connection::open(addr).await.ok();
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await?);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    Ok(LoadResult {
        ok: latencies_us.len() as u64,
        failed: failed.load(Ordering::Relaxed),
        seconds,
        latencies_us,
    })
}

/// One POST on a fresh connection; true when it answered 200.
pub async fn post_once(addr: SocketAddr, path: &str, body: &[u8]) -> bool {
    match Connection::open(addr).await {
        Ok(mut c) => matches!(c.post(path, body).await, Ok((200, _))),
        Err(_) => false,
    }
}

pub async fn wait_for(
    addr: SocketAddr,
    path: &str,
    body: &[u8],
    server: &mut Server,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if let Some(status) = server.child.try_wait()? {
            bail!("{} exited with {status}", server.name);
        }
        if post_once(addr, path, body).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    bail!("{} did not answer in time", server.name)
}

/// A predictor binary serving `model` from disk (its registry a closed port) on loopback,
/// with `extra` environment; the server and its address.
pub fn serve_from_disk(
    name: &'static str,
    binary: &std::path::Path,
    model: &std::path::Path,
    extra: &[(&str, &str)],
    log: &std::path::Path,
) -> anyhow::Result<(Server, SocketAddr)> {
    let port = crate::mlflow_server::free_port()?;
    let registry = format!("http://127.0.0.1:{}", crate::mlflow_server::free_port()?);
    let mut cmd = std::process::Command::new(binary);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MLFLOW_TRACKING_URI", registry)
        .env("MODEL_FALLBACK_DIR", model)
        .env("BIND_ADDR", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let server = crate::server::spawn(name, &mut cmd, log)?;
    Ok((server, ([127, 0, 0, 1], port).into()))
}
