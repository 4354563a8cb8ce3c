use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::MlflowError;

/// How the client authenticates, as MLflow's own clients do.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    #[default]
    None,
    /// `MLFLOW_TRACKING_TOKEN`: `Authorization: Bearer <token>`.
    Token(String),
    /// `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`: HTTP basic auth.
    Basic { username: String, password: String },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Token(_) => f.write_str("Token(***)"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
        }
    }
}

/// Everything needed to talk to one MLflow server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// e.g. `http://127.0.0.1:5000` (a trailing slash is fine).
    pub tracking_uri: String,
    pub credentials: Credentials,
    /// Timeout of each API call.
    pub request_timeout: Duration,
    /// Timeout of each artifact download or upload.
    pub transfer_timeout: Duration,
    pub connect_timeout: Duration,
    /// The largest API answer read (a registry is untrusted input).
    pub max_answer_bytes: usize,
    /// The most bytes one model version's files may hold together (`MODEL_MAX_BYTES`);
    /// files are streamed to disk and the download stops at this cap.
    pub max_artifact_bytes: usize,
    /// How calls reach the registry.
    pub proxy: Proxy,
}

/// How a client reaches the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxy {
    /// As the process environment says (`HTTPS_PROXY`, `NO_PROXY`, …): for processes whose
    /// environment is trusted (the operator, the CLI).
    Environment,
    /// Directly, whatever the environment says: the predictor, whose environment a
    /// ForecastModel author partly writes.
    Direct,
    /// Through this proxy URL only.
    Url(String),
}

/// Default cap of an API answer: far above any real registry answer.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Default cap of one model version's files.
pub const MAX_ARTIFACT_BYTES: usize = 256 * 1024 * 1024;

impl ClientConfig {
    pub fn new(tracking_uri: impl Into<String>) -> Self {
        ClientConfig {
            tracking_uri: tracking_uri.into(),
            credentials: Credentials::None,
            request_timeout: Duration::from_secs(15),
            transfer_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(3),
            max_answer_bytes: MAX_ANSWER_BYTES,
            max_artifact_bytes: MAX_ARTIFACT_BYTES,
            proxy: Proxy::Environment,
        }
    }

    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Credentials from `MLFLOW_TRACKING_TOKEN`, else `MLFLOW_TRACKING_USERNAME` and
    /// `MLFLOW_TRACKING_PASSWORD` (both required together).
    pub fn credentials_from_env() -> Result<Credentials, MlflowError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        credentials_from(
            var("MLFLOW_TRACKING_TOKEN"),
            var("MLFLOW_TRACKING_USERNAME"),
            var("MLFLOW_TRACKING_PASSWORD"),
        )
    }
}

/// Picks the credentials from the three MLflow settings.
pub fn credentials_from(
    token: Option<String>,
    username: Option<String>,
    password: Option<String>,
) -> Result<Credentials, MlflowError> {
    match (token, username, password) {
        (Some(token), _, _) => Ok(Credentials::Token(token)),
        (None, Some(username), Some(password)) => Ok(Credentials::Basic { username, password }),
        (None, Some(_), None) => Err(MlflowError::Config(
            "MLFLOW_TRACKING_USERNAME is set but MLFLOW_TRACKING_PASSWORD is not".into(),
        )),
        (None, None, Some(_)) => Err(MlflowError::Config(
            "MLFLOW_TRACKING_PASSWORD is set but MLFLOW_TRACKING_USERNAME is not".into(),
        )),
        (None, None, None) => Ok(Credentials::None),
    }
}

/// Checks a tracking URI as the operator and the predictor accept it: `http` or `https`,
/// a host, and no user-info, query or fragment (credentials come from a Secret, and paths
/// are joined as URL segments, never by concatenation).
pub fn parse_tracking_uri(uri: &str) -> Result<url::Url, MlflowError> {
    let bad = |why: &str| MlflowError::Config(format!("tracking URI {uri:?} {why}"));
    let parsed = url::Url::parse(uri.trim()).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("must be http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "must not carry user-info (put credentials in a Secret)",
        ));
    }
    if parsed.query().is_some() {
        return Err(bad("must not have a query"));
    }
    if parsed.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    Ok(parsed)
}

/// The path a response answered (for messages; never the query, which may hold names).
fn response_path(response: &reqwest::Response) -> String {
    response.url().path().to_owned()
}

