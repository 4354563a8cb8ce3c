//! Types shared across the project, with no I/O: the predictor's HTTP wire types and
//! (feature `crd`) the `ForecastModel` custom resource.

pub mod admin_signature;
pub mod duration;
#[cfg(feature = "crd")]
pub mod forecast_model;
#[cfg(feature = "crd")]
pub mod kstatus;
pub mod predictor;
pub mod reasons;
#[cfg(feature = "crd")]
pub mod rollout;
pub mod selector;
