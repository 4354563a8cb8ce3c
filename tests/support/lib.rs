//! Support for end-to-end tests: the MLflow server `cargo xtask test` started, the
//! project's binaries as real processes, and small helpers a user would use (curl-like
//! HTTP, forecastctl).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod browser;
pub mod cluster;
pub mod fleet;
pub mod forecasters;

use anyhow::{Context, bail};
use serde_json::Value;

/// The MLflow server under test (set by `cargo xtask test`).
pub fn tracking_uri() -> String {
    std::env::var("MLFLOW_TRACKING_URI").expect(
        "MLFLOW_TRACKING_URI is not set: run the tests with `cargo xtask test`, \
         which starts a real MLflow server",
    )
}

/// An MLflow client for the server under test.
pub fn mlflow_client() -> mlflow::MlflowClient {
    mlflow::install_crypto_provider();
    mlflow::MlflowClient::new(mlflow::ClientConfig::new(tracking_uri())).expect("MLflow client")
}

/// Where the project's binaries are.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("FORECAST_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build with `cargo build --workspace --bins` (cargo xtask test does)",
        path.display()
    );
    path
}

/// The Python of the test virtualenv.
pub fn python() -> PathBuf {
    std::env::var_os("FORECAST_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"))
}

/// Runs `tests/python/<script> --name NAME --out <dir>/report.json` (with the test MLflow,
/// and `extra` arguments; `{dir}` in them is the report's directory) and answers that
/// directory and the report it wrote. Panics with the script's stderr when it fails.
pub fn python_report(script: &str, name: &str, extra: &[&str]) -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let report_path = dir.path().join("report.json");
    let here = dir.path().to_string_lossy().into_owned();
    let out = Command::new(python())
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("python")
                .join(script),
        )
        .args(["--name", name, "--out"])
        .arg(&report_path)
        .args(extra.iter().map(|a| a.replace("{dir}", &here)))
        .env("MLFLOW_TRACKING_URI", tracking_uri())
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report =
        serde_json::from_slice(&std::fs::read(&report_path).expect("report")).expect("report JSON");
    (dir, report)
}

/// A registered-model name no other test uses.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// A loopback port free right now, for a process the test starts to listen on.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A loopback port nothing listens on (for "registry is down"): 9, below the range the
/// kernel gives out for `PORT=0` and outgoing connections, so no other test's process can
/// come to listen there meanwhile (a free ephemeral port could, and did: a predictor of a
/// parallel test took one and answered 404 as "the registry").
pub fn closed_port() -> u16 {
    const PORT: u16 = 9;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", PORT)).is_err(),
        "something listens on 127.0.0.1:{PORT}, which the tests use as a closed port"
    );
    PORT
}

/// Runs `forecastctl` with the test registry; returns stdout, or an error with stderr.
pub fn forecastctl(args: &[&str]) -> anyhow::Result<String> {
    let out = forecastctl_output(args)?;
    if !out.status.success() {
        bail!(
            "forecastctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn forecastctl_output(args: &[&str]) -> anyhow::Result<Output> {
    Command::new(bin("forecastctl"))
        .args(args)
        .env("MLFLOW_TRACKING_URI", tracking_uri())
        .output()
        .context("running forecastctl")
}

/// The tests' MLflow with basic auth (`cargo xtask test` starts it): URI, username,
/// password.
pub fn authenticated_registry() -> (String, String, String) {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run the tests with `cargo xtask test`, which starts an MLflow with basic auth")
        })
    };
    (
        var("MLFLOW_AUTH_TRACKING_URI"),
        var("MLFLOW_AUTH_USERNAME"),
        var("MLFLOW_AUTH_PASSWORD"),
    )
}

/// Runs `forecastctl` against the authenticated registry with these credentials.
pub fn forecastctl_authenticated(
    args: &[&str],
    username: &str,
    password: &str,
) -> anyhow::Result<Output> {
    let (uri, _, _) = authenticated_registry();
    Command::new(bin("forecastctl"))
        .args(args)
        .env("MLFLOW_TRACKING_URI", uri)
        .env("MLFLOW_TRACKING_USERNAME", username)
        .env("MLFLOW_TRACKING_PASSWORD", password)
        .output()
        .context("running forecastctl")
}

/// Trains a small archive-forecast model into `dir` with `seed`.
pub fn train(dir: &Path, seed: u64) -> anyhow::Result<()> {
    forecastctl(&[
        "train",
        "--out",
        &dir.to_string_lossy(),
        "--seed",
        &seed.to_string(),
        "--trees",
        "40",
        "--days",
        "900",
    ])
    .map(|_| ())
}

/// Trains and registers a model; returns the new version.
pub fn train_and_register(name: &str, seed: u64, extra: &[&str]) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let model_dir = dir.path().join("model");
    train(&model_dir, seed)?;
    let mut args = vec![
        "register",
        "--model-dir",
        model_dir.to_str().context("utf-8 path")?,
        "--name",
        name,
    ];
    args.extend_from_slice(extra);
    forecastctl(&args)
}

/// A model directory whose `ensemble.json` is truncated, as a broken upload leaves it.
pub fn write_corrupt_model(dir: &Path, seed: u64) -> anyhow::Result<()> {
    train(dir, seed)?;
    std::fs::write(
        dir.join("ensemble.json"),
        b"{\"format_version\": 1, \"trees\": [",
    )?;
    Ok(())
}

/// Registers `dir` as a new version of `name` through the MLflow API, without the
/// validation `forecastctl register` does (how a broken version reaches a registry).
pub async fn register_raw(name: &str, dir: &Path) -> anyhow::Result<String> {
    let client = mlflow_client();
    let exp = client.ensure_experiment("e2e-corrupt").await?;
    let run = client.create_run(&exp, "corrupt", &[]).await?;
    let uri = format!("{}/model", run.info.artifact_uri);
    client.upload_dir(dir, &uri).await?;
    Ok(client
        .create_model_version(name, &uri, Some(&run.info.run_id))
        .await?
        .version)
}

