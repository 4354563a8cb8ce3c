//! Loading a model: from the registry (download, load, verify, cache) or from
//! `MODEL_FALLBACK_DIR` (a cached registry model, else the bundled one).
//!
//! Fallback directory layout:
//! - `MLmodel` + files at the top: the bundled model (e.g. baked into the image);
//! - `cache/<model name>/<version>/`: the last good registry models, with
//!   `cache/<model name>/<version>.json` recording where each came from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::http::StatusCode;
use api::predictor::{ModelInfo, ModelOrigin};
use api::selector::Selector;
use mlflow::{MlflowClient, MlflowError};
use model::{LoadedModel, ModelError};
use serde::{Deserialize, Serialize};

use crate::drift::{Drift, DriftSettings};

/// A model ready to serve, with what `/model/info` says about it.
#[derive(Debug, Clone)]
pub struct ServedModel {
    /// Shared: the shadow challenger promoted to served is the same model, not a copy.
    pub model: Arc<LoadedModel>,
    pub info: ModelInfo,
    /// Live inputs against the version's reference (counted only while served).
    pub drift: Arc<Drift>,
    /// The first row of the model's MLflow input example, by feature (the `/ui` form
    /// starts from it).
    pub example: Option<Vec<Option<f64>>>,
}

impl ServedModel {
    /// Predictions for validated rows (the batch path walks blocks of rows per tree).
    pub fn predict(&self, rows: &crate::input::Matrix) -> Vec<f64> {
        let ensemble = &self.model.ensemble;
        match rows.rows() {
            1 => vec![ensemble.predict_row(rows.row(0))],
            n => {
                let mut out = vec![0.0; n];
                ensemble.predict_matrix_into(rows.values(), &mut out);
                out
            }
        }
    }

    /// What requests must send.
    pub fn schema(&self) -> crate::input::Schema<'_> {
        crate::input::Schema {
            features: &self.info.feature_names,
            accepts_missing: self.model.accepts_missing,
        }
    }
}

/// Why a model could not be loaded (the served model, if any, stays).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no registry is configured (MLFLOW_TRACKING_URI is unset)")]
    NoRegistry,
    #[error("registry: {0}")]
    Registry(#[from] MlflowError),
    #[error("version {version} cannot be served: {source}")]
    Model {
        version: String,
        #[source]
        source: ModelError,
    },
    #[error("version {version} failed verification: {message}")]
    Verification { version: String, message: String },
    #[error(
        "version {version} takes features [{new}] but the served model takes [{served}]; \
         send allow_schema_change to switch anyway"
    )]
    SchemaChange {
        version: String,
        new: String,
        served: String,
    },
    /// A version that is not a version number (asked for, or answered by the registry);
    /// it never reaches the registry or a cache path.
    #[error("{origin} version {version:?} is not a version number (digits only)")]
    InvalidVersion {
        origin: &'static str,
        version: String,
    },
    #[error("no usable model in the fallback directory {dir}: {reason}")]
    NoFallback { dir: String, reason: String },
    #[error("{0}")]
    Internal(String),
}

