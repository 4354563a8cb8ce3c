//! What a ForecastModel author may point the operator at. Every `trackingUri` must pass
//! the URI rules (`mlflow::parse_tracking_uri`); a platform team can narrow further with
//! operator-wide allow-lists of prefixes: `ALLOWED_TRACKING_URIS` and
//! `ALLOWED_PREDICTOR_IMAGES`. Outside them the spec is `InvalidSpec`.

use url::Url;

/// The operator-wide allow-lists (empty: anything that passes the URI rules).
#[derive(Debug, Clone, Default)]
pub struct SpecPolicy {
    tracking_uris: Vec<Url>,
    images: Vec<String>,
}

impl SpecPolicy {
    /// Allow-lists from their prefixes (blank entries ignored); a tracking-URI prefix must
    /// itself be a valid tracking URI.
    pub fn new(tracking_uris: &[String], images: &[String]) -> Result<Self, String> {
        let tracking_uris = tracking_uris
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| {
                mlflow::parse_tracking_uri(p).map_err(|e| format!("ALLOWED_TRACKING_URIS: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let images = images
            .iter()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        Ok(SpecPolicy {
            tracking_uris,
            images,
        })
    }

    /// The URI rules, then the allow-list; the error names the field and the rule.
    pub fn check_tracking_uri(&self, uri: &str) -> Result<(), String> {
        let parsed = mlflow::parse_tracking_uri(uri)
            .map_err(|e| format!("spec.registry.trackingUri: {e}"))?;
        if self.tracking_uris.is_empty() || self.tracking_uris.iter().any(|p| under(&parsed, p)) {
            return Ok(());
        }
        Err(format!(
            "spec.registry.trackingUri {uri:?} is not under any of the operator's \
             ALLOWED_TRACKING_URIS ({})",
            self.tracking_uris
                .iter()
                .map(Url::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// The predictor image against `ALLOWED_PREDICTOR_IMAGES`.
    pub fn check_image(&self, image: &str) -> Result<(), String> {
        if self.images.is_empty() || self.images.iter().any(|p| image_under(image, p)) {
            return Ok(());
        }
        Err(format!(
            "spec.predictor.image {image:?} is not under any of the operator's \
             ALLOWED_PREDICTOR_IMAGES ({})",
            self.images.join(", ")
        ))
    }
}

/// Same scheme, host and port, and the path starts with the prefix's path at a segment
/// boundary (`http://mlflow:5000` does not allow `http://mlflow:5000.evil.example`, and
/// `/team` does not allow `/team-b`).
fn under(uri: &Url, prefix: &Url) -> bool {
    let segments = |u: &Url| -> Vec<String> {
        u.path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    uri.scheme() == prefix.scheme()
        && uri.host_str() == prefix.host_str()
        && uri.port_or_known_default() == prefix.port_or_known_default()
        && segments(uri).starts_with(&segments(prefix))
}

/// `image` is the prefix itself, or continues it at a separator (`/`, `:`, `@`) unless the
/// prefix already ends with one.
fn image_under(image: &str, prefix: &str) -> bool {
    match image.strip_prefix(prefix) {
        None => false,
        Some("") => true,
        Some(rest) => prefix.ends_with(['/', ':', '@']) || rest.starts_with(['/', ':', '@']),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(uris: &[&str], images: &[&str]) -> SpecPolicy {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        SpecPolicy::new(&own(uris), &own(images)).unwrap()
    }

    #[test]
    fn tracking_uris_are_allowed_by_scheme_host_port_and_whole_path_segments() {
        let p = policy(
            &["http://mlflow.mlflow:5000", "https://ml.example.com/team"],
            &[],
        );
        for ok in [
            "http://mlflow.mlflow:5000",
            "http://mlflow.mlflow:5000/",
            "http://mlflow.mlflow:5000/anything",
            "https://ml.example.com/team",
            "https://ml.example.com:443/team/sub",
        ] {
            assert!(p.check_tracking_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://mlflow.mlflow:5001",
            "http://mlflow.mlflow.evil.example:5000",
            "https://mlflow.mlflow:5000",
            "https://ml.example.com/team-b",
            "https://ml.example.com/",
            "http://evil.example/http://mlflow.mlflow:5000",
        ] {
            let err = p.check_tracking_uri(bad).unwrap_err();
            assert!(err.contains("ALLOWED_TRACKING_URIS"), "{bad}: {err}");
        }
        let err = p
            .check_tracking_uri("http://mlflow.mlflow:5000@evil.example")
            .unwrap_err();
        assert!(err.contains("user-info"), "{err}");
        assert!(
            SpecPolicy::default()
                .check_tracking_uri("https://anywhere.example")
                .is_ok()
        );
        assert!(SpecPolicy::new(&["not a url".into()], &[]).is_err());
    }

    #[test]
    fn images_are_allowed_by_prefix_at_a_separator() {
        let p = policy(
            &[],
            &["ghcr.io/forecast-operator/", "registry.example.com/ml"],
        );
        assert!(
            p.check_image("ghcr.io/forecast-operator/forecast-predictor:0.1.0")
                .is_ok()
        );
        assert!(
            p.check_image("registry.example.com/ml/predictor@sha256:ab")
                .is_ok()
        );
        assert!(p.check_image("registry.example.com/ml:1").is_ok());
        for bad in [
            "registry.example.com/ml-evil/predictor:1",
            "ghcr.io/forecast-operatorx/p:1",
            "docker.io/library/busybox",
        ] {
            let err = p.check_image(bad).unwrap_err();
            assert!(err.contains("ALLOWED_PREDICTOR_IMAGES"), "{bad}: {err}");
        }
        assert!(SpecPolicy::default().check_image("anything").is_ok());
    }
}
