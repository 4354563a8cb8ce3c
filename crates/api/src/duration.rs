//! Durations as Kubernetes specs write them (`30s`, `2m`, `1h30m`, `500ms`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration in a spec: the text as written and its value, or why it has none. Any
/// string is read (the schema's pattern lets an overflow such as `99999999999999999999s`
/// through), so an object is never dropped by the watch for its duration: the operator
/// reports the error with the field's name instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecDuration {
    text: String,
    value: Result<Duration, String>,
}

impl SpecDuration {
    pub fn parse(text: &str) -> Self {
        SpecDuration {
            text: text.to_owned(),
            value: parse_duration(text),
        }
    }

    /// The duration, or why the text is not one.
    pub fn value(&self) -> Result<Duration, &str> {
        self.value.as_ref().copied().map_err(String::as_str)
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for SpecDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for SpecDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for SpecDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|text| SpecDuration::parse(&text))
    }
}

/// The same schema as a plain string (the field adds its pattern and description).
#[cfg(feature = "crd")]
impl schemars::JsonSchema for SpecDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SpecDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

/// Parses `30s`, `2m`, `1h30m`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut number = String::new();
    let mut chars = s.trim().chars().peekable();
    if s.trim().is_empty() {
        return Err("empty duration".into());
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        number.clear();
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            "ms"
        } else {
            match c {
                's' => "s",
                'm' => "m",
                'h' => "h",
                _ => return Err(format!("invalid duration {s:?}: unknown unit {c:?}")),
            }
        };
        let too_long = || format!("duration {s:?} is too long");
        let part = match unit {
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => n.checked_mul(60).map(Duration::from_secs),
            _ => n.checked_mul(3600).map(Duration::from_secs),
        }
        .ok_or_else(too_long)?;
        total = total.checked_add(part).ok_or_else(too_long)?;
    }
    if !number.is_empty() {
        return Err(format!("invalid duration {s:?}: missing unit"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_kubernetes_ones() {
        assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("").is_err());
        // Absurd values are errors, never an overflow.
        let huge = parse_duration("18446744073709551615h").unwrap_err();
        assert!(huge.contains("too long"), "{huge}");
        assert!(parse_duration("99999999999999999999s").is_err());
    }

    #[test]
    fn a_spec_duration_keeps_its_text_and_reads_any_string() {
        let d: SpecDuration = serde_json::from_value(serde_json::json!("2m")).unwrap();
        assert_eq!(d.value(), Ok(Duration::from_secs(120)));
        assert_eq!(serde_json::to_value(&d).unwrap(), serde_json::json!("2m"));
        let bad: SpecDuration =
            serde_json::from_value(serde_json::json!("99999999999999999999s")).unwrap();
        assert!(bad.value().is_err());
        assert_eq!(bad.as_str(), "99999999999999999999s");
    }
}