impl LoadError {
    pub fn code(&self) -> &'static str {
        match self {
            LoadError::NoRegistry => "no_registry",
            LoadError::Registry(e) if e.is_not_found() => "version_not_found",
            LoadError::Registry(e) if e.is_unreachable() => "registry_unreachable",
            LoadError::Registry(_) => "registry_error",
            LoadError::Model { .. } => "invalid_model",
            LoadError::Verification { .. } => "verification_failed",
            LoadError::SchemaChange { .. } => "schema_mismatch",
            LoadError::InvalidVersion { .. } => "invalid_version",
            LoadError::NoFallback { .. } => "no_fallback",
            LoadError::Internal(_) => "internal",
        }
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            LoadError::NoRegistry => StatusCode::CONFLICT,
            LoadError::Registry(e) if e.is_not_found() => StatusCode::NOT_FOUND,
            LoadError::Registry(_) => StatusCode::BAD_GATEWAY,
            LoadError::Model { .. } | LoadError::Verification { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            LoadError::SchemaChange { .. } => StatusCode::CONFLICT,
            LoadError::InvalidVersion {
                origin: "requested",
                ..
            } => StatusCode::BAD_REQUEST,
            LoadError::InvalidVersion { .. } => StatusCode::BAD_GATEWAY,
            LoadError::NoFallback { .. } | LoadError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// MLflow model versions are positive integers; anything else is refused before it is
/// sent anywhere or joined into a path (a registry answering `..` would point at the
/// cache root).
pub fn check_version(origin: &'static str, version: &str) -> Result<(), LoadError> {
    let digits =
        !version.is_empty() && version.len() <= 18 && version.bytes().all(|b| b.is_ascii_digit());
    if digits {
        Ok(())
    } else {
        Err(LoadError::InvalidVersion {
            origin,
            version: version.chars().take(64).collect(),
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheRecord {
    model_name: String,
    version: String,
    source: String,
    cached_at: String,
}

/// Knows where models come from; holds no model itself.
#[derive(Debug, Clone)]
pub struct Loader {
    pub registry: Option<MlflowClient>,
    pub model_name: String,
    pub fallback_dir: Option<PathBuf>,
    /// How many registry versions the cache keeps (`MODEL_CACHE_VERSIONS`): the one just
    /// stored and the most recently stored others.
    pub cache_versions: usize,
    /// The most bytes a model file, or what it inflates to, may hold (`MODEL_MAX_BYTES`).
    pub max_model_bytes: u64,
    /// `PREDICTOR_DRIFT_WINDOW` and `PREDICTOR_DRIFT_BASELINE_ROWS`.
    pub drift: DriftSettings,
}

impl Loader {
    fn cache_dir(&self) -> Option<PathBuf> {
        self.fallback_dir
            .as_ref()
            .map(|d| d.join("cache").join(sanitise(&self.model_name)))
    }

    /// Resolves `selector`, downloads that version, loads and verifies it, and caches it.
    pub async fn from_registry(&self, selector: &Selector) -> Result<ServedModel, LoadError> {
        if let Selector::Version(v) = selector {
            check_version("requested", v)?;
        }
        let client = self.registry.as_ref().ok_or(LoadError::NoRegistry)?;
        let name = &self.model_name;
        let version = match selector {
            Selector::Alias(alias) => client.get_version_by_alias(name, alias).await?,
            Selector::Stage(stage) => client.get_latest_version_in_stage(name, stage).await?,
            Selector::Version(version) => client.get_model_version(name, version).await?,
        };
        check_version("the registry's", &version.version)?;
        // Stage in the cache (so caching is a rename); without a usable cache, in /tmp.
        let staging_parent = match self.cache_dir() {
            Some(d) if std::fs::create_dir_all(&d).is_ok() => d,
            Some(d) => {
                tracing::warn!(dir = %d.display(), "the fallback directory is not writable; models are not cached");
                std::env::temp_dir()
            }
            None => std::env::temp_dir(),
        };
        let staging = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempdir_in(&staging_parent)
            .map_err(|e| LoadError::Internal(format!("{}: {e}", staging_parent.display())))?;
        let downloaded = client
            .download_model_version(&self.model_name, &version.version, staging.path())
            .await?;
        let loaded = load_blocking(
            staging.path().to_owned(),
            &version.version,
            self.max_model_bytes,
        )
        .await?;
        verify(&loaded, &version.version)?;
        let info = ModelInfo {
            model_name: self.model_name.clone(),
            model_version: version.version.clone(),
            selector: selector.to_string(),
            source: downloaded.location.clone(),
            digest: loaded.digest.clone(),
            flavor: loaded.flavor.clone(),
            feature_names: loaded.feature_names.clone(),
            loaded_at: chrono::Utc::now().to_rfc3339(),
            origin: ModelOrigin::Registry,
            n_trees: loaded.ensemble.n_trees(),
            estimator: loaded.estimator.clone(),
            accepts_missing: loaded.accepts_missing,
            shadow: None,
            drift: None,
        };
        let drift = Drift::of_model_dir(&loaded.feature_names, staging.path(), self.drift);
        let example = model::input_example::read_from_dir(staging.path(), &loaded.feature_names);
        if let Some(cache) = self.cache_dir() {
            // A cache failure must not fail the reload: the model is good and in memory.
            if let Err(e) = store_in_cache(&cache, staging, &info) {
                tracing::warn!(error = %e, "could not cache the model in the fallback directory");
            }
            prune_cache(&cache, &info.model_version, self.cache_versions);
        }
        Ok(ServedModel {
            model: Arc::new(loaded),
            info,
            drift,
            example,
        })
    }

    /// True when a registry is configured (`MLFLOW_TRACKING_URI`).
    pub fn has_registry(&self) -> bool {
        self.registry.is_some()
    }

    /// The newest usable model in the fallback directory: the cached `preferred_version`
    /// if present, else the highest cached version, else the bundled model.
    pub async fn from_fallback(
        &self,
        preferred_version: Option<&str>,
    ) -> Result<ServedModel, LoadError> {
        let dir = self
            .fallback_dir
            .clone()
            .ok_or_else(|| LoadError::NoFallback {
                dir: "(unset)".into(),
                reason: "MODEL_FALLBACK_DIR is not set".into(),
            })?;
        let mut reasons = Vec::new();
        if let Some(cache) = self.cache_dir() {
            for version in cached_versions(&cache, preferred_version) {
                let path = cache.join(&version);
                match load_blocking(path.clone(), &version, self.max_model_bytes).await {
                    Ok(loaded) => {
                        if let Err(e) = verify(&loaded, &version) {
                            reasons.push(e.to_string());
                            continue;
                        }
                        let source = std::fs::read(cache.join(format!("{version}.json")))
                            .ok()
                            .and_then(|b| serde_json::from_slice::<CacheRecord>(&b).ok())
                            .map(|r| r.source)
                            .unwrap_or_else(|| path.display().to_string());
                        return Ok(self.fallback_model(loaded, version, source, &path));
                    }
                    Err(e) => reasons.push(e.to_string()),
                }
            }
        }
        let bare_file = model::model_dir::BARE_MODEL_FILES
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file());
        if dir.join(model::model_dir::MLMODEL_FILE).is_file() || bare_file.is_some() {
            let version = "bundled".to_owned();
            // An MLflow model directory wins over a bare joblib/pickle file.
            let path = match bare_file {
                Some(file) if !dir.join(model::model_dir::MLMODEL_FILE).is_file() => file,
                _ => dir.clone(),
            };
            match load_blocking(path.clone(), &version, self.max_model_bytes).await {
                Ok(loaded) => {
                    verify(&loaded, &version)?;
                    let source = path.display().to_string();
                    return Ok(self.fallback_model(loaded, version, source, &path));
                }
                Err(e) => reasons.push(e.to_string()),
            }
        } else {
            reasons.push(format!(
                "no cached model, no bundled MLmodel and no {}",
                model::model_dir::BARE_MODEL_FILES.join(" or ")
            ));
        }
        Err(LoadError::NoFallback {
            dir: dir.display().to_string(),
            reason: reasons.join("; "),
        })
    }

    fn fallback_model(
        &self,
        loaded: LoadedModel,
        version: String,
        source: String,
        path: &Path,
    ) -> ServedModel {
        let info = ModelInfo {
            model_name: self.model_name.clone(),
            model_version: version,
            selector: format!("fallback:{}", path.display()),
            source,
            digest: loaded.digest.clone(),
            flavor: loaded.flavor.clone(),
            feature_names: loaded.feature_names.clone(),
            loaded_at: chrono::Utc::now().to_rfc3339(),
            origin: ModelOrigin::Fallback,
            n_trees: loaded.ensemble.n_trees(),
            estimator: loaded.estimator.clone(),
            accepts_missing: loaded.accepts_missing,
            shadow: None,
            drift: None,
        };
        ServedModel {
            drift: Drift::of_model_dir(&loaded.feature_names, path, self.drift),
            example: model::input_example::read_from_dir(path, &loaded.feature_names),
            model: Arc::new(loaded),
            info,
        }
    }
}

/// Parsing a model file is CPU work: keep it off the request-serving threads. `path` is
/// an MLflow model directory, or a bare joblib/pickle file.
async fn load_blocking(
    path: PathBuf,
    version: &str,
    max_bytes: u64,
) -> Result<LoadedModel, LoadError> {
    let loaded =
        tokio::task::spawn_blocking(move || model::load_model_path_within(&path, max_bytes))
            .await
            .map_err(|e| LoadError::Internal(format!("model loading task failed: {e}")))?;
    loaded.map_err(|source| LoadError::Model {
        version: version.to_owned(),
        source,
    })
}

/// A model must predict a finite value before it may serve.
fn verify(loaded: &LoadedModel, version: &str) -> Result<(), LoadError> {
    let probe = vec![0.0; loaded.n_features()];
    let value = loaded.ensemble.predict_row(&probe);
    if value.is_finite() {
        Ok(())
    } else {
        Err(LoadError::Verification {
            version: version.to_owned(),
            message: format!("the probe prediction is {value}"),
        })
    }
}

/// Checks that `new` takes the same features as the served model.
pub fn check_schema(served: Option<&Arc<ServedModel>>, new: &ServedModel) -> Result<(), LoadError> {
    match served {
        Some(s) if s.info.feature_names != new.info.feature_names => Err(LoadError::SchemaChange {
            version: new.info.model_version.clone(),
            new: new.info.feature_names.join(", "),
            served: s.info.feature_names.join(", "),
        }),
        _ => Ok(()),
    }
}

fn store_in_cache(
    cache: &Path,
    staging: tempfile::TempDir,
    info: &ModelInfo,
) -> std::io::Result<()> {
    let target = cache.join(sanitise(&info.model_version));
    if target.exists() {
        std::fs::remove_dir_all(&target)?;
    }
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, &target) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(e);
    }
    let record = CacheRecord {
        model_name: info.model_name.clone(),
        version: info.model_version.clone(),
        source: info.source.clone(),
        cached_at: info.loaded_at.clone(),
    };
    let json = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
    std::fs::write(
        cache.join(format!("{}.json", sanitise(&info.model_version))),
        json,
    )
}

/// Removes cached versions beyond the `keep` most recently stored (`just_stored` always
/// stays). Failures are logged: a full cache must not fail a reload.
fn prune_cache(cache: &Path, just_stored: &str, keep: usize) {
    let stored_at = |v: &str| {
        std::fs::metadata(cache.join(format!("{v}.json")))
            .or_else(|_| std::fs::metadata(cache.join(v)))
            .and_then(|m| m.modified())
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
    };
    let mut others: Vec<(std::time::SystemTime, String)> = cached_versions(cache, None)
        .into_iter()
        .filter(|v| v != just_stored)
        .map(|v| (stored_at(&v), v))
        .collect();
    others.sort_by(|a, b| b.cmp(a));
    for (_, version) in others.into_iter().skip(keep.saturating_sub(1)) {
        let removed = std::fs::remove_dir_all(cache.join(&version))
            .and_then(|()| std::fs::remove_file(cache.join(format!("{version}.json"))).or(Ok(())));
        match removed {
            Ok(()) => tracing::info!(version, "removed from the model cache"),
            Err(e) => tracing::warn!(version, error = %e, "could not remove from the model cache"),
        }
    }
}

/// Cached version directories, the preferred one first, then newest first.
fn cached_versions(cache: &Path, preferred: Option<&str>) -> Vec<String> {
    let mut versions: Vec<String> = std::fs::read_dir(cache)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|v| std::cmp::Reverse(v.parse::<u64>().unwrap_or(0)));
    if let Some(pos) = preferred.and_then(|p| versions.iter().position(|v| v == p)) {
        let v = versions.remove(pos);
        versions.insert(0, v);
    }
    versions
}

/// Model names and versions become directory names: keep them to a safe alphabet.
fn sanitise(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_versions_prefer_the_pinned_one_then_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for v in ["2", "10", "9", ".incoming-x"] {
            std::fs::create_dir(dir.path().join(v)).unwrap();
        }
        assert_eq!(cached_versions(dir.path(), None), vec!["10", "9", "2"]);
        assert_eq!(cached_versions(dir.path(), Some("2")), vec!["2", "10", "9"]);
        assert_eq!(sanitise("../a b"), "_a_b");
    }

    #[test]
    fn the_cache_keeps_the_most_recently_stored_versions() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = std::time::SystemTime::UNIX_EPOCH;
        // Stored in the order 9, 2, 10, 4 (a rollback to 2 happened after 9).
        for (v, at) in [("9", 100), ("2", 200), ("10", 300), ("4", 400)] {
            std::fs::create_dir(dir.path().join(v)).unwrap();
            let record = dir.path().join(format!("{v}.json"));
            std::fs::write(&record, "{}").unwrap();
            std::fs::File::options()
                .write(true)
                .open(&record)
                .unwrap()
                .set_modified(epoch + std::time::Duration::from_secs(at))
                .unwrap();
        }
        prune_cache(dir.path(), "4", 3);
        assert_eq!(cached_versions(dir.path(), None), vec!["10", "4", "2"]);
        assert!(!dir.path().join("9.json").exists());
        prune_cache(dir.path(), "9", 1);
        assert!(cached_versions(dir.path(), None).is_empty());
    }
}
