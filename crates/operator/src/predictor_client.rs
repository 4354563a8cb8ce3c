//! Calls to a predictor pod: `/model/info`, `/reload-model`, `/predict`.

use std::time::Duration;

use api::predictor::{ModelInfo, PredictResponse, ReloadResponse};
use serde_json::json;

#[derive(Clone)]
pub struct PredictorClient {
    http: reqwest::Client,
}

impl PredictorClient {
    pub fn new(http: reqwest::Client) -> Self {
        PredictorClient { http }
    }

    pub async fn info(&self, base: &str, timeout: Duration) -> Result<ModelInfo, String> {
        let r = self
            .http
            .get(format!("{base}/model/info"))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("GET /model/info: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("GET /model/info answered {}", r.status()));
        }
        r.json().await.map_err(|e| format!("GET /model/info: {e}"))
    }

    /// Asks the pod to load `version`; answers the pod's error message on failure.
    pub async fn reload(
        &self,
        base: &str,
        token: &str,
        version: &str,
        timeout: Duration,
    ) -> Result<ReloadResponse, String> {
        let r = self
            .http
            .post(format!("{base}/reload-model"))
            .bearer_auth(token)
            .json(&json!({ "version": version }))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("POST /reload-model: {e}"))?;
        let status = r.status();
        let body = r
            .text()
            .await
            .map_err(|e| format!("POST /reload-model: {e}"))?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or(body);
            return Err(format!(
                "reload to version {version} failed ({status}): {message}"
            ));
        }
        serde_json::from_str(&body).map_err(|e| format!("POST /reload-model: {e}"))
    }

    /// Predicts one row; the value must be finite.
    pub async fn smoke(&self, base: &str, row: &[f64], timeout: Duration) -> Result<f64, String> {
        let r = self
            .http
            .post(format!("{base}/predict"))
            .json(&json!({ "instances": [row] }))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("smoke prediction: {e}"))?;
        if !r.status().is_success() {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            return Err(format!("smoke prediction answered {status}: {text}"));
        }
        let p: PredictResponse = r
            .json()
            .await
            .map_err(|e| format!("smoke prediction: {e}"))?;
        match p.predictions.first() {
            Some(v) if v.is_finite() => Ok(*v),
            Some(v) => Err(format!("smoke prediction is not finite ({v})")),
            None => Err("smoke prediction returned nothing".into()),
        }
    }
}
