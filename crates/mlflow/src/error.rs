/// Why a call to the MLflow server failed. MLflow's own error bodies
/// (`{"error_code": ..., "message": ...}`) keep the server's message.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// The server could not be reached (connection refused, DNS, timeout).
    #[error("MLflow at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// `RESOURCE_DOES_NOT_EXIST` (or an unknown alias, which MLflow reports as a 400).
    #[error("not found: {message}")]
    NotFound { message: String },
    /// `RESOURCE_ALREADY_EXISTS`.
    #[error("already exists: {message}")]
    AlreadyExists { message: String },
    /// `INVALID_PARAMETER_VALUE` and other 400s.
    #[error("invalid request ({code}): {message}")]
    Invalid { code: String, message: String },
    /// 401/403: missing or wrong credentials.
    #[error("not authorised (HTTP {status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// Any other error status (5xx, unexpected 4xx).
    #[error("MLflow answered HTTP {status} ({code}): {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from MLflow {what}: {message}")]
    Decode { what: String, message: String },
    /// A version's artifacts cannot be fetched from where they are stored.
    #[error("unsupported artifact location {uri}: {reason}")]
    UnsupportedLocation { uri: String, reason: String },
    /// The answer was larger than the client reads (a hostile or broken server).
    #[error("MLflow's answer to {what} is larger than {limit} bytes; not read further")]
    TooLarge { what: String, limit: usize },
    /// Configuration is incomplete or contradictory.
    #[error("MLflow client configuration: {0}")]
    Config(String),
    /// Local file I/O while downloading or uploading artifacts.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl MlflowError {
    /// True when the server said the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, MlflowError::NotFound { .. })
    }

    /// True when the registry could not be asked at all (as opposed to answering "no").
    pub fn is_unreachable(&self) -> bool {
        match self {
            MlflowError::Unreachable { .. } => true,
            MlflowError::Server { status, .. } => *status >= 500,
            _ => false,
        }
    }

    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        MlflowError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// Builds the error for a non-success answer from its status and body.
    pub(crate) fn from_response(status: u16, body: &str) -> Self {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default)]
            error_code: String,
            #[serde(default)]
            message: String,
        }
        let (code, message) = match serde_json::from_str::<Body>(body) {
            Ok(b) => (b.error_code, b.message),
            Err(_) => (String::new(), summarise(body)),
        };
        match (status, code.as_str()) {
            (_, "RESOURCE_DOES_NOT_EXIST") | (404, _) => MlflowError::NotFound { message },
            (_, "RESOURCE_ALREADY_EXISTS") => MlflowError::AlreadyExists { message },
            (401 | 403, _) | (_, "UNAUTHENTICATED" | "PERMISSION_DENIED") => {
                MlflowError::Unauthorized { status, message }
            }
            // MLflow answers an unknown alias with 400 INVALID_PARAMETER_VALUE "... not found".
            (400, "INVALID_PARAMETER_VALUE") if message.contains("not found") => {
                MlflowError::NotFound { message }
            }
            (400, _) => MlflowError::Invalid { code, message },
            _ => MlflowError::Server {
                status,
                code: if code.is_empty() {
                    "UNKNOWN".into()
                } else {
                    code
                },
                message,
            },
        }
    }
}

/// The first line of a non-JSON body (MLflow's unhandled errors are HTML pages).
fn summarise(body: &str) -> String {
    let text = body.trim();
    let first = text.lines().next().unwrap_or_default();
    let mut s: String = first.chars().take(200).collect();
    if s.is_empty() {
        s = "(empty body)".into();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlflow_error_bodies_become_typed_errors() {
        let e = MlflowError::from_response(
            404,
            r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Registered Model with name=x not found"}"#,
        );
        assert!(e.is_not_found());
        assert!(e.to_string().contains("name=x"));
        let e = MlflowError::from_response(
            400,
            r#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "Registered model alias champion not found."}"#,
        );
        assert!(e.is_not_found(), "{e:?}");
        let e = MlflowError::from_response(
            400,
            r#"{"error_code": "RESOURCE_ALREADY_EXISTS", "message": "Registered Model (name=x) already exists."}"#,
        );
        assert!(matches!(e, MlflowError::AlreadyExists { .. }));
        let e = MlflowError::from_response(500, "<!doctype html>\n<title>500</title>");
        assert!(e.is_unreachable());
        assert!(e.to_string().contains("doctype"));
        let e = MlflowError::from_response(401, "");
        assert!(matches!(e, MlflowError::Unauthorized { status: 401, .. }));
    }
}
