//! Reading a value out of a Secret, one way everywhere. A real API server merges
//! `stringData` into `data` on write and returns only `data`; a Secret object built in
//! memory (or an older simulator) may still carry `stringData`, which then wins, as it
//! would on write.

use k8s_openapi::api::core::v1::Secret;

/// The label a Secret must carry before the operator uses it for a ForecastModel: a
/// ForecastModel author may name any Secret of the namespace, and the operator sends what
/// it reads to a URL that author chose.
pub const SECRET_TYPE_LABEL: &str = "forecast.dev/secret-type";
/// `forecast.dev/secret-type` of a `credentialsSecret`.
pub const REGISTRY_CREDENTIALS: &str = "registry-credentials";
/// `forecast.dev/secret-type` of a `webhookSecret`.
pub const WEBHOOK: &str = "webhook";

/// Whether the Secret was marked for this use by whoever owns it; the error says how to.
pub fn check_type(secret: &Secret, wanted: &str) -> Result<(), String> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let label = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SECRET_TYPE_LABEL));
    match label {
        Some(v) if v == wanted => Ok(()),
        Some(v) => Err(format!(
            "Secret {name} is labelled {SECRET_TYPE_LABEL}={v}, not {wanted}: not used"
        )),
        None => Err(format!(
            "Secret {name} lacks the label {SECRET_TYPE_LABEL}={wanted}; the operator uses \
             only Secrets labelled for it (kubectl label secret {name} \
             {SECRET_TYPE_LABEL}={wanted})"
        )),
    }
}

/// The raw bytes under `key`.
pub fn secret_bytes(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.as_bytes().to_vec());
    }
    // `data` arrives base64-decoded by k8s-openapi.
    secret.data.as_ref()?.get(key).map(|b| b.0.clone())
}

/// The text under `key` (absent, or not UTF-8, is `None`).
pub fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    secret_bytes(secret, key).and_then(|b| String::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_secret_labelled_for_the_use_is_used() {
        let mut s = Secret::default();
        s.metadata.name = Some("db-token".into());
        let e = check_type(&s, REGISTRY_CREDENTIALS).unwrap_err();
        assert!(
            e.contains("lacks the label forecast.dev/secret-type=registry-credentials"),
            "{e}"
        );
        s.metadata.labels = Some([(SECRET_TYPE_LABEL.to_string(), WEBHOOK.to_string())].into());
        assert!(check_type(&s, REGISTRY_CREDENTIALS).is_err());
        assert!(check_type(&s, WEBHOOK).is_ok());
    }

    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn secret(data: &[(&str, &[u8])], string_data: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            string_data: Some(
                string_data
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn string_data_wins_over_data_as_it_does_on_write() {
        let s = secret(
            &[("token", b"old"), ("username", b"ann")],
            &[("token", "new")],
        );
        assert_eq!(secret_value(&s, "token").as_deref(), Some("new"));
        assert_eq!(secret_value(&s, "username").as_deref(), Some("ann"));
        assert_eq!(secret_value(&s, "password"), None);
    }

    #[test]
    fn binary_values_are_bytes_but_not_text() {
        let s = secret(&[("secret", &[0xff, 0x00, 0x7f])], &[]);
        assert_eq!(secret_bytes(&s, "secret"), Some(vec![0xff, 0x00, 0x7f]));
        assert_eq!(secret_value(&s, "secret"), None);
        assert_eq!(secret_value(&Secret::default(), "secret"), None);
    }
}
