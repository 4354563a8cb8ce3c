//! Calls to a predictor pod: `/model/info`, `/reload-model`, `/predict`. Every call has a
//! deadline and every answer is read up to a cap (a pod runs an image the ForecastModel's
//! author chose).

use std::time::Duration;

use api::predictor::{ModelInfo, PredictResponse, ReloadResponse, ShadowResponse};
use serde::de::DeserializeOwned;
use serde_json::json;

/// The largest answer read from a predictor (model info, reload, one prediction).
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// How much of a refusal's body goes into an error message.
const MAX_MESSAGE_CHARS: usize = 512;

/// The predictor route a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Info,
    Reload,
    Smoke,
    Metrics,
    LoadShadow,
    UnloadShadow,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Call::Info => "GET /model/info",
            Call::Reload => "POST /reload-model",
            Call::Smoke => "smoke prediction",
            Call::Metrics => "GET /metrics",
            Call::LoadShadow => "POST /shadow-model",
            Call::UnloadShadow => "DELETE /shadow-model",
        })
    }
}

/// Why a call to a predictor pod gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum PredictorError {
    /// No answer: connection refused, reset, or the deadline passed.
    #[error("{call}: {source}")]
    Transport {
        call: Call,
        #[source]
        source: reqwest::Error,
    },
    /// The pod answered with an error status; `message` is its own explanation.
    #[error("{call} answered {status}: {message}")]
    Refused {
        call: Call,
        status: u16,
        message: String,
    },
    /// The answer was not what the predictor API promises (or larger than the cap).
    #[error("{call}: unreadable answer: {detail}")]
    BadAnswer { call: Call, detail: String },
    #[error("smoke prediction is not finite ({0})")]
    NotFinite(f64),
    #[error("smoke prediction returned nothing")]
    NoPrediction,
}

#[derive(Clone)]
pub struct PredictorClient {
    http: reqwest::Client,
}

impl PredictorClient {
    pub fn new(http: reqwest::Client) -> Self {
        PredictorClient { http }
    }

    /// What the pod serves.
    pub async fn info(&self, base: &str, timeout: Duration) -> Result<ModelInfo, PredictorError> {
        let request = self.http.get(format!("{base}/model/info")).timeout(timeout);
        call(Call::Info, request).await
    }

    /// Asks the pod to load `version`.
    pub async fn reload(
        &self,
        base: &str,
        token: &str,
        version: &str,
        timeout: Duration,
    ) -> Result<ReloadResponse, PredictorError> {
        let body = json!({ "version": version });
        let request = self
            .signed(
                reqwest::Method::POST,
                base,
                "/reload-model",
                token,
                Some(&body),
            )
            .timeout(timeout);
        call(Call::Reload, request).await
    }

    /// Predicts one row; the value must be finite.
    pub async fn smoke(
        &self,
        base: &str,
        row: &[f64],
        timeout: Duration,
    ) -> Result<f64, PredictorError> {
        let request = self
            .http
            .post(format!("{base}/predict"))
            .json(&json!({ "instances": [row] }))
            .timeout(timeout);
        let answer: PredictResponse = call(Call::Smoke, request).await?;
        match answer.predictions.first() {
            Some(v) if v.is_finite() => Ok(*v),
            Some(v) => Err(PredictorError::NotFinite(*v)),
            None => Err(PredictorError::NoPrediction),
        }
    }
}

impl PredictorClient {
    /// The pod's metrics page (read for canary verdicts and the shadow's comparison).
    pub async fn metrics(&self, base: &str, timeout: Duration) -> Result<String, PredictorError> {
        let request = self.http.get(format!("{base}/metrics")).timeout(timeout);
        let body = read(Call::Metrics, request).await?;
        String::from_utf8(body).map_err(|e| PredictorError::BadAnswer {
            call: Call::Metrics,
            detail: e.to_string(),
        })
    }

    /// Asks the pod to load `version` as its shadow challenger.
    pub async fn load_shadow(
        &self,
        base: &str,
        token: &str,
        version: &str,
        timeout: Duration,
    ) -> Result<ShadowResponse, PredictorError> {
        let body = json!({ "version": version });
        let request = self
            .signed(
                reqwest::Method::POST,
                base,
                "/shadow-model",
                token,
                Some(&body),
            )
            .timeout(timeout);
        call(Call::LoadShadow, request).await
    }

    /// Asks the pod to unload its shadow.
    pub async fn unload_shadow(
        &self,
        base: &str,
        token: &str,
        timeout: Duration,
    ) -> Result<ShadowResponse, PredictorError> {
        let request = self
            .signed(reqwest::Method::DELETE, base, "/shadow-model", token, None)
            .timeout(timeout);
        call(Call::UnloadShadow, request).await
    }

