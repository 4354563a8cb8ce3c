//! Executing a rollout: reload pods in batches, verify each, revert what was switched
//! if anything fails. The plan comes from `decide`; this is the I/O.

use std::time::Duration;

use futures::future::join_all;

use crate::decide::batches;
use crate::predictor_client::PredictorClient;

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
}

#[derive(Debug)]
pub enum RolloutResult {
    /// Every pod reloaded and verified, in order.
    Succeeded { reloaded: Vec<String> },
    /// `reason` names the pod and what went wrong; `reverted` are the pods switched back.
    Failed {
        reason: String,
        reverted: Vec<String>,
        revert_errors: Vec<String>,
    },
}

/// Reloads one pod to `version` and checks that it serves it (and predicts finitely).
pub async fn reload_and_verify(
    predictors: &PredictorClient,
    pod: &PodTarget,
    version: &str,
    settings: &RolloutSettings,
) -> Result<(), (String, bool)> {
    // The bool says whether the pod may have switched (so it must be reverted).
    predictors
        .reload(
            &pod.base_url,
            &settings.admin_token,
            version,
            settings.verify_timeout,
        )
        .await
        .map_err(|e| (format!("pod {}: {e}", pod.name), false))?;
    let info = predictors
        .info(&pod.base_url, settings.verify_timeout)
        .await
        .map_err(|e| (format!("pod {}: {e}", pod.name), true))?;
    if info.model_version != version {
        return Err((
            format!(
                "pod {} reports version {} after reloading {version}",
                pod.name, info.model_version
            ),
            true,
        ));
    }
    if let Some(row) = &settings.smoke_input {
        predictors
            .smoke(&pod.base_url, row, settings.verify_timeout)
            .await
            .map_err(|e| (format!("pod {}: {e}", pod.name), true))?;
    }
    Ok(())
}

/// Rolls `pods` to `target` in batches; on the first failure reverts every switched pod
/// to `from` (when known). `on_pod` is told of each pod verified on the target.
pub async fn roll(
    predictors: &PredictorClient,
    pods: &[PodTarget],
    target: &str,
    from: Option<&str>,
    settings: &RolloutSettings,
    mut on_pod: impl FnMut(&str),
) -> RolloutResult {
    let names: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
    let mut switched: Vec<&PodTarget> = Vec::new();
    let mut reloaded = Vec::new();
    for batch in batches(&names, settings.max_concurrent) {
        let batch_pods: Vec<&PodTarget> = pods.iter().filter(|p| batch.contains(&p.name)).collect();
        let results = join_all(
            batch_pods
                .iter()
                .map(|p| reload_and_verify(predictors, p, target, settings)),
        )
        .await;
        let mut failure = None;
        for (pod, result) in batch_pods.iter().zip(results) {
            match result {
                Ok(()) => {
                    switched.push(pod);
                    reloaded.push(pod.name.clone());
                    on_pod(&pod.name);
                }
                Err((reason, maybe_switched)) => {
                    if maybe_switched {
                        switched.push(pod);
                    }
                    failure.get_or_insert(reason);
                }
            }
        }
        if let Some(reason) = failure {
            let (reverted, revert_errors) = revert(predictors, &switched, from, settings).await;
            return RolloutResult::Failed {
                reason,
                reverted,
                revert_errors,
            };
        }
    }
    RolloutResult::Succeeded { reloaded }
}

async fn revert(
    predictors: &PredictorClient,
    switched: &[&PodTarget],
    from: Option<&str>,
    settings: &RolloutSettings,
) -> (Vec<String>, Vec<String>) {
    let Some(from) = from else {
        return (
            Vec::new(),
            vec!["no previous version is recorded; switched pods were left as they are".into()],
        );
    };
    let results = join_all(switched.iter().map(|p| async move {
        reload_and_verify(
            predictors,
            p,
            from,
            &RolloutSettings {
                smoke_input: None,
                ..settings.clone()
            },
        )
        .await
        .map(|()| p.name.clone())
        .map_err(|(e, _)| e)
    }))
    .await;
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(n) => ok.push(n),
            Err(e) => errors.push(e),
        }
    }
    (ok, errors)
}
