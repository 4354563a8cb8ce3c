//! MLflow model directories: the `MLmodel` file, its signature, the model file of each
//! flavor this project serves, and a digest of the artifacts.
//!
//! Flavors served (the first one present wins, in this order):
//! - `forecast_tree_ensemble` (this project's own): `ensemble.json`, the evaluator's
//!   tree list in plain JSON, readable by humans; the `MLmodel` entry names the file, the
//!   format version, the tree and feature counts.
//! - `onnx` (as `mlflow.onnx.log_model` writes it): the `data` file must hold a single
//!   ONNX-ML `TreeEnsembleRegressor`.
//! - `sklearn`: `pickled_model` in its `serialization_format` (skops, cloudpickle, pickle).
//! - `xgboost`: `data` in its `model_format` (ubj, json).
//! - `lightgbm`: `data`, a Booster's text model (`.lgb`), or an `LGBMRegressor` in its
//!   `serialization_format`.
//!
//! A bare `model.joblib` / `model.pkl` (the old service's disk model) loads too
//! ([`load_model_file`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ensemble::{EnsembleSpec, TreeEnsemble};
use crate::error::ModelError;
use crate::imported::ImportedModel;
use crate::lightgbm::{import_lightgbm_object, import_lightgbm_text};
use crate::onnx::import_onnx;
use crate::sklearn::{SklearnFormat, import_sklearn};
use crate::xgboost::{XgboostFormat, import_xgboost};

/// The `MLmodel` file name.
pub const MLMODEL_FILE: &str = "MLmodel";
/// This project's flavor name in `MLmodel`.
pub const TREE_ENSEMBLE_FLAVOR: &str = "forecast_tree_ensemble";
/// The flavor `mlflow.onnx.log_model` writes.
pub const ONNX_FLAVOR: &str = "onnx";
/// The flavor `mlflow.sklearn.log_model` writes.
pub const SKLEARN_FLAVOR: &str = "sklearn";
/// The flavor `mlflow.xgboost.log_model` writes.
pub const XGBOOST_FLAVOR: &str = "xgboost";
/// The flavor `mlflow.lightgbm.log_model` writes.
pub const LIGHTGBM_FLAVOR: &str = "lightgbm";
/// Every flavor served, in the order they are tried.
pub const SERVED_FLAVORS: &[&str] = &[
    TREE_ENSEMBLE_FLAVOR,
    ONNX_FLAVOR,
    SKLEARN_FLAVOR,
    XGBOOST_FLAVOR,
    LIGHTGBM_FLAVOR,
];
/// File names of a bare scikit-learn model in a fallback directory (the old service's).
pub const BARE_MODEL_FILES: &[&str] = &["model.joblib", "model.pkl"];
/// The model file of [`TREE_ENSEMBLE_FLAVOR`].
pub const ENSEMBLE_FILE: &str = "ensemble.json";
/// The version of the `ensemble.json` format this crate writes and reads.
pub const ENSEMBLE_FORMAT_VERSION: u32 = 1;

/// Largest model file accepted (a 100-tree depth-10 forest is a few MB).
pub const MAX_MODEL_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// The contents of `ensemble.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnsembleFile {
    pub format_version: u32,
    pub feature_names: Vec<String>,
    pub ensemble: EnsembleSpec,
}

/// A model read from an MLflow model directory, ready to serve.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    pub ensemble: TreeEnsemble,
    pub feature_names: Vec<String>,
    /// The flavor it was read from.
    pub flavor: String,
    /// The estimator as its library names it (`RandomForestRegressor`, ...).
    pub estimator: String,
    /// Whether rows with missing values (NaN) may be predicted.
    pub accepts_missing: bool,
    /// `sha256:<hex>` over every file of the directory (paths and contents).
    pub digest: String,
}

impl LoadedModel {
    pub fn n_features(&self) -> usize {
        self.ensemble.n_features()
    }
}

/// What to record about a model written by this project.
#[derive(Debug, Clone, Default)]
pub struct ModelDirInfo {
    /// Free-form string → string metadata stored in `MLmodel` (`metadata:`).
    pub metadata: Vec<(String, String)>,
}

