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
    /// The connection of the reload call broke after the request was sent: the pod's
    /// process died (crashed, or was killed out of memory) while loading the version.
    #[error("the pod died while loading the version ({0})")]
    Died(PredictorError),
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

    /// Whether the pod proved the version bad (refused to load it with a 4xx, died while
    /// loading it, reported another version, or failed the smoke input). Anything else —
    /// no connection, a timeout, a 5xx such as the pod's registry being unreachable — is
    /// transient: the version is tried again, never marked failed.
    pub fn is_model_failure(&self) -> bool {
        let refused_4xx = |e: &PredictorError| matches!(e, PredictorError::Refused { status, .. } if (400..500).contains(status));
        match self {
            PodFailure::NotSwitched { error, .. } => refused_4xx(error),
            PodFailure::MayHaveSwitched { error, .. } => match error {
                VerifyError::Unanswered(_) => false,
                VerifyError::Died(_) | VerifyError::Mismatch { .. } => true,
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
        // A reload sent and not answered in time may still complete; one whose connection
        // broke (neither refused nor timed out) killed the pod. The operator's idle
        // connections close (30 s) before the predictor's keep-alive (75 s), so a reused
        // connection is not closed under a request by the server's own housekeeping.
        let (sent, dropped) = match &error {
            PredictorError::Transport { source, .. } if !source.is_connect() => {
                (true, !source.is_timeout())
            }
            _ => (false, false),
        };
        return Err(if dropped {
            may_have_switched(VerifyError::Died(error))
        } else if sent {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A "pod" on loopback that reads the reload request and then does `then` with the
    /// connection: drop it (the process died) or hold it open (the process hangs).
    async fn pod(hold: bool) -> PodTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                if hold {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                drop(conn);
            }
        });
        PodTarget {
            name: "p".into(),
            base_url: format!("http://{addr}"),
        }
    }

    fn settings() -> RolloutSettings {
        RolloutSettings {
            max_concurrent: 1,
            verify_timeout: Duration::from_millis(300),
            smoke_input: None,
            admin_token: "t".into(),
            acting: crate::leader::Acting::default(),
        }
    }

    #[tokio::test]
    async fn a_pod_whose_connection_breaks_while_loading_fails_the_version() {
        mlflow::install_crypto_provider();
        let predictors = PredictorClient::new(reqwest::Client::new());
        let failure = reload_and_verify(&predictors, &pod(false).await, "7", &settings())
            .await
            .unwrap_err();
        assert!(failure.is_model_failure(), "{failure}");
        assert!(failure.may_have_switched());
        assert!(
            failure.to_string().contains("died while loading"),
            "{failure}"
        );
    }

    #[tokio::test]
    async fn a_pod_that_is_slow_or_unreachable_does_not_fail_the_version() {
        mlflow::install_crypto_provider();
        let predictors = PredictorClient::new(reqwest::Client::new());
        let slow = reload_and_verify(&predictors, &pod(true).await, "7", &settings())
            .await
            .unwrap_err();
        assert!(!slow.is_model_failure(), "{slow}");
        assert!(slow.may_have_switched());
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let gone = PodTarget {
            name: "p".into(),
            base_url: url,
        };
        let unreachable = reload_and_verify(&predictors, &gone, "7", &settings())
            .await
            .unwrap_err();
        assert!(!unreachable.is_model_failure(), "{unreachable}");
        assert!(!unreachable.may_have_switched());
    }
}