/// Installs rustls' `ring` crypto provider for the process (idempotent). Call once at
/// start-up in every binary that makes HTTPS calls.
pub fn install_crypto_provider() {
    // An Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A typed async client for the MLflow REST API.
#[derive(Debug, Clone)]
pub struct MlflowClient {
    http: reqwest::Client,
    /// The tracking URI, checked; API paths are appended to its path as segments.
    base: url::Url,
    /// The same, as given (no trailing slash), for messages.
    display: String,
    config: ClientConfig,
}

impl MlflowClient {
    pub fn new(config: ClientConfig) -> Result<Self, MlflowError> {
        install_crypto_provider();
        let display = config.tracking_uri.trim().trim_end_matches('/').to_owned();
        let base = parse_tracking_uri(&display)?;
        let builder = match &config.proxy {
            Proxy::Environment => reqwest::Client::builder(),
            Proxy::Direct => reqwest::Client::builder().no_proxy(),
            Proxy::Url(url) => reqwest::Client::builder().proxy(
                reqwest::Proxy::all(url)
                    .map_err(|e| MlflowError::Config(format!("proxy {url:?}: {e}")))?,
            ),
        };
        let http = builder
            .connect_timeout(config.connect_timeout)
            // MLflow's server (uvicorn/gunicorn) drops idle connections after ~5 s: never
            // reuse one that old.
            .pool_idle_timeout(Duration::from_secs(4))
            .user_agent(concat!("forecast-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| MlflowError::Config(format!("HTTP client: {e}")))?;
        Ok(MlflowClient {
            http,
            base,
            display,
            config,
        })
    }

    /// A client for `MLFLOW_TRACKING_URI` with credentials from the environment.
    pub fn from_env() -> Result<Self, MlflowError> {
        let uri = std::env::var("MLFLOW_TRACKING_URI")
            .map_err(|_| MlflowError::Config("MLFLOW_TRACKING_URI is not set".into()))?;
        Self::new(ClientConfig::new(uri).with_credentials(ClientConfig::credentials_from_env()?))
    }

    pub fn tracking_uri(&self) -> &str {
        &self.display
    }

    /// The tracking URI with `path` (`/`-separated, unencoded) appended as path segments:
    /// each segment is percent-encoded, `.` and `..` are dropped.
    pub(crate) fn endpoint(&self, path: &str) -> url::Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(path.split('/').filter(|s| !s.is_empty()));
        }
        url
    }

    pub(crate) fn request(&self, method: Method, path: &str, timeout: Duration) -> RequestBuilder {
        let builder = self
            .http
            .request(method, self.endpoint(path))
            .timeout(timeout);
        match &self.config.credentials {
            Credentials::None => builder,
            Credentials::Token(t) => builder.bearer_auth(t),
            Credentials::Basic { username, password } => {
                builder.basic_auth(username, Some(password))
            }
        }
    }

    pub(crate) fn transfer_timeout(&self) -> Duration {
        self.config.transfer_timeout
    }

    /// Sends an API request and returns the body of a success, or the typed error.
    pub(crate) async fn send(
        &self,
        builder: RequestBuilder,
    ) -> Result<bytes_body::Body, MlflowError> {
        self.send_capped(builder, self.config.max_answer_bytes)
            .await
    }

    /// Sends a request and reads at most `limit` bytes of its answer.
    pub(crate) async fn send_capped(
        &self,
        builder: RequestBuilder,
        limit: usize,
    ) -> Result<bytes_body::Body, MlflowError> {
        let mut response = builder.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let what = response_path(&response);
        let too_large = || MlflowError::TooLarge {
            what: what.clone(),
            limit,
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.unreachable(&e))? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            Ok(bytes_body::Body(body))
        } else {
            Err(MlflowError::from_response(
                status.as_u16(),
                &String::from_utf8_lossy(&body),
            ))
        }
    }

    /// Sends a request and returns a successful response unread (for streaming), or the
    /// typed error read from a capped error body.
    pub(crate) async fn send_streaming(
        &self,
        builder: RequestBuilder,
    ) -> Result<reqwest::Response, MlflowError> {
        let response = builder.send().await.map_err(|e| self.unreachable(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.unreachable(&e))? {
            let room = self.config.max_answer_bytes.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        Err(MlflowError::from_response(
            status,
            &String::from_utf8_lossy(&body),
        ))
    }

    pub(crate) fn max_artifact_bytes(&self) -> usize {
        self.config.max_artifact_bytes
    }

    pub(crate) fn unreachable(&self, e: &reqwest::Error) -> MlflowError {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message = format!("{message}: {s}");
            source = s.source();
        }
        MlflowError::Unreachable {
            url: self.display.clone(),
            message,
        }
    }

    /// `GET /api/2.0/mlflow/<path>?<query>` decoded as `T`.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, MlflowError> {
        let builder = self
            .request(
                Method::GET,
                &format!("/api/2.0/mlflow/{path}"),
                self.config.request_timeout,
            )
            .query(query);
        self.send(builder).await?.json(path)
    }

    /// `POST /api/2.0/mlflow/<path>` with a JSON body, decoded as `T`.
    pub(crate) async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, MlflowError> {
        let builder = self
            .request(
                Method::POST,
                &format!("/api/2.0/mlflow/{path}"),
                self.config.request_timeout,
            )
            .json(body);
        self.send(builder).await?.json(path)
    }

    /// `DELETE /api/2.0/mlflow/<path>` with a JSON body.
    pub(crate) async fn delete_json<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(), MlflowError> {
        let builder = self
            .request(
                Method::DELETE,
                &format!("/api/2.0/mlflow/{path}"),
                self.config.request_timeout,
            )
            .json(body);
        self.send(builder).await.map(|_| ())
    }

    /// `GET /health`: true when the server answers `200`.
    pub async fn health(&self) -> Result<(), MlflowError> {
        let response = self
            .request(Method::GET, "/health", self.config.request_timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if response.status() == StatusCode::OK {
            Ok(())
        } else {
            Err(MlflowError::Server {
                status: response.status().as_u16(),
                code: "HEALTH".into(),
                message: "health check failed".into(),
            })
        }
    }
}

pub(crate) mod bytes_body {
    use serde::de::DeserializeOwned;

    use crate::error::MlflowError;

    pub struct Body(pub Vec<u8>);

    impl Body {
        pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, MlflowError> {
            // An empty success body is `{}` in MLflow's protocol.
            let bytes: &[u8] = if self.0.is_empty() { b"{}" } else { &self.0 };
            serde_json::from_slice(bytes).map_err(|e| MlflowError::Decode {
                what: what.to_owned(),
                message: e.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_wins_over_basic_auth_and_half_a_login_is_an_error() {
        assert_eq!(
            credentials_from(Some("t".into()), Some("u".into()), Some("p".into())).unwrap(),
            Credentials::Token("t".into())
        );
        assert!(matches!(
            credentials_from(None, Some("u".into()), Some("p".into())).unwrap(),
            Credentials::Basic { .. }
        ));
        assert!(credentials_from(None, Some("u".into()), None).is_err());
        assert_eq!(
            credentials_from(None, None, None).unwrap(),
            Credentials::None
        );
        assert_eq!(
            format!("{:?}", Credentials::Token("secret".into())),
            "Token(***)"
        );
    }

    #[test]
    fn a_tracking_uri_that_is_not_http_is_rejected() {
        assert!(MlflowClient::new(ClientConfig::new("file:///tmp/mlruns")).is_err());
        assert!(MlflowClient::new(ClientConfig::new("not a uri")).is_err());
        let c = MlflowClient::new(ClientConfig::new("http://127.0.0.1:5000/")).unwrap();
        assert_eq!(c.tracking_uri(), "http://127.0.0.1:5000");
    }

    #[test]
    fn tracking_uris_with_user_info_a_query_or_a_fragment_are_refused() {
        for bad in [
            "http://user:pw@mlflow:5000",
            "http://token@mlflow:5000",
            "http://mlflow:5000/?x=1",
            "http://mlflow:5000/#top",
            "ftp://mlflow",
            "http://",
            "mlflow:5000",
        ] {
            let err = parse_tracking_uri(bad).unwrap_err().to_string();
            assert!(err.contains(bad.trim()), "{bad}: {err}");
        }
        assert!(parse_tracking_uri("https://mlflow.example.com/mlflow").is_ok());
    }

    #[test]
    fn paths_are_joined_as_segments_under_the_tracking_uri_path() {
        let c = MlflowClient::new(ClientConfig::new("http://mlflow:5000/prefix/")).unwrap();
        assert_eq!(
            c.endpoint("/api/2.0/mlflow/registered-models/get").as_str(),
            "http://mlflow:5000/prefix/api/2.0/mlflow/registered-models/get"
        );
        assert_eq!(
            c.endpoint("/api/2.0/mlflow-artifacts/artifacts/1/a b/../x?y#z")
                .as_str(),
            "http://mlflow:5000/prefix/api/2.0/mlflow-artifacts/artifacts/1/a%20b/x%3Fy%23z"
        );
    }
}
