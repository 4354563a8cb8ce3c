//! Reading request bodies: bounded by `PREDICTOR_MAX_BODY_BYTES`, and JSON as Python
//! clients write it. MLflow's scoring client and the old service's clients send missing
//! values as the bare token `NaN` (Python's `json.dumps` default), which strict JSON
//! refuses: outside strings, `NaN` is read as `null` (a missing value) and `Infinity` /
//! `-Infinity` as strings, refused by name later.

use actix_web::web;
use serde_json::Value;

use crate::error::ApiError;
use crate::routes::BodyLimit;

/// The whole body, or `413` past the limit.
pub async fn read_limited(
    payload: web::Payload,
    limit: &BodyLimit,
) -> Result<web::Bytes, ApiError> {
    payload
        .to_bytes_limited(limit.0)
        .await
        .map_err(|_| {
            ApiError::PayloadTooLarge(format!(
                "the body is larger than the limit of {} bytes",
                limit.0
            ))
        })?
        .map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))
}

/// Parses a JSON body, accepting Python's `NaN`, `Infinity` and `-Infinity` tokens.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    let rewritten = rewrite_python_tokens(body);
    serde_json::from_slice(rewritten.as_deref().unwrap_or(body))
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

/// `Some(rewritten)` when the body has Python's non-finite tokens outside strings.
fn rewrite_python_tokens(body: &[u8]) -> Option<Vec<u8>> {
    const TOKENS: [(&[u8], &[u8]); 3] = [
        (b"-Infinity", b"\"-Infinity\""),
        (b"Infinity", b"\"Infinity\""),
        (b"NaN", b"null"),
    ];
    let mut out: Option<Vec<u8>> = None;
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if let Some((token, replacement)) =
            TOKENS.iter().find(|(t, _)| body[i..].starts_with(t))
        {
            let out = out.get_or_insert_with(|| body[..i].to_vec());
            out.extend_from_slice(replacement);
            i += token.len();
            continue;
        }
        if let Some(out) = out.as_mut() {
            out.push(b);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_tokens_outside_strings_become_json() {
        let v = parse_json(br#"{"inputs": [[1.0, NaN, -Infinity, Infinity]], "s": "NaN \" NaN"}"#)
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"inputs": [[1.0, null, "-Infinity", "Infinity"]], "s": "NaN \" NaN"})
        );
        assert_eq!(rewrite_python_tokens(br#"{"a": [1, 2]}"#), None);
        assert!(parse_json(b"{nope").is_err());
    }
}
