//! The operator's HTTP endpoints: `/metrics`, `/health`, `/ready` on the metrics address,
//! and `POST /webhooks/mlflow` on the webhook address.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use api::forecast_model::ForecastModel;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::webhook;

pub struct HealthState {
    pub metrics: Arc<Metrics>,
    /// True once the process serves (standby replicas are ready too).
    pub ready: AtomicBool,
}

#[get("/metrics")]
async fn metrics(state: web::Data<HealthState>) -> HttpResponse {
    match state.metrics.encode() {
        Ok(text) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(text),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

#[get("/health")]
async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[get("/ready")]
async fn ready(state: web::Data<HealthState>) -> HttpResponse {
    if state.ready.load(Ordering::Relaxed) {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "starting"}))
    }
}

pub fn health_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(metrics).service(health).service(ready);
}

pub struct WebhookState {
    pub client: kube::Client,
    pub store: Store<ForecastModel>,
    pub trigger: UnboundedSender<ObjectRef<ForecastModel>>,
    /// The operator-wide secret (`WEBHOOK_SECRET`).
    pub secret: Option<String>,
    /// Accept deliveries when no secret is configured (`WEBHOOK_ALLOW_UNSIGNED`).
    pub allow_unsigned: bool,
    /// Delivery ids seen recently.
    pub deliveries: crate::webhook::Deliveries,
    /// ForecastModels' webhook secrets, as last read.
    pub secrets: crate::webhook::SecretCache,
    pub metrics: Arc<Metrics>,
    /// Answers about the delivery's model are forgotten before reconciling.
    pub registry: Arc<Registry>,
}

fn reject(
    state: &WebhookState,
    status: actix_web::http::StatusCode,
    message: &str,
) -> HttpResponse {
    Metrics::count(&state.metrics.webhooks, "rejected");
    HttpResponse::build(status).json(json!({"error": message}))
}

/// The webhook secrets of matching ForecastModels (Secret key `secret`), each read at most
/// once per [`crate::webhook::SECRET_TTL`].
async fn model_secrets(state: &WebhookState, models: &[Arc<ForecastModel>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for fm in models {
        let Some(name) = &fm.spec.registry.webhook_secret else {
            continue;
        };
        let ns = fm.namespace().unwrap_or_default();
        let now = std::time::Instant::now();
        let value = match state.secrets.get(&ns, name, now) {
            Some(known) => known,
            None => {
                let secrets: Api<Secret> = Api::namespaced(state.client.clone(), &ns);
                let value = match secrets.get(name).await {
                    Ok(s) => crate::secrets::check_type(&s, crate::secrets::WEBHOOK)
                        .ok()
                        .and_then(|()| crate::secrets::secret_bytes(&s, "secret")),
                    Err(_) => None,
                };
                state.secrets.record(&ns, name, value.clone(), now);
                value
            }
        };
        out.extend(value);
    }
    out
}

/// The client a standby relays deliveries with: short deadlines, no redirects.
pub fn relay_client() -> reqwest::Client {
    mlflow::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// The webhook listener of every replica. The leader handles deliveries itself; a standby
/// relays each to the leader the Lease names, so a delivery the Service happens to send to
/// a standby is never refused.
pub struct WebhookEndpoint {
    /// Set once this replica leads.
    pub local: std::sync::OnceLock<WebhookState>,
    pub elector: Option<Arc<crate::leader::LeaderElector>>,
    /// For relaying (short deadlines).
    pub http: reqwest::Client,
    pub metrics: Arc<Metrics>,
}

/// Marks a relayed delivery: it is never relayed again.
const RELAYED_HEADER: &str = "x-forecast-relayed";
/// The headers a delivery's signature check needs, passed on when relaying.
const DELIVERY_HEADERS: [&str; 4] = [
    "content-type",
    "x-mlflow-signature",
    "x-mlflow-delivery-id",
    "x-mlflow-timestamp",
];
/// The most of the leader's answer a relay passes back.
const RELAY_ANSWER_LIMIT: usize = 64 * 1024;

#[post("/webhooks/mlflow")]
async fn mlflow_webhook(
    endpoint: web::Data<WebhookEndpoint>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    match endpoint.local.get() {
        Some(state) => handle(state, &req, body).await,
        None => relay(&endpoint, &req, body).await,
    }
}

/// A standby's answer: the leader's, or 503 (MLflow retries) when no leader can be reached.
async fn relay(endpoint: &WebhookEndpoint, req: &HttpRequest, body: web::Bytes) -> HttpResponse {
    let unavailable = |message: &str| {
        Metrics::count(&endpoint.metrics.webhooks, "unrelayed");
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(json!({"error": message}))
    };
    if req.headers().contains_key(RELAYED_HEADER) {
        return unavailable("relayed to a replica that does not lead; retry");
    }
    let address = match &endpoint.elector {
        Some(e) => e.leader_webhook_address(),
        None => None,
    };
    let Some(address) = address else {
        return unavailable("no leader is known yet; retry");
    };
    // A socket address (checked when read from the Lease), so the URL has no room for a
    // path, user-info or another host; the client follows no redirects.
    let mut request = endpoint
        .http
        .post(format!("http://{address}/webhooks/mlflow"))
        .header(RELAYED_HEADER, "1")
        .body(body);
    for name in DELIVERY_HEADERS {
        if let Some(v) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
            request = request.header(name, v);
        }
    }
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(leader = %address, error = %e, "cannot relay a webhook delivery");
            return unavailable("the leader cannot be reached; retry");
        }
    };
    let status = actix_web::http::StatusCode::from_u16(response.status().as_u16())
        .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    let mut answer = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        if answer.len() + chunk.len() > RELAY_ANSWER_LIMIT {
            break;
        }
        answer.extend_from_slice(&chunk);
    }
    Metrics::count(&endpoint.metrics.webhooks, "relayed");
    HttpResponse::build(status)
        .content_type("application/json")
        .body(answer)
}