/// Writes `ensemble` as an MLflow model directory with the `forecast_tree_ensemble` flavor.
pub fn write_model_dir(
    dir: &Path,
    ensemble: &TreeEnsemble,
    feature_names: &[String],
    info: &ModelDirInfo,
) -> Result<(), ModelError> {
    if feature_names.len() != ensemble.n_features() {
        return Err(ModelError::invalid(format!(
            "{} feature names for a model of {} features",
            feature_names.len(),
            ensemble.n_features()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let file = EnsembleFile {
        format_version: ENSEMBLE_FORMAT_VERSION,
        feature_names: feature_names.to_vec(),
        ensemble: ensemble.to_spec(),
    };
    let json = serde_json::to_vec(&file)
        .map_err(|e| ModelError::invalid(format!("cannot serialise the ensemble: {e}")))?;
    let ensemble_path = dir.join(ENSEMBLE_FILE);
    std::fs::write(&ensemble_path, json).map_err(|e| ModelError::io(&ensemble_path, e))?;

    let inputs: Vec<serde_json::Value> = feature_names
        .iter()
        .map(|n| serde_json::json!({"type": "double", "name": n, "required": true}))
        .collect();
    let mut flavor = serde_yaml::Mapping::new();
    flavor.insert("model_file".into(), ENSEMBLE_FILE.into());
    flavor.insert("format_version".into(), ENSEMBLE_FORMAT_VERSION.into());
    flavor.insert("evaluator".into(), "forecast-model tree ensemble".into());
    flavor.insert("n_trees".into(), (ensemble.n_trees() as u64).into());
    flavor.insert("n_features".into(), (ensemble.n_features() as u64).into());
    flavor.insert("n_nodes".into(), (ensemble.n_nodes() as u64).into());
    let mut flavors = serde_yaml::Mapping::new();
    flavors.insert(TREE_ENSEMBLE_FLAVOR.into(), flavor.into());
    let mut signature = serde_yaml::Mapping::new();
    signature.insert(
        "inputs".into(),
        serde_json::Value::Array(inputs).to_string().into(),
    );
    signature.insert(
        "outputs".into(),
        r#"[{"type": "double", "required": true}]"#.into(),
    );
    let mut mlmodel = serde_yaml::Mapping::new();
    mlmodel.insert("artifact_path".into(), "model".into());
    mlmodel.insert("flavors".into(), flavors.into());
    mlmodel.insert(
        "model_uuid".into(),
        uuid::Uuid::new_v4().simple().to_string().into(),
    );
    mlmodel.insert(
        "utc_time_created".into(),
        chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string()
            .into(),
    );
    mlmodel.insert("signature".into(), signature.into());
    if !info.metadata.is_empty() {
        let metadata: serde_yaml::Mapping = info
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
            .collect();
        mlmodel.insert("metadata".into(), metadata.into());
    }
    let yaml = serde_yaml::to_string(&mlmodel)
        .map_err(|e| ModelError::invalid(format!("cannot write MLmodel: {e}")))?;
    let mlmodel_path = dir.join(MLMODEL_FILE);
    std::fs::write(&mlmodel_path, yaml).map_err(|e| ModelError::io(&mlmodel_path, e))
}

/// Reads and validates the model in an MLflow model directory.
pub fn load_model_dir(dir: &Path) -> Result<LoadedModel, ModelError> {
    load_model_dir_within(dir, MAX_MODEL_FILE_BYTES)
}

/// [`load_model_dir`] where no model file, and nothing a file inflates to (a skops
/// archive's members), may exceed `max_bytes` (the predictor's `MODEL_MAX_BYTES`; never
/// more than [`MAX_MODEL_FILE_BYTES`]).
pub fn load_model_dir_within(dir: &Path, max_bytes: u64) -> Result<LoadedModel, ModelError> {
    let max_bytes = max_bytes.min(MAX_MODEL_FILE_BYTES);
    let mlmodel_path = dir.join(MLMODEL_FILE);
    let text =
        std::fs::read_to_string(&mlmodel_path).map_err(|e| ModelError::io(&mlmodel_path, e))?;
    let mlmodel: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| ModelError::format(&mlmodel_path, format!("not valid YAML: {e}")))?;
    let flavors = mlmodel
        .get("flavors")
        .and_then(|f| f.as_mapping())
        .ok_or_else(|| ModelError::format(&mlmodel_path, "has no `flavors` section"))?;
    let signature_names = signature_input_names(&mlmodel, &mlmodel_path)?;

    let Some((flavor, config)) = SERVED_FLAVORS
        .iter()
        .find_map(|&name| flavors.get(name).map(|config| (name, config)))
    else {
        let names: Vec<String> = flavors
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect();
        return Err(ModelError::unsupported(format!(
            "flavors [{}]; this predictor serves {}",
            names.join(", "),
            SERVED_FLAVORS.join(", ")
        )));
    };
    let imported = import_flavor(dir, flavor, config, max_bytes)?;

    let metadata_names = mlmodel
        .get("metadata")
        .and_then(|m| m.get("feature_names"))
        .and_then(|v| match v {
            serde_yaml::Value::Sequence(s) => Some(
                s.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
            ),
            serde_yaml::Value::String(s) => Some(
                s.split(',')
                    .map(|p| p.trim().to_owned())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        });
    let n = imported.ensemble.n_features();
    let model_names = imported.feature_names.clone();
    let names = if flavor == TREE_ENSEMBLE_FLAVOR {
        model_names.or(signature_names).or(metadata_names)
    } else {
        signature_names.or(metadata_names).or(model_names)
    };
    let feature_names = match names {
        Some(names) if names.len() == n => names,
        Some(names) => {
            return Err(ModelError::invalid(format!(
                "the signature names {} features but the model takes {n}",
                names.len()
            )));
        }
        None => (0..n).map(|i| format!("f{i}")).collect(),
    };
    Ok(LoadedModel {
        ensemble: imported.ensemble,
        feature_names,
        flavor: flavor.to_owned(),
        estimator: imported.estimator,
        accepts_missing: imported.accepts_missing,
        digest: artifacts_digest(dir)?,
    })
}

/// Reads the model file of one flavor.
fn import_flavor(
    dir: &Path,
    flavor: &str,
    config: &serde_yaml::Value,
    max_bytes: u64,
) -> Result<ImportedModel, ModelError> {
    let text_of = |key: &str| config.get(key).and_then(|v| v.as_str());
    match flavor {
        TREE_ENSEMBLE_FLAVOR => {
            let path = safe_join(dir, &flavor_file(config, "model_file", ENSEMBLE_FILE))?;
            let bytes = read_limited(&path, max_bytes)?;
            let parsed: EnsembleFile = serde_json::from_slice(&bytes)
                .map_err(|e| ModelError::format(&path, format!("not a tree-ensemble file: {e}")))?;
            if parsed.format_version != ENSEMBLE_FORMAT_VERSION {
                return Err(ModelError::unsupported(format!(
                    "{ENSEMBLE_FILE} format version {} (this build reads {ENSEMBLE_FORMAT_VERSION})",
                    parsed.format_version
                )));
            }
            Ok(ImportedModel {
                ensemble: TreeEnsemble::new(&parsed.ensemble)?,
                estimator: "TreeEnsemble".into(),
                feature_names: Some(parsed.feature_names),
                accepts_missing: false,
            })
        }
        ONNX_FLAVOR => {
            let path = safe_join(dir, &flavor_file(config, "data", "model.onnx"))?;
            let bytes = read_limited(&path, max_bytes)?;
            let imported =
                import_onnx(&bytes).map_err(|e| ModelError::format(&path, e.to_string()))?;
            Ok(ImportedModel {
                ensemble: imported.ensemble,
                estimator: "TreeEnsembleRegressor".into(),
                feature_names: None,
                accepts_missing: false,
            })
        }
        SKLEARN_FLAVOR => {
            let path = safe_join(dir, &flavor_file(config, "pickled_model", "model.pkl"))?;
            let bytes = read_limited(&path, max_bytes)?;
            let format = SklearnFormat::from_mlflow(text_of("serialization_format"), &bytes)?;
            import_sklearn(&bytes, format, max_bytes)
                .map_err(|e| ModelError::format(&path, e.to_string()))
        }
        XGBOOST_FLAVOR => {
            let path = safe_join(dir, &flavor_file(config, "data", "model.ubj"))?;
            let format = match text_of("model_format") {
                Some(f) => f.to_owned(),
                None => path
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or("")
                    .to_owned(),
            };
            let format = XgboostFormat::from_name(&format)?;
            let bytes = read_limited(&path, max_bytes)?;
            let class = text_of("model_class").unwrap_or("xgboost.Booster");
            let class = class.rsplit('.').next().unwrap_or(class);
            import_xgboost(&bytes, format, class)
                .map_err(|e| ModelError::format(&path, e.to_string()))
        }
        LIGHTGBM_FLAVOR => {
            let path = safe_join(dir, &flavor_file(config, "data", "model.lgb"))?;
            let bytes = read_limited(&path, max_bytes)?;
            let class = text_of("model_class").unwrap_or("lightgbm.basic.Booster");
            let class = class.rsplit('.').next().unwrap_or(class);
            let is_text = path.extension().is_some_and(|e| e == "lgb" || e == "txt")
                || bytes.starts_with(b"tree\n");
            let imported = if is_text {
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| ModelError::format(&path, "the LightGBM model is not text"))?;
                import_lightgbm_text(text, class)
            } else {
                let format = SklearnFormat::from_mlflow(text_of("serialization_format"), &bytes)?;
                let (objects, root) = format.read_objects(&bytes, max_bytes)?;
                import_lightgbm_object(&objects, root)
            };
            imported.map_err(|e| ModelError::format(&path, e.to_string()))
        }
        other => Err(ModelError::unsupported(format!("flavor {other}"))),
    }
}

/// Reads a model from `path`: an MLflow model directory, or a bare joblib/pickle/skops
/// file (see [`load_model_file`]).
pub fn load_model_path(path: &Path) -> Result<LoadedModel, ModelError> {
    load_model_path_within(path, MAX_MODEL_FILE_BYTES)
}

/// [`load_model_path`] within `max_bytes` (see [`load_model_dir_within`]).
pub fn load_model_path_within(path: &Path, max_bytes: u64) -> Result<LoadedModel, ModelError> {
    if path.is_file() {
        load_model_file_within(path, max_bytes)
    } else {
        load_model_dir_within(path, max_bytes)
    }
}

/// Reads a bare scikit-learn model file saved with `joblib.dump` or `pickle.dump` (the old
/// service's disk model), or `skops.io.dump`. Feature names come from the model, else `f0…`.
pub fn load_model_file(path: &Path) -> Result<LoadedModel, ModelError> {
    load_model_file_within(path, MAX_MODEL_FILE_BYTES)
}

/// [`load_model_file`] within `max_bytes` (see [`load_model_dir_within`]).
pub fn load_model_file_within(path: &Path, max_bytes: u64) -> Result<LoadedModel, ModelError> {
    let max_bytes = max_bytes.min(MAX_MODEL_FILE_BYTES);
    let bytes = read_limited(path, max_bytes)?;
    let format = SklearnFormat::from_mlflow(None, &bytes)?;
    let imported = import_sklearn(&bytes, format, max_bytes)
        .map_err(|e| ModelError::format(path, e.to_string()))?;
    let n = imported.ensemble.n_features();
    let feature_names = imported
        .feature_names
        .filter(|names| names.len() == n)
        .unwrap_or_else(|| (0..n).map(|i| format!("f{i}")).collect());
    let mut hasher = Sha256::new();
    hasher.update(&bytes);
    Ok(LoadedModel {
        ensemble: imported.ensemble,
        feature_names,
        flavor: SKLEARN_FLAVOR.to_owned(),
        estimator: imported.estimator,
        accepts_missing: imported.accepts_missing,
        digest: format!("sha256:{}", hex::encode(hasher.finalize())),
    })
}

fn flavor_file(flavor: &serde_yaml::Value, key: &str, default: &str) -> String {
    flavor
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or(default)
        .to_owned()
}

/// Joins a relative file name from `MLmodel`, refusing paths that leave the directory.
fn safe_join(dir: &Path, file: &str) -> Result<PathBuf, ModelError> {
    let rel = Path::new(file);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(ModelError::format(
            dir.join(MLMODEL_FILE),
            format!("model file {file:?} is outside the model directory"),
        ));
    }
    Ok(dir.join(rel))
}

fn read_limited(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ModelError> {
    let meta = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
    if meta.len() > max_bytes {
        return Err(ModelError::format(
            path,
            format!("model file is larger than the limit of {max_bytes} bytes"),
        ));
    }
    std::fs::read(path).map_err(|e| ModelError::io(path, e))
}

/// Column names from an MLflow column-based signature; `None` for a tensor signature or none.
fn signature_input_names(
    mlmodel: &serde_yaml::Value,
    path: &Path,
) -> Result<Option<Vec<String>>, ModelError> {
    let Some(inputs) = mlmodel
        .get("signature")
        .and_then(|s| s.get("inputs"))
        .and_then(|i| i.as_str())
    else {
        return Ok(None);
    };
    let specs: Vec<serde_json::Value> = serde_json::from_str(inputs)
        .map_err(|e| ModelError::format(path, format!("signature inputs are not JSON: {e}")))?;
    if specs
        .iter()
        .any(|s| s.get("type").and_then(|t| t.as_str()) == Some("tensor"))
    {
        return Ok(None);
    }
    let names: Option<Vec<String>> = specs
        .iter()
        .map(|s| s.get("name").and_then(|n| n.as_str()).map(str::to_owned))
        .collect();
    Ok(names)
}

/// `sha256:<hex>` over the directory's files in path order (relative path, length, bytes).
pub fn artifacts_digest(dir: &Path) -> Result<String, ModelError> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for rel in files {
        let path = dir.join(&rel);
        let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
        hasher.update(rel.as_bytes());
        hasher.update([0u8]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), ModelError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ModelError::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| ModelError::io(&path, e))?;
        if kind.is_dir() {
            collect_files(root, &path, out)?;
        } else if kind.is_file() {
            let rel = path
                .strip_prefix(root)
                .map_err(|_| ModelError::invalid("file outside the model directory"))?;
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "model_dir_tests.rs"]
mod tests;
