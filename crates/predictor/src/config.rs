//! The predictor's configuration, read once at start from flags or the environment.

use std::net::IpAddr;
use std::path::PathBuf;

use api::selector::Selector;
use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "forecast-predictor",
    version,
    about = "Serves a forecasting model from the MLflow registry"
)]
pub struct Config {
    /// MLflow tracking server; without it only MODEL_FALLBACK_DIR is used.
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    pub tracking_uri: Option<String>,
    /// Bearer token for MLflow.
    #[arg(long, env = "MLFLOW_TRACKING_TOKEN", hide_env_values = true)]
    pub tracking_token: Option<String>,
    /// Basic-auth user for MLflow (with MLFLOW_TRACKING_PASSWORD).
    #[arg(long, env = "MLFLOW_TRACKING_USERNAME")]
    pub tracking_username: Option<String>,
    #[arg(long, env = "MLFLOW_TRACKING_PASSWORD", hide_env_values = true)]
    pub tracking_password: Option<String>,
    /// The only proxy registry calls go through; without it they go directly, whatever
    /// `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` say (a ForecastModel's author writes part of
    /// the predictor's environment; the operator sets this from its own
    /// `PREDICTOR_REGISTRY_PROXY`).
    #[arg(long, env = "MLFLOW_PROXY")]
    pub registry_proxy: Option<String>,
    /// Registered model name.
    #[arg(long, env = "MODEL_NAME", default_value = api::predictor::DEFAULT_MODEL_NAME)]
    pub model_name: String,
    /// Serve the version this alias points at.
    #[arg(long, env = "MODEL_ALIAS")]
    pub model_alias: Option<String>,
    /// Serve the latest version in this stage (the default is `Production`, as the
    /// original service did, when no alias or version is given). Digits only select that
    /// version, as the old service did (`MODEL_STAGE=2` serves version 2).
    #[arg(long, env = "MODEL_STAGE")]
    pub model_stage: Option<String>,
    /// Serve exactly this version (wins over alias and stage).
    #[arg(long, env = "MODEL_VERSION")]
    pub model_version: Option<String>,
    /// A bundled model directory (with `MLmodel`) and the cache of registry models.
    #[arg(long, env = "MODEL_FALLBACK_DIR")]
    pub fallback_dir: Option<PathBuf>,
    #[arg(long, env = "BIND_ADDR", default_value = "0.0.0.0")]
    pub bind_addr: IpAddr,
    #[arg(long, env = "PORT", default_value_t = api::predictor::DEFAULT_PORT)]
    pub port: u16,
    /// When set, the admin routes require `Authorization: Bearer <token>` or the
    /// operator's HMAC signature keyed by it.
    #[arg(long, env = "PREDICTOR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Largest accepted request body, bytes.
    #[arg(long, env = "PREDICTOR_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most instances in one prediction request.
    #[arg(long, env = "PREDICTOR_MAX_INSTANCES", default_value_t = 10_000)]
    pub max_instances: usize,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "PREDICTOR_WORKERS")]
    pub workers: Option<usize>,
    /// Seconds between registry retries while no model is loaded or the fallback serves.
    #[arg(long, env = "PREDICTOR_RETRY_SECONDS", default_value_t = 10)]
    pub retry_seconds: u64,
    /// The most bytes one model version's files may hold; the download stops there.
    #[arg(long, env = "MODEL_MAX_BYTES", default_value_t = mlflow::MAX_ARTIFACT_BYTES)]
    pub model_max_bytes: usize,
    /// How many registry versions the cache in MODEL_FALLBACK_DIR keeps.
    #[arg(long, env = "MODEL_CACHE_VERSIONS", default_value_t = 3)]
    pub cache_versions: usize,
    /// Deadline of one prediction's computation, milliseconds (503 `predict_timeout` past it).
    #[arg(long, env = "PREDICTOR_PREDICT_TIMEOUT_MS", default_value_t = 10_000)]
    pub predict_timeout_ms: u64,
    /// The sliding window input drift is measured over (`90s`, `30m`, `1h`, ...).
    #[arg(long, env = "PREDICTOR_DRIFT_WINDOW", default_value = "1h", value_parser = drift_window)]
    pub drift_window: std::time::Duration,
    /// Rows of live traffic that become the drift reference of a version without a
    /// `drift_reference.json` (the first ones it serves).
    #[arg(long, env = "PREDICTOR_DRIFT_BASELINE_ROWS", default_value_t = 10_000)]
    pub drift_baseline_rows: usize,
    /// Serve the `/ui` page (`false` leaves it out).
    #[arg(long, env = "PREDICTOR_UI", default_value_t = true, action = clap::ArgAction::Set)]
    pub ui: bool,
    /// Log format: `json` or `text`.
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    pub log_format: String,
}

impl Config {
    /// The configured way to pick a version: MODEL_VERSION, else MODEL_ALIAS, else
    /// MODEL_STAGE, else stage `Production`.
    pub fn selector(&self) -> Selector {
        let set = |v: &Option<String>| v.as_ref().filter(|s| !s.trim().is_empty()).cloned();
        if let Some(v) = set(&self.model_version) {
            Selector::Version(v)
        } else if let Some(a) = set(&self.model_alias) {
            Selector::Alias(a)
        } else if let Some(s) = set(&self.model_stage) {
            if s.trim().chars().all(|c| c.is_ascii_digit()) {
                Selector::Version(s.trim().to_owned())
            } else {
                Selector::Stage(s)
            }
        } else {
            Selector::Stage("Production".into())
        }
    }
}

/// A drift window: a duration of at least a second.
fn drift_window(text: &str) -> Result<std::time::Duration, String> {
    let window = api::duration::parse_duration(text)?;
    if window < std::time::Duration::from_secs(1) {
        return Err(format!("{text:?} is shorter than 1s"));
    }
    Ok(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_environment_variable_is_in_the_readme_and_ui_is_on_by_default() {
        use clap::CommandFactory;
        let readme = include_str!("../../../README.md");
        let command = Config::command();
        let names: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        assert!(names.len() > 20, "{names:?}");
        for name in names {
            assert!(
                readme.contains(&format!("`{name}`")),
                "README.md does not document {name}"
            );
        }
        assert!(parse(&[]).ui);
        assert!(!parse(&["--ui", "false"]).ui);
    }

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["forecast-predictor"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[test]
    fn a_pinned_version_wins_over_alias_and_stage() {
        let c = parse(&["--model-alias", "champion", "--model-version", "3"]);
        assert_eq!(c.selector(), Selector::Version("3".into()));
        let c = parse(&["--model-alias", "champion", "--model-stage", "Staging"]);
        assert_eq!(c.selector(), Selector::Alias("champion".into()));
        let c = parse(&["--model-version", ""]);
        assert_eq!(c.selector(), Selector::Stage("Production".into()));
    }

    #[test]
    fn a_stage_of_digits_selects_that_version_as_the_old_service_did() {
        let c = parse(&["--model-stage", "2"]);
        assert_eq!(c.selector(), Selector::Version("2".into()));
        let c = parse(&["--model-stage", "Staging"]);
        assert_eq!(c.selector(), Selector::Stage("Staging".into()));
    }
}
