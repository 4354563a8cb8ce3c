//! MLflow model-registry webhooks: a delivery only wakes the reconcile of the
//! ForecastModels naming that model early; polling stays the source of truth.
//!
//! Signature (MLflow 3): `X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret,
//! "<X-MLflow-Delivery-Id>.<X-MLflow-Timestamp>.<body>")>`.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Oldest delivery accepted, against replays.
pub const MAX_AGE_SECONDS: i64 = 300;

/// Checks a delivery's signature against `secret` (constant-time compare).
pub fn signature_valid(
    secret: &[u8],
    delivery_id: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
) -> bool {
    let Some(given) = header.strip_prefix("v1,") else {
        return false;
    };
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(given.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(delivery_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// Whether the delivery's timestamp (seconds since the epoch) is recent enough.
pub fn fresh(timestamp: &str, now_seconds: i64) -> bool {
    timestamp
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|t| now_seconds.checked_sub(t))
        .and_then(i64::checked_abs)
        .is_some_and(|age| age <= MAX_AGE_SECONDS)
}

/// Delivery ids seen in the last [`MAX_AGE_SECONDS`]: a replayed delivery (MLflow retries,
/// or someone resending a captured one) is answered without waking anything.
#[derive(Default)]
pub struct Deliveries {
    seen: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// At most this many ids are remembered (older ones go first).
const MAX_REMEMBERED: usize = 10_000;

impl Deliveries {
    /// Records `id`; false when it was seen less than five minutes ago.
    pub fn first_time(&self, id: &str) -> bool {
        let window = std::time::Duration::from_secs(MAX_AGE_SECONDS as u64);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.get(id).is_some_and(|at| at.elapsed() < window) {
            return false;
        }
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, at| at.elapsed() < window);
            if seen.len() >= MAX_REMEMBERED {
                seen.clear();
            }
        }
        seen.insert(id.to_owned(), std::time::Instant::now());
        true
    }
}

/// ForecastModels' webhook secrets as last read (`None`: unusable), each kept
/// [`SECRET_TTL`]: the leader checks a delivery's signature against them before anything
/// else, and an unsigned flood naming a model must not become one Secret read per
/// delivery.
#[derive(Default)]
pub struct SecretCache {
    read: std::sync::Mutex<std::collections::HashMap<(String, String), Read>>,
}

type Read = (std::time::Instant, Option<Vec<u8>>);

/// How long a webhook Secret's value is used before it is read again.
pub const SECRET_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl SecretCache {
    /// The value read for `namespace/name` less than [`SECRET_TTL`] before `now`, if any.
    pub fn get(
        &self,
        namespace: &str,
        name: &str,
        now: std::time::Instant,
    ) -> Option<Option<Vec<u8>>> {
        let read = self.read.lock().unwrap_or_else(|p| p.into_inner());
        read.get(&(namespace.to_owned(), name.to_owned()))
            .filter(|(at, _)| now.saturating_duration_since(*at) < SECRET_TTL)
            .map(|(_, v)| v.clone())
    }

    pub fn record(
        &self,
        namespace: &str,
        name: &str,
        value: Option<Vec<u8>>,
        now: std::time::Instant,
    ) {
        let mut read = self.read.lock().unwrap_or_else(|p| p.into_inner());
        if read.len() >= MAX_REMEMBERED {
            read.retain(|_, (at, _)| now.saturating_duration_since(*at) < SECRET_TTL);
            if read.len() >= MAX_REMEMBERED {
                read.clear();
            }
        }
        read.insert((namespace.to_owned(), name.to_owned()), (now, value));
    }
}

/// The registered-model name a delivery is about (`data.name`), for the events this
/// operator cares about: model versions created, aliases created or moved.
pub fn model_name(payload: &serde_json::Value) -> Option<String> {
    let entity = payload["entity"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !(entity.contains("model_version") || entity.contains("registered_model")) {
        return None;
    }
    payload["data"]["name"]
        .as_str()
        .or_else(|| payload["data"]["model_version"]["name"].as_str())
        .map(str::to_owned)
}

/// Signs like MLflow does (for tests and tooling).
pub fn sign(secret: &[u8], delivery_id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{delivery_id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_secret_is_read_again_only_after_its_ttl() {
        let cache = SecretCache::default();
        let t0 = std::time::Instant::now();
        assert_eq!(cache.get("ns", "hook", t0), None);
        cache.record("ns", "hook", Some(b"s3cret".to_vec()), t0);
        cache.record("ns", "unlabelled", None, t0);
        let soon = t0 + SECRET_TTL / 2;
        assert_eq!(
            cache.get("ns", "hook", soon),
            Some(Some(b"s3cret".to_vec()))
        );
        assert_eq!(
            cache.get("ns", "unlabelled", soon),
            Some(None),
            "a refusal is kept too"
        );
        assert_eq!(cache.get("other", "hook", soon), None);
        assert_eq!(cache.get("ns", "hook", t0 + SECRET_TTL), None);
    }

    #[test]
    fn signatures_verify_only_with_the_right_secret_and_body() {
        let body = br#"{"entity":"model_version_alias","action":"created","data":{"name":"m","alias":"champion","version":"2"}}"#;
        let sig = sign(b"s3cret", "d1", "1700000000", body);
        assert!(signature_valid(b"s3cret", "d1", "1700000000", body, &sig));
        assert!(!signature_valid(b"other", "d1", "1700000000", body, &sig));
        assert!(!signature_valid(b"s3cret", "d2", "1700000000", body, &sig));
        assert!(!signature_valid(b"s3cret", "d1", "1700000000", b"{}", &sig));
        assert!(!signature_valid(
            b"s3cret",
            "d1",
            "1700000000",
            body,
            "v2,abc"
        ));
        assert!(fresh("1700000000", 1_700_000_100));
        assert!(!fresh("1700000000", 1_700_001_000));
        // Absurd timestamps are stale, never an overflow.
        assert!(!fresh(&i64::MIN.to_string(), i64::MAX));
        assert!(!fresh(&i64::MAX.to_string(), i64::MIN));
    }

    #[test]
    fn a_delivery_id_is_accepted_once() {
        let d = Deliveries::default();
        assert!(d.first_time("a"));
        assert!(!d.first_time("a"));
        assert!(d.first_time("b"));
    }

    #[test]
    fn the_model_is_read_from_registry_events_only() {
        let body = br#"{"entity":"model_version_alias","action":"created","data":{"name":"m","alias":"champion","version":"2"}}"#;
        let payload: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(model_name(&payload).as_deref(), Some("m"));
        assert_eq!(
            model_name(&serde_json::json!({"entity": "prompt", "data": {"name": "x"}})),
            None
        );
    }
}
