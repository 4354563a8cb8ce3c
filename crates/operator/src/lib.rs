//! The ForecastModel controller (kube-runtime style): a `Context`, one `reconcile`, one
//! `error_policy`, decisions as pure functions, I/O at the edges.

pub mod cache;
pub mod context;
pub mod error;
pub mod http;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod pod_index;
pub mod pod_metrics;
pub mod pod_ownership;
pub mod policy;
pub mod predictor_client;
pub mod reconcile;
pub mod registry;
pub mod renewal;
pub mod resources;
pub mod run;
pub mod secrets;
pub mod webhook;
