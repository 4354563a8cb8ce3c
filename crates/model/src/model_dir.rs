//! MLflow model directories: the `MLmodel` file, its signature, the model file of each
//! flavor this project serves, and a digest of the artifacts.
//!
//! Two flavors are served:
//! - `forecast_tree_ensemble` (this project's own): `ensemble.json`, the evaluator's
//!   tree list in plain JSON, readable by humans; the `MLmodel` entry names the file, the
//!   format version, the tree and feature counts.
//! - `onnx` (as `mlflow.onnx.log_model` writes it): the `data` file must hold a single
//!   ONNX-ML `TreeEnsembleRegressor`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ensemble::{EnsembleSpec, TreeEnsemble};
use crate::error::ModelError;
use crate::onnx::import_onnx;

/// The `MLmodel` file name.
pub const MLMODEL_FILE: &str = "MLmodel";
/// This project's flavor name in `MLmodel`.
pub const TREE_ENSEMBLE_FLAVOR: &str = "forecast_tree_ensemble";
/// The flavor `mlflow.onnx.log_model` writes.
pub const ONNX_FLAVOR: &str = "onnx";
/// The model file of [`TREE_ENSEMBLE_FLAVOR`].
pub const ENSEMBLE_FILE: &str = "ensemble.json";
/// The version of the `ensemble.json` format this crate writes and reads.
pub const ENSEMBLE_FORMAT_VERSION: u32 = 1;

