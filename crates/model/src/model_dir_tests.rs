use super::*;

#[test]
fn a_skops_member_inflating_past_the_configured_limit_is_refused() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(MLMODEL_FILE),
        "flavors:\n  sklearn:\n    pickled_model: model.skops\n    serialization_format: skops\n",
    )
    .unwrap();
    // 4 MiB of spaces, deflated to a few KiB.
    let mut zip_bytes = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut zip_bytes);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("schema.json", options).unwrap();
    zip.write_all(&vec![b' '; 4 * 1024 * 1024]).unwrap();
    zip.finish().unwrap();
    let file = zip_bytes.into_inner();
    assert!(file.len() < 64 * 1024);
    std::fs::write(dir.path().join("model.skops"), &file).unwrap();
    // MODEL_MAX_BYTES of 1 MiB: refused for what it inflates to, not its 4 KiB.
    let e = load_model_dir_within(dir.path(), 1024 * 1024)
        .map(|_| ())
        .expect_err("refused")
        .to_string();
    assert!(e.contains("over the model size limit"), "{e}");
    // Within a larger limit the member is read (and then found not to be a schema).
    let e = load_model_dir_within(dir.path(), 8 * 1024 * 1024)
        .map(|_| ())
        .expect_err("not a model")
        .to_string();
    assert!(!e.contains("size limit"), "{e}");
}
use crate::ensemble::{Aggregate, InputPrecision, NodeSpec, PostTransform, SplitRule, TreeSpec};

fn tiny_ensemble(n_features: usize) -> TreeEnsemble {
    TreeEnsemble::new(&EnsembleSpec {
        n_features,
        preprocess: Vec::new(),
        aggregate: Aggregate::Sum,
        base_value: 0.0,
        post_transform: PostTransform::None,
        input_precision: InputPrecision::F64,
        trees: vec![TreeSpec {
            covers: None,
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
        "flavors:\n  python_function:\n    loader_module: custom\n",
    )
    .unwrap();
    let err = load_model_dir(empty.path()).unwrap_err().to_string();
    assert!(
        err.contains("python_function") && err.contains("sklearn"),
        "{err}"
    );

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
        serde_json::from_slice(&std::fs::read(dir.path().join(ENSEMBLE_FILE)).unwrap()).unwrap();
    file.feature_names.push("c".into());
    std::fs::write(
        dir.path().join(ENSEMBLE_FILE),
        serde_json::to_vec(&file).unwrap(),
    )
    .unwrap();
    let err = load_model_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("3 features"), "{err}");
}
