//! Readiness and liveness probes as the kubelet runs them: `httpGet` (2xx/3xx passes) and
//! `tcpSocket`, after `initialDelaySeconds`, every `periodSeconds`, each within
//! `timeoutSeconds`, judged after `successThreshold` / `failureThreshold` in a row.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
    /// Not judged this pass (not due yet, or not enough results in a row).
    Pending,
}

#[derive(Debug, Default)]
pub struct ProbeState {
    /// When the container started.
    pub started: Option<Instant>,
    next: Option<Instant>,
    failures: i32,
    successes: i32,
}

impl ProbeState {
    pub fn started_at(at: Instant) -> Self {
        ProbeState {
            started: Some(at),
            ..ProbeState::default()
        }
    }

    pub async fn check(
        &mut self,
        probe: Option<&Probe>,
        container: &Container,
        ip: Ipv4Addr,
        started: Instant,
    ) -> Verdict {
        let Some(probe) = probe else {
            return Verdict::Passed;
        };
        let now = Instant::now();
        let due = self.next.unwrap_or_else(|| {
            started + Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64)
        });
        if now < due {
            return Verdict::Pending;
        }
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        self.next = Some(now + period);
        let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
        if run(probe, container, ip, timeout).await {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                return Verdict::Passed;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                return Verdict::Failed;
            }
        }
        Verdict::Pending
    }
}

/// A named or numbered container port.
fn port(value: &IntOrString, container: &Container) -> Option<u16> {
    match value {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// One client for every probe (no proxy: probes go to pod addresses only).
fn http_client() -> Option<&'static reqwest::Client> {
    static CLIENT: std::sync::OnceLock<Option<reqwest::Client>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            crate::install_crypto_provider();
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .ok()
        })
        .as_ref()
}

async fn run(probe: &Probe, container: &Container, ip: Ipv4Addr, timeout: Duration) -> bool {
    if let Some(http) = &probe.http_get {
        let Some(port) = port(&http.port, container) else {
            return false;
        };
        let host = http.host.clone().unwrap_or_else(|| ip.to_string());
        let scheme = http
            .scheme
            .as_deref()
            .unwrap_or("HTTP")
            .to_ascii_lowercase();
        let path = http.path.as_deref().unwrap_or("/");
        let url = format!("{scheme}://{host}:{port}{path}");
        let Some(client) = http_client() else {
            return false;
        };
        return matches!(
            client.get(&url).timeout(timeout).send().await,
            Ok(r) if r.status().is_success() || r.status().is_redirection()
        );
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = port(&tcp.port, container) else {
            return false;
        };
        return matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect((ip, port))).await,
            Ok(Ok(_))
        );
    }
    // exec and grpc probes are not run by this agent: never judged failed.
    true
}
