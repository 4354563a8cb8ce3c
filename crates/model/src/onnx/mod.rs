//! Importer for ONNX-ML `TreeEnsembleRegressor` models (as scikit-learn + skl2onnx export
//! them) into the native [`TreeEnsemble`](crate::ensemble::TreeEnsemble).

mod budget;
pub mod proto;
mod tree_ensemble_regressor;

pub use tree_ensemble_regressor::{OnnxImport, import_onnx};
