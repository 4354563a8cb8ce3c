//! Who may call the admin routes (`/reload-model`, `/shadow-model`): the bearer token of
//! `PREDICTOR_ADMIN_TOKEN` or the operator's signature keyed by it
//! (`api::admin_signature`), or without a token only clients on this host.

use actix_web::HttpRequest;

use api::admin_signature::SignedRequest;

use crate::error::ApiError;
use crate::state::AppState;

pub fn authorise(state: &AppState, http: &HttpRequest, body: &[u8]) -> Result<(), ApiError> {
    let Some(expected) = state.admin_token.as_deref() else {
        // No token configured: only clients on this host (as the old service was used).
        let local = http.peer_addr().is_some_and(|a| a.ip().is_loopback());
        return if local {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        };
    };
    let header = http
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(token) = bearer_token(header) {
        return if tokens_equal(token, expected) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        };
    }
    signed_by_the_operator(state, http, header, expected, body)
}

/// The operator's proof (`api::admin_signature`): signed with the token for this request,
/// sent to this pod's address, recently, with a nonce not seen before.
fn signed_by_the_operator(
    state: &AppState,
    http: &HttpRequest,
    header: &str,
    key: &str,
    body: &[u8],
) -> Result<(), ApiError> {
    // The Host header as sent (not X-Forwarded-Host: the signature is for this hop).
    let authority = http
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // Signed for another address: replayed from another pod (or not ours to answer).
    let host = authority
        .rsplit_once(':')
        .map_or(authority.as_str(), |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    if let Some(own) = &state.own_address
        && host != own
    {
        return Err(ApiError::Unauthorized);
    }
    let request = SignedRequest {
        method: http.method().as_str(),
        path: http.path(),
        authority: &authority,
        body,
    };
    let now = chrono::Utc::now().timestamp();
    let nonce = request
        .verify(key, header, now)
        .map_err(|_| ApiError::Unauthorized)?;
    if state.nonces.seen_before(nonce, now) {
        return Err(ApiError::Unauthorized);
    }
    Ok(())
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares digests of both, so neither the content nor the length of the token shows in
/// the time taken.
fn tokens_equal(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case_and_tokens_compare_exactly() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert!(tokens_equal("s3cret", "s3cret"));
        assert!(!tokens_equal("s3cre", "s3cret"));
        assert!(!tokens_equal("", "s3cret"));
    }
}
