//! A real `mlflow server` on a free loopback port, with a sqlite backend and served
//! artifacts in a fresh directory; stopped (its whole process group) on drop.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Process groups this run started, stopped if xtask is interrupted (Ctrl-C, SIGTERM):
/// they run in their own groups, so the terminal's signal does not reach them.
static STARTED_GROUPS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

pub fn register_group(pid: u32) {
    if let Ok(mut g) = STARTED_GROUPS.lock() {
        g.push(pid);
    }
}

/// Installs the handler once: on SIGINT/SIGTERM, stop every registered group and exit.
pub fn stop_groups_on_signal() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::thread::spawn(|| {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            });
            let groups = STARTED_GROUPS.lock().map(|g| g.clone()).unwrap_or_default();
            for pid in groups {
                let _ = Command::new("kill")
                    .args(["-TERM", "--", &format!("-{pid}")])
                    .status();
            }
            eprintln!("xtask: interrupted; stopped what it started");
            std::process::exit(130);
        });
    });
}

pub struct MlflowServer {
    child: Child,
    port: u16,
    dir: PathBuf,
    python: PathBuf,
    admin_password: Option<String>,
}

/// A port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Username of the admin user of an authenticated server.
pub const AUTH_ADMIN: &str = "admin";

impl MlflowServer {
    /// A server without authentication.
    pub fn start(python: &Path) -> anyhow::Result<Self> {
        Self::start_with(python, None)
    }

    /// A server with MLflow's basic-auth app: every call needs `admin` and `password`
    /// (at least 12 characters).
    pub fn start_authenticated(python: &Path, password: &str) -> anyhow::Result<Self> {
        Self::start_with(python, Some(password))
    }

    fn start_with(python: &Path, admin_password: Option<&str>) -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = crate::root()
            .join("target")
            .join("xtask")
            .join(format!("mlflow-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let child = spawn_server(python, port, &dir, admin_password)?;
        let mut server = MlflowServer {
            child,
            port,
            dir,
            python: python.to_owned(),
            admin_password: admin_password.map(str::to_owned),
        };
        server.wait_healthy(Duration::from_secs(120))?;
        Ok(server)
    }

    /// Stops the server and starts it again on the same port with the same store (the
    /// soak's "MLflow restarted" fault).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.child = spawn_server(
            &self.python,
            self.port,
            &self.dir,
            self.admin_password.as_deref(),
        )?;
        self.wait_healthy(Duration::from_secs(120))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn stop(&mut self) {
        // The server forks workers: signal the whole group.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Starts `mlflow server` on `port` with its store in `dir`.
fn spawn_server(
    python: &Path,
    port: u16,
    dir: &Path,
    admin_password: Option<&str>,
) -> anyhow::Result<Child> {
    {
        let mlflow = python
            .parent()
            .map(|bin| bin.join("mlflow"))
            .context("virtualenv layout")?;
        let log = std::fs::File::create(dir.join("server.log"))?;
        let mut command = Command::new(mlflow);
        if let Some(password) = admin_password {
            let config = dir.join("basic_auth.ini");
            std::fs::write(
                &config,
                format!(
                    "[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{}\nadmin_username = {AUTH_ADMIN}\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
                    dir.join("basic_auth.db").display()
                ),
            )?;
            command
                .args(["server", "--app-name", "basic-auth"])
                .env("MLFLOW_AUTH_CONFIG_PATH", &config)
                .env("MLFLOW_AUTH_ADMIN_PASSWORD", password)
                .env("MLFLOW_FLASK_SERVER_SECRET_KEY", "forecast-operator-tests");
        } else {
            command.arg("server");
        }
        let child = command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--serve-artifacts")
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .args(["--workers", "1"])
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            // Webhooks to loopback targets (the operator's webhook tests).
            .env("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
            .env("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
            // New webhooks take effect at once (the default caches the list for 60 s).
            .env("MLFLOW_WEBHOOK_CACHE_TTL", "1")
            .env(
                "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY",
                "ZmVhdHVyZS1mb3JlY2FzdC1vcGVyYXRvci10ZXN0cy0=",
            )
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("cannot start mlflow server")?;
        stop_groups_on_signal();
        register_group(child.id());
        Ok(child)
    }
}

impl MlflowServer {
    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_healthy(&mut self, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "mlflow server exited with {status}; see {}",
                    self.dir.join("server.log").display()
                );
            }
            if health_ok(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        bail!(
            "mlflow server not healthy after {limit:?}; see {}",
            self.dir.join("server.log").display()
        )
    }
}

/// `GET /health` over a raw socket (keeps xtask free of an HTTP client).
fn health_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200")
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.stop();
    }
}
