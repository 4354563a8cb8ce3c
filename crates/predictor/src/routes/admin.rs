//! Who may call the admin routes (`/reload-model`, `/shadow-model`): the bearer token of
//! `PREDICTOR_ADMIN_TOKEN`, or without one only clients on this host.

use actix_web::HttpRequest;

use crate::error::ApiError;
use crate::state::AppState;

pub fn authorise(state: &AppState, http: &HttpRequest) -> Result<(), ApiError> {
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
    if tokens_equal(bearer_token(header).unwrap_or(""), expected) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
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
