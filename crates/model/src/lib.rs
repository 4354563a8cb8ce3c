//! The forecasting model: the serving evaluator, its importers, MLflow model directories,
//! the archive-forecast features and training.

pub mod dataset;
pub mod drift_reference;
pub mod ensemble;
pub mod error;
pub mod features;
pub mod forecast;
pub mod imported;
pub mod input_example;
pub mod lightgbm;
pub mod model_dir;
pub mod onnx;
pub mod python;
pub mod sklearn;
#[cfg(feature = "training")]
pub mod smartcore_forest;
#[cfg(feature = "training")]
pub mod training;
pub mod xgboost;

pub use ensemble::TreeEnsemble;
pub use error::ModelError;
pub use imported::ImportedModel;
pub use model_dir::{
    LoadedModel, MAX_MODEL_FILE_BYTES, ModelDirInfo, load_model_dir, load_model_dir_within,
    load_model_file, load_model_file_within, load_model_path, load_model_path_within,
    write_model_dir,
};
