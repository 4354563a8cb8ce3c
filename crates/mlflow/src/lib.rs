//! A typed async client for the MLflow tracking server and model registry REST API
//! (`/api/2.0/mlflow/...` and the artifact proxy `/api/2.0/mlflow-artifacts/...`).

mod artifacts;
mod client;
mod error;
mod registry;
mod tracking;
pub mod types;

pub use artifacts::DownloadedArtifacts;
pub use client::{
    ClientConfig, Credentials, MAX_ANSWER_BYTES, MAX_ARTIFACT_BYTES, MlflowClient, Proxy,
    credentials_from, install_crypto_provider, parse_tracking_uri,
};
pub use error::MlflowError;
pub use types::{ModelVersion, RegisteredModel};
