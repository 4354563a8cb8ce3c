//! How the operator proves itself to a predictor pod without sending the admin token: an
//! HMAC-SHA256, keyed by the token, over the request — method, path, the pod address it
//! was sent to, the time, a nonce and the body's digest:
//!
//! `Authorization: Forecast-HMAC-SHA256 t=<unix seconds>, n=<nonce>, sig=<hex>`
//!
//! A pod that is not what the operator thinks it is (or anyone watching the traffic)
//! learns one signature, good for that request to that address for [`MAX_SKEW_SECS`], and
//! the pods refuse a nonce they have seen. `Authorization: Bearer <token>` stays accepted
//! for people (curl).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The authorization scheme.
pub const SCHEME: &str = "Forecast-HMAC-SHA256";

/// How far a signature's time may be from the pod's clock.
pub const MAX_SKEW_SECS: i64 = 60;

/// What is signed.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// `host:port` the request is sent to (the pod's address).
    pub authority: &'a str,
    pub body: &'a [u8],
}

impl SignedRequest<'_> {
    fn mac(&self, key: &str, time: i64, nonce: &str) -> Hmac<Sha256> {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
            unreachable!("HMAC takes keys of any length")
        };
        let body = hex::encode(Sha256::digest(self.body));
        for part in [
            self.method,
            self.path,
            self.authority,
            &time.to_string(),
            nonce,
            &body,
        ] {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    /// The `Authorization` header value for this request at `time`, with `nonce`.
    pub fn sign(&self, key: &str, time: i64, nonce: &str) -> String {
        let sig = hex::encode(self.mac(key, time, nonce).finalize().into_bytes());
        format!("{SCHEME} t={time}, n={nonce}, sig={sig}")
    }

    /// Checks a header value at `now`; the nonce on success (for the replay check).
    pub fn verify<'h>(
        &self,
        key: &str,
        header: &'h str,
        now: i64,
    ) -> Result<&'h str, SignatureError> {
        let rest = header
            .trim()
            .strip_prefix(SCHEME)
            .ok_or(SignatureError::Malformed)?;
        let (mut time, mut nonce, mut sig) = (None, None, None);
        for field in rest.split(',') {
            match field.trim().split_once('=') {
                Some(("t", v)) => time = v.parse::<i64>().ok(),
                Some(("n", v)) => nonce = Some(v),
                Some(("sig", v)) => sig = hex::decode(v).ok(),
                _ => return Err(SignatureError::Malformed),
            }
        }
        let (Some(time), Some(nonce), Some(sig)) = (time, nonce, sig) else {
            return Err(SignatureError::Malformed);
        };
        if nonce.is_empty() || nonce.len() > 64 {
            return Err(SignatureError::Malformed);
        }
        if now.abs_diff(time) > MAX_SKEW_SECS.unsigned_abs() {
            return Err(SignatureError::Expired);
        }
        self.mac(key, time, nonce)
            .verify_slice(&sig)
            .map_err(|_| SignatureError::Mismatch)?;
        Ok(nonce)
    }
}

/// Why a signature is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Malformed,
    Expired,
    Mismatch,
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: SignedRequest<'static> = SignedRequest {
        method: "POST",
        path: "/reload-model",
        authority: "10.0.0.7:8080",
        body: br#"{"version":"7"}"#,
    };

    #[test]
    fn a_signature_verifies_only_for_its_request_key_address_and_time() {
        let header = REQ.sign("token", 1_000, "abc");
        assert!(header.starts_with("Forecast-HMAC-SHA256 t=1000, n=abc, sig="));
        assert!(!header.contains("token"));
        assert_eq!(REQ.verify("token", &header, 1_030), Ok("abc"));
        assert_eq!(
            REQ.verify("other", &header, 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            REQ.verify("token", &header, 1_061),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            REQ.verify("token", &header, 939),
            Err(SignatureError::Expired)
        );
        for changed in [
            SignedRequest {
                method: "DELETE",
                ..REQ
            },
            SignedRequest {
                path: "/shadow-model",
                ..REQ
            },
            SignedRequest {
                authority: "10.0.0.8:8080",
                ..REQ
            },
            SignedRequest {
                body: br#"{"version":"8"}"#,
                ..REQ
            },
        ] {
            assert_eq!(
                changed.verify("token", &header, 1_000),
                Err(SignatureError::Mismatch)
            );
        }
        let other_nonce = header.replace("n=abc", "n=abd");
        assert_eq!(
            REQ.verify("token", &other_nonce, 1_000),
            Err(SignatureError::Mismatch)
        );
        let later = header.replace("t=1000", "t=1001");
        assert_eq!(
            REQ.verify("token", &later, 1_000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in [
            "",
            "Bearer token",
            "Forecast-HMAC-SHA256",
            "Forecast-HMAC-SHA256 t=1, n=a",
            "Forecast-HMAC-SHA256 t=x, n=a, sig=00",
            "Forecast-HMAC-SHA256 t=1, n=a, sig=zz",
            "Forecast-HMAC-SHA256 t=1, n=, sig=00",
            "Forecast-HMAC-SHA256 t=1, n=a, sig=00, extra=1",
        ] {
            assert_eq!(
                REQ.verify("token", header, 1),
                Err(SignatureError::Malformed),
                "{header}"
            );
        }
        let long = format!("Forecast-HMAC-SHA256 t=1, n={}, sig=00", "a".repeat(65));
        assert_eq!(
            REQ.verify("token", &long, 1),
            Err(SignatureError::Malformed)
        );
    }
}
