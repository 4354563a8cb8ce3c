//! The soak's traffic: a client predicting through the Service, a sampler counting ready
//! pods (a failed prediction with no ready pod at all is told apart), and the relay in
//! front of MLflow that can answer 503.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::FM;
use crate::connection::Connection;

/// What the client and the pod sampler saw.
#[derive(Default)]
pub struct Traffic {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// Failures while (or within 2 s of when) no pod at all was ready.
    pub failed_without_ready_pod: AtomicU64,
    ready_pods: AtomicUsize,
    last_zero_ready: Mutex<Option<Instant>>,
    pub failures: Mutex<Vec<String>>,
}

impl Traffic {
    fn no_ready_pod_lately(&self) -> bool {
        self.ready_pods.load(Ordering::Relaxed) == 0
            || self
                .last_zero_ready
                .lock()
                .ok()
                .and_then(|t| *t)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
    }
}

/// Predicts through the Service (the API server's service proxy) the whole time.
pub async fn predict(api: SocketAddr, traffic: Arc<Traffic>, stop: Arc<AtomicBool>) {
    let path = format!("/api/v1/namespaces/default/services/{FM}-predictor:http/proxy/predict");
    let body = br#"{"instances": [[1, 15, 6, 0, 0, 950.0, 940.0, 900.0]]}"#;
    let mut conn: Option<Connection> = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            conn = Connection::open(api).await.ok();
        }
        let answer = match conn.as_mut() {
            Some(c) => tokio::time::timeout(Duration::from_secs(10), c.post(&path, body))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r),
            None => Err(anyhow::anyhow!("cannot connect to the API server")),
        };
        match answer {
            Ok((200, _)) => {
                traffic.ok.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                conn = None;
                traffic.failed.fetch_add(1, Ordering::Relaxed);
                let excused = traffic.no_ready_pod_lately();
                if excused {
                    traffic
                        .failed_without_ready_pod
                        .fetch_add(1, Ordering::Relaxed);
                }
                let what = match other {
                    Ok((status, body)) => format!("{status} {}", String::from_utf8_lossy(&body)),
                    Err(e) => e.to_string(),
                };
                if let Ok(mut f) = traffic.failures.lock()
                    && f.len() < 20
                {
                    f.push(format!(
                        "no ready pod: {excused}; {}",
                        what.chars().take(200).collect::<String>()
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Counts the ready predictor pods every 250 ms.
pub async fn sample_ready_pods(api: SocketAddr, traffic: Arc<Traffic>, stop: Arc<AtomicBool>) {
    let path = format!(
        "/api/v1/namespaces/default/pods?labelSelector=app.kubernetes.io%2Finstance%3D{FM}"
    );
    while !stop.load(Ordering::Relaxed) {
        let listed = match Connection::open(api).await {
            Ok(mut c) => c.get(&path).await.ok(),
            Err(_) => None,
        };
        if let Some((200, body)) = listed
            && let Ok(list) = serde_json::from_slice::<Value>(&body)
        {
            let ready = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .filter(|p| {
                    p["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
                .count();
            traffic.ready_pods.store(ready, Ordering::Relaxed);
            if ready == 0
                && let Ok(mut t) = traffic.last_zero_ready.lock()
            {
                *t = Some(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A TCP relay to MLflow that, while `unavailable`, answers every new request with 503.
pub async fn relay(port: u16, upstream: u16, unavailable: Arc<AtomicBool>) {
    let Ok(listener) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await else {
        eprintln!("xtask: soak: cannot listen on {port}");
        return;
    };
    while let Ok((mut inbound, _)) = listener.accept().await {
        let unavailable = unavailable.clone();
        tokio::spawn(async move {
            if unavailable.load(Ordering::Relaxed) {
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(1), inbound.read(&mut buf)).await;
                let _ = inbound
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                    .await;
                return;
            }
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
            {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}
