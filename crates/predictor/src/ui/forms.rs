//! What the `/ui` page's forms send, read into what the API routes take: the one-row form
//! becomes a `/predict` body, the batch form's text or file a CSV body, the forecast form a
//! history. Every read is bounded by the predictor's body limit.

use actix_multipart::Multipart;
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// The name of the one-row form's field for feature `i` (feature names are arbitrary
/// text; the form names its fields by position).
pub fn feature_field(i: usize) -> String {
    format!("x{i}")
}

/// The fields of an `application/x-www-form-urlencoded` body, in order.
pub fn url_fields(body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_bytes(body)
        .map_err(|e| ApiError::BadRequest(format!("malformed form: {e}")))
}

/// The last value of field `name` (a form sends each once).
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The one-row form's value for each feature, as typed.
pub fn row_values(features: &[String], fields: &[(String, String)]) -> Vec<String> {
    (0..features.len())
        .map(|i| {
            field(fields, &feature_field(i))
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .collect()
}

/// The `/predict` body of one row: `{"instances": [{feature: value}]}`. A value that reads
/// as a finite number is sent as one; any other text is sent as a string, so `/predict`
/// answers it as it answers any client (naming the feature); an empty field is left out
/// (a missing feature).
pub fn predict_body(features: &[String], values: &[String]) -> Vec<u8> {
    let mut record = Map::new();
    for (name, text) in features.iter().zip(values) {
        if text.is_empty() {
            continue;
        }
        let value = match text.parse::<f64>().ok().filter(|x| x.is_finite()) {
            Some(x) => serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
            None => Value::String(text.clone()),
        };
        record.insert(name.clone(), value);
    }
    serde_json::to_vec(&serde_json::json!({ "instances": [record] })).unwrap_or_default()
}

/// The batch form: the pasted CSV, or the uploaded file when one was chosen.
#[derive(Debug, Default, PartialEq)]
pub struct BatchForm {
    pub text: String,
    pub file: Option<String>,
}

impl BatchForm {
    /// The CSV to score: the file when one was uploaded, else the text.
    pub fn csv(&self) -> &str {
        self.file
            .as_deref()
            .filter(|f| !f.trim().is_empty())
            .unwrap_or(&self.text)
    }
}

/// Reads the batch form's multipart body (fields `csv` and `file`; others ignored), at most
/// `limit` bytes in all.
pub async fn batch_form(mut parts: Multipart, limit: usize) -> Result<BatchForm, ApiError> {
    let mut form = BatchForm::default();
    let mut total = 0usize;
    while let Some(part) = parts.next().await {
        let mut part = part.map_err(|e| ApiError::BadRequest(format!("malformed form: {e}")))?;
        let name = part.name().unwrap_or("").to_owned();
        let mut bytes = Vec::new();
        while let Some(chunk) = part.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("malformed form: {e}")))?;
            total += chunk.len();
            if total > limit {
                return Err(ApiError::PayloadTooLarge(format!(
                    "the form is larger than the limit of {limit} bytes"
                )));
            }
            if name == "csv" || name == "file" {
                bytes.extend_from_slice(&chunk);
            }
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| ApiError::BadRequest(format!("the {name} field is not UTF-8 text")))?;
        match name.as_str() {
            "csv" => form.text = text,
            "file" => form.file = Some(text),
            _ => {}
        }
    }
    Ok(form)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_becomes_the_predict_body_a_client_would_send() {
        let features = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let fields = url_fields(b"x0=1.5&x1=abc&x2=&other=9").unwrap();
        let values = row_values(&features, &fields);
        assert_eq!(values, ["1.5", "abc", ""]);
        let body: Value = serde_json::from_slice(&predict_body(&features, &values)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"instances": [{"a": 1.5, "b": "abc"}]})
        );
        // Not a finite number: sent as text for /predict to refuse by name.
        let body: Value =
            serde_json::from_slice(&predict_body(&features[..1], &["1e999".into()])).unwrap();
        assert_eq!(body, serde_json::json!({"instances": [{"a": "1e999"}]}));
    }

    #[test]
    fn the_uploaded_file_wins_over_the_text_unless_empty() {
        let mut form = BatchForm {
            text: "a\n1".into(),
            file: Some("".into()),
        };
        assert_eq!(form.csv(), "a\n1");
        form.file = Some("a\n2".into());
        assert_eq!(form.csv(), "a\n2");
        assert_eq!(field(&url_fields(b"h=1&h=2").unwrap(), "h"), Some("2"));
    }
}
