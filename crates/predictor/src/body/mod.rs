//! Reading request bodies: decoded (gzip, deflate) and bounded by
//! `PREDICTOR_MAX_BODY_BYTES` after decoding (`encoding.rs`), and JSON as Python
//! clients write it. MLflow's scoring client and the old service's clients send missing
//! values as the bare token `NaN` (Python's `json.dumps` default), which strict JSON
//! refuses: outside strings, `NaN` is read as `null` (a missing value) and `Infinity` /
//! `-Infinity` as strings, refused by name later.

mod encoding;

use actix_web::{HttpRequest, web};
use serde_json::Value;

use crate::error::ApiError;
use crate::routes::BodyLimit;

pub use encoding::{Coding, coding};

/// The whole body, decoded from its `Content-Encoding`; `413` as soon as it passes the
/// limit (raw or decoded), `415` for an encoding not decoded here.
pub async fn read_limited(
    request: &HttpRequest,
    payload: web::Payload,
    limit: &BodyLimit,
) -> Result<web::Bytes, ApiError> {
    encoding::read_decoded(request.headers(), payload, limit.0).await
}

/// Parses a JSON body, accepting Python's `NaN`, `Infinity` and `-Infinity` tokens.
/// An object naming a key twice is refused (a duplicate feature would otherwise let one
/// of its values win silently).
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    let rewritten = rewrite_python_tokens(body);
    serde_json::from_slice::<UniqueKeys>(rewritten.as_deref().unwrap_or(body))
        .map(|UniqueKeys(v)| v)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

/// A JSON value whose objects name each key once.
struct UniqueKeys(Value);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeysVisitor).map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(UniqueKeys(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            let UniqueKeys(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
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

    #[test]
    fn an_object_naming_a_key_twice_is_refused() {
        let err = parse_json(br#"{"instances": [{"a": 1, "b": 2, "a": 3}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains(r#"the key "a" appears twice"#), "{err}");
        assert_eq!(
            parse_json(br#"{"x": [{"a": 1}, {"a": 2}], "y": null}"#).unwrap(),
            serde_json::json!({"x": [{"a": 1}, {"a": 2}], "y": null})
        );
    }
}
