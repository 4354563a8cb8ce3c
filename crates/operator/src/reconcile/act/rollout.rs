//! Rolling pods in place: reload in batches of `maxConcurrent`, verify each pod, and on the
//! first failure reload every pod that may have switched back to the previous version.

use std::time::Duration;

use futures::future::join_all;

use crate::predictor_client::{PredictorClient, PredictorError};
use crate::reconcile::plan::batches;

/// A pod to roll and where to reach it.
#[derive(Debug, Clone)]
pub struct PodTarget {
    pub name: String,
    pub base_url: String,
}

#[derive(Debug, Clone)]
pub struct RolloutSettings {
    pub max_concurrent: i32,
    pub verify_timeout: Duration,
    pub smoke_input: Option<Vec<f64>>,
    pub admin_token: String,
    /// Checked before each batch: a replica that lost the lease starts no more pods.
    pub acting: crate::leader::Acting,
}

/// What went wrong after a pod accepted a reload.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Unanswered(PredictorError),
    #[error("reports version {reported} after reloading {expected}")]
    Mismatch { reported: String, expected: String },
    #[error("{0}")]
    Smoke(PredictorError),
}

/// Why one pod did not end up serving the version it was asked to load.
#[derive(Debug, thiserror::Error)]
pub enum PodFailure {
    /// The reload was refused or never reached the pod: it serves what it served.
    #[error("pod {pod}: {error}")]
    NotSwitched { pod: String, error: PredictorError },
    /// The reload may have taken effect (it timed out after being sent, or the pod failed
    /// verification): the pod must be reloaded back.
    #[error("pod {pod}: {error}")]
    MayHaveSwitched { pod: String, error: VerifyError },
}

impl PodFailure {
    pub fn pod(&self) -> &str {
        match self {
            PodFailure::NotSwitched { pod, .. } | PodFailure::MayHaveSwitched { pod, .. } => pod,
        }
    }

    pub fn may_have_switched(&self) -> bool {
        matches!(self, PodFailure::MayHaveSwitched { .. })
    }

    /// Whether the pod proved the version bad (refused to load it with a 4xx, reported
    /// another version, or failed the smoke input). Anything else — no answer, a timeout,
    /// a 5xx such as the pod's registry being unreachable — is transient: the version is
    /// tried again, never marked failed.
    pub fn is_model_failure(&self) -> bool {
        let refused_4xx = |e: &PredictorError| matches!(e, PredictorError::Refused { status, .. } if (400..500).contains(status));
        match self {
            PodFailure::NotSwitched { error, .. } => refused_4xx(error),
            PodFailure::MayHaveSwitched { error, .. } => match error {
                VerifyError::Unanswered(_) => false,
                VerifyError::Mismatch { .. } => true,
                VerifyError::Smoke(e) => {
                    !matches!(e, PredictorError::Transport { .. })
                        && !matches!(e, PredictorError::Refused { status, .. } if *status >= 500)
                }
            },
        }
    }
}

/// How the pods that may have switched were brought back.
#[derive(Debug)]
pub enum Revert {
    /// Reloaded back to the previous version (`reverted`), except `failures`.
    Done {
        reverted: Vec<String>,
        failures: Vec<PodFailure>,
    },
    /// No previous version is recorded: the pods that may have switched were left.
    NoPreviousVersion { left: Vec<String> },
}

/// The result of rolling a set of pods.
#[derive(Debug)]
pub enum Rolled {
    /// Every pod reloaded and verified.
    All { reloaded: Vec<String> },
    /// Leadership was lost before the next batch; the next leader converges.
    Stopped { reloaded: Vec<String> },
    /// `failure` stopped the rollout after `reloaded` were verified; then `revert`.
    Failed {
        reloaded: Vec<String>,
        failure: PodFailure,
        revert: Revert,
    },
}

/// Reloads one pod to `version` and checks that it serves it (and predicts finitely).
pub async fn reload_and_verify(
    predictors: &PredictorClient,
    pod: &PodTarget,
    version: &str,
    settings: &RolloutSettings,
) -> Result<(), PodFailure> {
    let timeout = settings.verify_timeout;
    let may_have_switched = |error| PodFailure::MayHaveSwitched {
        pod: pod.name.clone(),
        error,
    };
    if let Err(error) = predictors
        .reload(&pod.base_url, &settings.admin_token, version, timeout)
        .await
    {
        // A reload sent and not answered in time may still complete.
        let sent =
            matches!(&error, PredictorError::Transport { source, .. } if !source.is_connect());
        return Err(if sent {
            may_have_switched(VerifyError::Unanswered(error))
        } else {
            PodFailure::NotSwitched {
                pod: pod.name.clone(),
                error,
            }
        });
    }
    let info = predictors
        .info(&pod.base_url, timeout)
        .await
        .map_err(|e| may_have_switched(VerifyError::Unanswered(e)))?;
    if info.model_version != version {
        return Err(may_have_switched(VerifyError::Mismatch {
            reported: info.model_version,
            expected: version.to_owned(),
        }));
    }
    if let Some(row) = &settings.smoke_input {
        predictors
            .smoke(&pod.base_url, row, timeout)
            .await
            .map_err(|e| may_have_switched(VerifyError::Smoke(e)))?;
    }
    Ok(())
}

/// Rolls `pods` to `target` in batches; on the first failure reverts every pod that may
/// have switched to `from` (when known).
pub async fn roll(
    predictors: &PredictorClient,
    pods: &[PodTarget],
    target: &str,
    from: Option<&str>,
    settings: &RolloutSettings,
) -> Rolled {
    let names: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
    let mut switched: Vec<&PodTarget> = Vec::new();
    let mut reloaded = Vec::new();
    for batch in batches(&names, settings.max_concurrent) {
        if !settings.acting.allowed() {
            return Rolled::Stopped { reloaded };
        }
        let batch_pods: Vec<&PodTarget> = pods.iter().filter(|p| batch.contains(&p.name)).collect();
        let results = join_all(
            batch_pods
                .iter()
                .map(|p| reload_and_verify(predictors, p, target, settings)),
        )
        .await;
        let mut first_failure = None;
        for (pod, result) in batch_pods.iter().zip(results) {
            match result {
                Ok(()) => {
                    switched.push(pod);
                    reloaded.push(pod.name.clone());
                }
                Err(failure) => {
                    if failure.may_have_switched() {
                        switched.push(pod);
                    }
                    first_failure.get_or_insert(failure);
                }
            }
        }
        if let Some(failure) = first_failure {
            return Rolled::Failed {
                reloaded,
                failure,
                revert: revert(predictors, &switched, from, settings).await,
            };
        }
    }
    Rolled::All { reloaded }
}

pub async fn revert(
    predictors: &PredictorClient,
    switched: &[&PodTarget],
    from: Option<&str>,
    settings: &RolloutSettings,
) -> Revert {
    let Some(from) = from else {
        return Revert::NoPreviousVersion {
            left: switched.iter().map(|p| p.name.clone()).collect(),
        };
    };
    let settings = RolloutSettings {
        smoke_input: None,
        ..settings.clone()
    };
    let results = join_all(
        switched
            .iter()
            .map(|p| reload_and_verify(predictors, p, from, &settings)),
    )
    .await;
    let mut reverted = Vec::new();
    let mut failures = Vec::new();
    for (pod, result) in switched.iter().zip(results) {
        match result {
            Ok(()) => reverted.push(pod.name.clone()),
            Err(e) => failures.push(e),
        }
    }
    Revert::Done { reverted, failures }
}