/// The leader's handling of a delivery: verify, de-duplicate, wake the ForecastModels.
async fn handle(state: &WebhookState, req: &HttpRequest, body: web::Bytes) -> HttpResponse {
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return reject(
            state,
            actix_web::http::StatusCode::BAD_REQUEST,
            "the body is not JSON",
        );
    };
    let Some(model) = webhook::model_name(&payload) else {
        Metrics::count(&state.metrics.webhooks, "ignored");
        return HttpResponse::Ok()
            .json(json!({"triggered": 0, "reason": "not a model-registry event"}));
    };
    let matching: Vec<Arc<ForecastModel>> = state
        .store
        .state()
        .into_iter()
        .filter(|fm| fm.spec.model.name == model)
        .collect();
    let mut secrets: Vec<Vec<u8>> = state.secret.iter().map(|s| s.as_bytes().to_vec()).collect();
    secrets.extend(model_secrets(state, &matching).await);
    if secrets.is_empty() && !state.allow_unsigned {
        return reject(
            state,
            actix_web::http::StatusCode::UNAUTHORIZED,
            "unsigned deliveries are refused: configure WEBHOOK_SECRET or the ForecastModel's \
             webhookSecret (or set WEBHOOK_ALLOW_UNSIGNED=true)",
        );
    }
    if !secrets.is_empty() {
        let header = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let (signature, delivery, timestamp) = (
            header("x-mlflow-signature"),
            header("x-mlflow-delivery-id"),
            header("x-mlflow-timestamp"),
        );
        let now = chrono::Utc::now().timestamp();
        if !webhook::fresh(timestamp, now) {
            return reject(
                state,
                actix_web::http::StatusCode::UNAUTHORIZED,
                "missing or stale X-MLflow-Timestamp",
            );
        }
        if !secrets
            .iter()
            .any(|s| webhook::signature_valid(s, delivery, timestamp, &body, signature))
        {
            return reject(
                state,
                actix_web::http::StatusCode::UNAUTHORIZED,
                "invalid X-MLflow-Signature",
            );
        }
        if !delivery.is_empty() && !state.deliveries.first_time(delivery) {
            Metrics::count(&state.metrics.webhooks, "duplicate");
            return HttpResponse::Ok()
                .json(json!({"triggered": 0, "reason": "duplicate delivery"}));
        }
    }
    state.registry.forget_model(&model);
    for fm in &matching {
        let _ = state.trigger.send(ObjectRef::from_obj(fm.as_ref()));
    }
    Metrics::count(&state.metrics.webhooks, "accepted");
    tracing::info!(model = %model, triggered = matching.len(), "MLflow webhook: reconciling early");
    HttpResponse::Ok().json(json!({"triggered": matching.len()}))
}

pub fn webhook_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(mlflow_webhook);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_relay_client_follows_no_redirect() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Where a redirect would send the delivery (and its signature headers).
        let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let elsewhere_addr = elsewhere.local_addr().unwrap();
        let reached = Arc::new(AtomicBool::new(false));
        let flag = reached.clone();
        tokio::spawn(async move {
            if elsewhere.accept().await.is_ok() {
                flag.store(true, Ordering::SeqCst);
            }
        });
        let leader = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let leader_addr = leader.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = leader.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{elsewhere_addr}/x\r\ncontent-length: 0\r\n\r\n"
            );
            let _ = s.write_all(answer.as_bytes()).await;
        });
        let response = relay_client()
            .post(format!("http://{leader_addr}/webhooks/mlflow"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 307);
        assert!(!reached.load(Ordering::SeqCst), "the redirect was followed");
    }
}