/// Largest model file accepted (a 100-tree depth-10 forest is a few MB).
const MAX_MODEL_FILE_BYTES: u64 = 512 * 1024 * 1024;

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

    let (flavor, ensemble, file_names) = if let Some(flavor) = flavors.get(TREE_ENSEMBLE_FLAVOR) {
        let file = flavor_file(flavor, "model_file", ENSEMBLE_FILE);
        let path = safe_join(dir, &file)?;
        let bytes = read_limited(&path)?;
        let parsed: EnsembleFile = serde_json::from_slice(&bytes)
            .map_err(|e| ModelError::format(&path, format!("not a tree-ensemble file: {e}")))?;
        if parsed.format_version != ENSEMBLE_FORMAT_VERSION {
            return Err(ModelError::unsupported(format!(
                "{ENSEMBLE_FILE} format version {} (this build reads {ENSEMBLE_FORMAT_VERSION})",
                parsed.format_version
            )));
        }
        let ensemble = TreeEnsemble::new(&parsed.ensemble)?;
        (TREE_ENSEMBLE_FLAVOR, ensemble, Some(parsed.feature_names))
    } else if let Some(flavor) = flavors.get(ONNX_FLAVOR) {
        let file = flavor_file(flavor, "data", "model.onnx");
        let path = safe_join(dir, &file)?;
        let bytes = read_limited(&path)?;
        let imported = import_onnx(&bytes).map_err(|e| ModelError::format(&path, e.to_string()))?;
        (ONNX_FLAVOR, imported.ensemble, None)
    } else {
        let names: Vec<String> = flavors
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect();
        return Err(ModelError::unsupported(format!(
            "flavors [{}]; this predictor serves `{TREE_ENSEMBLE_FLAVOR}` and `{ONNX_FLAVOR}` \
             (a single TreeEnsembleRegressor)",
            names.join(", ")
        )));
    };

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
    let n = ensemble.n_features();
    let feature_names = match file_names.or(signature_names).or(metadata_names) {
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
        ensemble,
        feature_names,
        flavor: flavor.to_owned(),
        digest: artifacts_digest(dir)?,
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

fn read_limited(path: &Path) -> Result<Vec<u8>, ModelError> {
    let meta = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
    if meta.len() > MAX_MODEL_FILE_BYTES {
        return Err(ModelError::format(
            path,
            "model file is larger than 512 MiB",
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
mod tests {
    use super::*;
    use crate::ensemble::{
        Aggregate, InputPrecision, NodeSpec, PostTransform, SplitRule, TreeSpec,
    };

    fn tiny_ensemble(n_features: usize) -> TreeEnsemble {
        TreeEnsemble::new(&EnsembleSpec {
            n_features,
            preprocess: Vec::new(),
            aggregate: Aggregate::Sum,
            base_value: 0.0,
            post_transform: PostTransform::None,
            input_precision: InputPrecision::F64,
            trees: vec![TreeSpec {
                nodes: vec![
                    NodeSpec::Split {
                        feature: 1,
                        rule: SplitRule::Leq,
                        threshold: 2.0,
                        yes: 1,
                        no: 2,
                        missing_yes: false,
                        missing_no: false,
                        nan_as_zero: false,
                        zero_is_missing: false,
                    },
                    NodeSpec::Leaf { leaf: 5.0 },
                    NodeSpec::Leaf { leaf: 7.0 },
                ],
            }],
        })
        .unwrap()
    }

    #[test]
    fn a_written_model_directory_loads_back_with_names_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["a".to_string(), "b".to_string()];
        write_model_dir(
            dir.path(),
            &tiny_ensemble(2),
            &names,
            &ModelDirInfo::default(),
        )
        .unwrap();
        let mlmodel = std::fs::read_to_string(dir.path().join(MLMODEL_FILE)).unwrap();
        assert!(mlmodel.contains("forecast_tree_ensemble"), "{mlmodel}");
        let loaded = load_model_dir(dir.path()).unwrap();
        assert_eq!(loaded.feature_names, names);
        assert_eq!(loaded.flavor, TREE_ENSEMBLE_FLAVOR);
        assert_eq!(loaded.ensemble.predict_row(&[0.0, 3.0]), 7.0);
        assert!(loaded.digest.starts_with("sha256:"));
        // The digest follows the content.
        let before = loaded.digest;
        std::fs::write(dir.path().join("extra.txt"), "x").unwrap();
        assert_ne!(artifacts_digest(dir.path()).unwrap(), before);
    }

    #[test]
    fn corrupt_or_inconsistent_directories_are_rejected_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["a".to_string(), "b".to_string()];
        write_model_dir(
            dir.path(),
            &tiny_ensemble(2),
            &names,
            &ModelDirInfo::default(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(ENSEMBLE_FILE),
            b"{\"format_version\": 1, \"tru",
        )
        .unwrap();
        let err = load_model_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains(ENSEMBLE_FILE), "{err}");

        let empty = tempfile::tempdir().unwrap();
        let err = load_model_dir(empty.path()).unwrap_err().to_string();
        assert!(err.contains("MLmodel"), "{err}");

        std::fs::write(
            empty.path().join(MLMODEL_FILE),
            "flavors:\n  sklearn:\n    pickled_model: model.pkl\n",
        )
        .unwrap();
        let err = load_model_dir(empty.path()).unwrap_err().to_string();
        assert!(err.contains("sklearn"), "{err}");

        std::fs::write(
            empty.path().join(MLMODEL_FILE),
            "flavors:\n  onnx:\n    data: ../../etc/passwd\n",
        )
        .unwrap();
        let err = load_model_dir(empty.path()).unwrap_err().to_string();
        assert!(err.contains("outside"), "{err}");
    }

    #[test]
    fn a_signature_that_disagrees_with_the_model_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["a".to_string(), "b".to_string()];
        write_model_dir(
            dir.path(),
            &tiny_ensemble(2),
            &names,
            &ModelDirInfo::default(),
        )
        .unwrap();
        // Rewrite ensemble.json with three names for a two-feature model.
        let mut file: EnsembleFile =
            serde_json::from_slice(&std::fs::read(dir.path().join(ENSEMBLE_FILE)).unwrap())
                .unwrap();
        file.feature_names.push("c".into());
        std::fs::write(
            dir.path().join(ENSEMBLE_FILE),
            serde_json::to_vec(&file).unwrap(),
        )
        .unwrap();
        let err = load_model_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("3 features"), "{err}");
    }
}