    /// An admin call signed with the token (`api::admin_signature`) for this pod's address,
    /// now, with a fresh nonce: the token itself never leaves the operator.
    fn signed(
        &self,
        method: reqwest::Method,
        base: &str,
        path: &str,
        token: &str,
        body: Option<&serde_json::Value>,
    ) -> reqwest::RequestBuilder {
        let url = format!("{base}{path}");
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        // What reqwest sends as Host: the port only when it is not the scheme's default.
        let authority = reqwest::Url::parse(&url)
            .ok()
            .and_then(|u| {
                let host = u.host_str()?.to_owned();
                Some(match u.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                })
            })
            .unwrap_or_default();
        let header = api::admin_signature::SignedRequest {
            method: method.as_str(),
            path,
            authority: &authority,
            body: &bytes,
        }
        .sign(
            token,
            chrono::Utc::now().timestamp(),
            &uuid::Uuid::new_v4().simple().to_string(),
        );
        let mut request = self
            .http
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, header);
        if body.is_some() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        request
    }
}

/// Sends `request` and reads its JSON answer, at most [`MAX_ANSWER_BYTES`].
async fn call<T: DeserializeOwned>(
    call: Call,
    request: reqwest::RequestBuilder,
) -> Result<T, PredictorError> {
    let body = read(call, request).await?;
    serde_json::from_slice(&body).map_err(|e| PredictorError::BadAnswer {
        call,
        detail: e.to_string(),
    })
}

/// Sends `request` and reads a successful answer's body, at most [`MAX_ANSWER_BYTES`].
async fn read(call: Call, request: reqwest::RequestBuilder) -> Result<Vec<u8>, PredictorError> {
    let transport = |source| PredictorError::Transport { call, source };
    let mut response = request.send().await.map_err(transport)?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(PredictorError::BadAnswer {
                call,
                detail: format!("larger than {MAX_ANSWER_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        return Err(PredictorError::Refused {
            call,
            status: status.as_u16(),
            message: refusal_message(&body),
        });
    }
    Ok(body)
}

/// The `message` of a predictor's JSON error, else the body's text, shortened.
fn refusal_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    truncate(&message, MAX_MESSAGE_CHARS)
}

/// `text` cut to at most `max` characters (marked when cut).
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod on loopback that records the request it gets and refuses it.
    async fn recording_pod() -> (String, tokio::sync::oneshot::Receiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = conn.read(&mut buf).await.unwrap();
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            let _ = conn
                .write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        (base, rx)
    }

    #[tokio::test]
    async fn admin_calls_carry_a_signature_for_the_pod_and_never_the_token() {
        mlflow::install_crypto_provider();
        let client = PredictorClient::new(reqwest::Client::new());
        let (base, request) = recording_pod().await;
        let authority = base.trim_start_matches("http://").to_owned();
        let _ = client
            .reload(&base, "s3cret-token", "7", Duration::from_secs(5))
            .await;
        let request = request.await.unwrap();
        assert!(!request.contains("s3cret-token"), "{request}");
        let header = request
            .lines()
            .find_map(|l| l.strip_prefix("authorization: "))
            .expect("an Authorization header");
        let body = request.split("\r\n\r\n").nth(1).unwrap_or_default();
        let signed = api::admin_signature::SignedRequest {
            method: "POST",
            path: "/reload-model",
            authority: &authority,
            body: body.as_bytes(),
        };
        let now = chrono::Utc::now().timestamp();
        assert!(
            signed.verify("s3cret-token", header, now).is_ok(),
            "{request}"
        );
        assert!(signed.verify("other", header, now).is_err());
        // The same for unloading a shadow (no body).
        let (base, request) = recording_pod().await;
        let _ = client
            .unload_shadow(&base, "s3cret-token", Duration::from_secs(5))
            .await;
        let request = request.await.unwrap();
        assert!(!request.contains("s3cret-token"), "{request}");
        assert!(request.contains("Forecast-HMAC-SHA256 t="), "{request}");
    }

    #[test]
    fn a_refusal_says_the_predictors_own_message_shortened() {
        let body = br#"{"error": "invalid_model", "message": "version 9 does not load"}"#;
        assert_eq!(refusal_message(body), "version 9 does not load");
        assert_eq!(refusal_message(b"plain text"), "plain text");
        let long = "x".repeat(2000);
        let cut = refusal_message(long.as_bytes());
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("héllo", 2), "hé…");
    }
}
