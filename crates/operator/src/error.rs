//! The reconcile's error: what stopped a reconcile before it could write a status.

/// Why a reconcile failed. Variant names are the `error` label of
/// `forecast_operator_reconcile_errors_total`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("serialisation: {0}")]
    Serialization(#[from] serde_json::Error),
    #[error(
        "{kind} {name} exists and is not controlled by this ForecastModel; it is left as it is (delete it, or rename the ForecastModel)"
    )]
    OwnershipConflict { kind: &'static str, name: String },
    #[error("the {0} cache is not filled yet (is list/watch allowed?)")]
    CacheNotReady(&'static str),
    #[error("ForecastModel has no {0}")]
    MissingField(&'static str),
    #[error("this replica no longer leads; the next leader takes over")]
    NotLeader,
}

impl Error {
    /// The metrics label of this error.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "Kube",
            Error::Serialization(_) => "Serialization",
            Error::OwnershipConflict { .. } => "OwnershipConflict",
            Error::CacheNotReady(_) => "CacheNotReady",
            Error::MissingField(_) => "MissingField",
            Error::NotLeader => "NotLeader",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