/// A running `forecast-predictor` process on its own port; killed on drop.
pub struct Predictor {
    child: Child,
    pub url: String,
    logs: mpsc::Receiver<String>,
    start_logs: std::sync::Mutex<Vec<String>>,
}

impl Predictor {
    /// Starts the predictor with `env` (PORT=0: it reports the port it got in its log).
    pub fn start(env: &[(&str, String)]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin("forecast-predictor"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BIND_ADDR", "127.0.0.1")
            .env("PORT", "0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env("PREDICTOR_WORKERS", "2")
            .env("PREDICTOR_RETRY_SECONDS", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting forecast-predictor")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let listening = serde_json::from_str::<Value>(&line)
                        .ok()
                        .filter(|v| v["message"] == "listening")
                        .and_then(|v| v["address"].as_str().map(str::to_owned));
                    if let Some(address) = listening {
                        seen.push(line);
                        return Ok(Predictor {
                            child,
                            url: format!("http://{address}"),
                            logs: rx,
                            start_logs: std::sync::Mutex::new(seen),
                        });
                    }
                    seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = child.try_wait()? {
                        bail!("predictor exited with {status}; log:\n{}", seen.join("\n"));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait()?;
                    bail!("predictor exited with {status}; log:\n{}", seen.join("\n"));
                }
            }
        }
        let _ = child.kill();
        bail!(
            "predictor did not start listening in 60 s; log:\n{}",
            seen.join("\n")
        )
    }

    /// Log lines printed since the last call (the first call includes start-up).
    pub fn drain_logs(&self) -> Vec<String> {
        let mut lines = match self.start_logs.lock() {
            Ok(mut early) => std::mem::take(&mut *early),
            Err(_) => Vec::new(),
        };
        lines.extend(self.logs.try_iter());
        lines
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Predictor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client for the tests.
pub fn http() -> reqwest::Client {
    mlflow::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client")
}

/// GET and decode JSON, returning the status too.
/// A text page such as `/metrics`.
pub async fn get_text(url: &str) -> anyhow::Result<String> {
    Ok(reqwest::get(url).await?.error_for_status()?.text().await?)
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> anyhow::Result<(u16, Value)> {
    let r = client.get(url).send().await?;
    let status = r.status().as_u16();
    let body = r.json::<Value>().await.context("JSON body")?;
    Ok((status, body))
}

/// POST a raw body (sent as JSON) and decode the JSON answer, returning the status too.
pub async fn post_raw(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
    token: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    post_typed(client, url, "application/json", body, token).await
}

/// POSTs `body` with this `Content-Type`; the answer must be JSON.
pub async fn post_typed(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
    token: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    let mut req = client
        .post(url)
        .header("content-type", content_type)
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    let text = r.text().await?;
    let body = serde_json::from_str(&text)
        .with_context(|| format!("answer is not JSON (HTTP {status}): {text}"))?;
    Ok((status, body))
}

pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    token: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    post_raw(client, url, body.to_string(), token).await
}

/// A valid archive-forecast feature row.
pub fn archive_row(day: u32) -> Value {
    serde_json::json!([
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

/// The test MLflow's `host:port` (relays in front of it connect there).
fn mlflow_address() -> std::net::SocketAddr {
    tracking_uri()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("MLFLOW_TRACKING_URI is http://host:port")
}

/// A TCP relay in front of MLflow that can be switched off: the registry "stops" for
/// the operator and the pods (new connections refused, open ones cut) while the real
/// server keeps running for other tests.
pub struct RegistrySwitch {
    pub url: String,
    up: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RegistrySwitch {
    pub async fn start() -> Self {
        let upstream = mlflow_address();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (up, state) = tokio::sync::watch::channel(true);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*state.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut state = state.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = state.wait_for(|up| !*up) => {}
                        }
                    }
                });
            }
        });
        RegistrySwitch { url, up, task }
    }

    /// Up: connections reach MLflow; down: refused, and open ones are cut.
    pub fn set(&self, up: bool) {
        let _ = self.up.send(up);
    }
}

/// An HTTP relay in front of MLflow that can make artifact downloads fail with 503 (as a
/// storage backend or a proxy in trouble would) while the registry API keeps answering.
/// Each connection carries one request (`Connection: close` is added upstream), so every
/// request is looked at.
pub struct ArtifactFaults {
    pub url: String,
    failing: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ArtifactFaults {
    pub async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = mlflow_address();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (failing, state) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    // The request head.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match inbound.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                        if head.len() > 64 * 1024 {
                            return;
                        }
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let artifact = text
                        .split_whitespace()
                        .nth(1)
                        .is_some_and(|p| p.starts_with("/api/2.0/mlflow-artifacts/artifacts/"));
                    if artifact && *state.borrow() {
                        let _ = inbound
                            .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                            .await;
                        return;
                    }
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    // One request per connection: ask the server to close after answering.
                    let end = text.find("\r\n").unwrap_or(0);
                    let mut forwarded = head[..end].to_vec();
                    forwarded.extend_from_slice(b"\r\nConnection: close");
                    forwarded.extend_from_slice(&head[end..]);
                    if outbound.write_all(&forwarded).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        ArtifactFaults { url, failing, task }
    }

    /// Failing: artifact downloads answer 503; the registry API is unaffected.
    pub fn set_failing(&self, failing: bool) {
        let _ = self.failing.send(failing);
    }
}

impl Drop for ArtifactFaults {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Drop for RegistrySwitch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
