//! The shadow challenger in the pods: a version no pod holds yet is loaded into one ready
//! pod first, then into every other ready pod once a later reconcile sees it held there; a
//! version its first pod refuses, or dies or hangs loading, is recorded in
//! `status.shadow.loadFailed` and loaded into no pod until the registry names another. It
//! is unloaded from every pod once the spec has none, and compared over the pods'
//! `/metrics` into `status.shadow`.

use api::forecast_model::ShadowStatus;
use api::reasons;
use futures::future::join_all;
use tracing::warn;

use crate::context::Context;
use crate::predictor_client::PredictorError;
use crate::reconcile::analysis::{add_buckets, quantile};
use crate::reconcile::events::Note;
use crate::reconcile::observe::{self, Observation, ValidSpec};
use crate::reconcile::plan::PodObservation;

/// What the shadow step did and found.
#[derive(Debug, Default)]
pub struct ShadowOutcome {
    pub status: Option<ShadowStatus>,
    pub notes: Vec<Note>,
}

/// Whether a failed shadow load is the version's doing: the pod refused the model (it
/// cannot be read, or does not fit the served model's features, or the registry has no
/// such version), or the pod died or hung while loading it. A registry that is down, a
/// wrong token or an overloaded pod are transient.
pub fn fails_the_version(e: &PredictorError) -> bool {
    match e {
        PredictorError::Transport { .. } => true,
        PredictorError::Refused { status, .. } => {
            matches!(status, 400 | 404 | 409 | 413 | 422 | 500)
        }
        _ => false,
    }
}

pub async fn sync(
    ctx: &Context,
    spec: &ValidSpec,
    observed: &Observation,
    pods: &[PodObservation],
    admin_token: &str,
    reads: &observe::MetricsReads,
) -> ShadowOutcome {
    let timeout = spec.verify_timeout;
    let ready: Vec<&PodObservation> = pods
        .iter()
        .filter(|p| p.ready && p.base_url.is_some())
        .collect();
    let mut notes = Vec::new();
    let wanted = match &observed.shadow {
        None => {
            // No shadow in the spec: unload it wherever one is loaded.
            let loaded: Vec<&&PodObservation> =
                ready.iter().filter(|p| p.shadow.is_some()).collect();
            let unloads = loaded.iter().filter_map(|p| {
                let url = p.base_url.as_deref()?;
                Some(ctx.predictors.unload_shadow(url, admin_token, timeout))
            });
            let results = join_all(unloads).await;
            let unloaded = results.iter().filter(|r| r.is_ok()).count();
            if unloaded > 0 {
                let note = format!("shadow unloaded from {unloaded} pods");
                notes.push(Note::normal(reasons::SHADOW_UNLOADED, note));
            }
            return ShadowOutcome {
                status: None,
                notes,
            };
        }
        Some(Err(e)) => {
            // The registry could not say: the pods keep what they hold.
            warn!(error = %e, "the shadow selector could not be resolved");
            None
        }
        Some(Ok(v)) => Some(v.clone()),
    };
    let Some(version) = wanted else {
        return ShadowOutcome {
            status: observed.previous.shadow.clone(),
            notes,
        };
    };
    // A version whose first pod refused it, or died or hung loading it, is not tried again
    // until the registry names another one.
    if let Some(failed) = observed
        .previous
        .shadow
        .as_ref()
        .filter(|s| s.version == version && s.load_failed.is_some())
    {
        return ShadowOutcome {
            status: Some(failed.clone()),
            notes,
        };
    }
    let mut holding: Vec<&PodObservation> = ready
        .iter()
        .filter(|p| p.shadow.as_deref() == Some(version.as_str()))
        .copied()
        .collect();
    let missing: Vec<&PodObservation> = ready
        .iter()
        .filter(|p| p.shadow.as_deref() != Some(version.as_str()))
        .copied()
        .collect();
    // A version no pod holds yet goes into one pod first; the others follow once a later
    // reconcile sees it held there, so a version that kills pods takes down one, not all.
    let first_pod = holding.is_empty();
    let targets = if first_pod {
        &missing[..missing.len().min(1)]
    } else {
        &missing[..]
    };
    let loads = targets.iter().filter_map(|p| {
        let url = p.base_url.as_deref()?;
        let name = p.name.clone();
        let version = version.clone();
        Some(async move {
            let answer = ctx
                .predictors
                .load_shadow(url, admin_token, &version, timeout)
                .await;
            (name, answer)
        })
    });
    let mut failures = Vec::new();
    let mut version_failed = None;
    for (pod, answer) in join_all(loads).await {
        match answer {
            Ok(_) => {
                if let Some(p) = ready.iter().find(|p| p.name == pod) {
                    holding.push(p);
                }
            }
            Err(e) if first_pod && fails_the_version(&e) => {
                version_failed = Some(format!("pod {pod}: {e}"));
            }
            Err(e) => failures.push(format!("pod {pod}: {e}")),
        }
    }
    if let Some(why) = version_failed {
        let note = format!(
            "shadow version {version} failed in the first pod it was loaded into and is loaded \
             into no other: {why}"
        );
        notes.push(Note::warning(reasons::SHADOW_LOAD_FAILED, note));
        return ShadowOutcome {
            status: Some(ShadowStatus {
                version,
                load_failed: Some(why),
                ..ShadowStatus::default()
            }),
            notes,
        };
    }
    let loaded = targets.len() - failures.len();
    if loaded > 0 {
        let note = format!("shadow version {version} loaded in {loaded} pods");
        notes.push(Note::normal(reasons::SHADOW_LOADED, note));
    }
    if !failures.is_empty() {
        let note = format!(
            "shadow version {version} did not load: {}",
            failures.join("; ")
        );
        notes.push(Note::warning(reasons::SHADOW_LOAD_FAILED, note));
    }
    let metrics = reads.of(ctx, &holding).await;
    let status = aggregate(&version, holding.len(), metrics.iter().map(|(_, m)| m));
    ShadowOutcome {
        status: Some(status),
        notes,
    }
}

/// `status.shadow` from the pods' counters for `version`.
pub fn aggregate<'a>(
    version: &str,
    pods: usize,
    metrics: impl Iterator<Item = &'a crate::pod_metrics::PodMetrics>,
) -> ShadowStatus {
    let mut status = ShadowStatus {
        version: version.to_owned(),
        pods: i32::try_from(pods).unwrap_or(i32::MAX),
        ..ShadowStatus::default()
    };
    let (mut rows, mut sum) = (0u64, 0.0);
    let mut buckets = Vec::new();
    for m in metrics {
        let Some(s) = m.shadow.get(version) else {
            continue;
        };
        // Figures from pods the spec's author controls: added without wrapping.
        status.compared = status.compared.saturating_add(s.compared);
        status.errors = status.errors.saturating_add(s.errors);
        status.dropped = status.dropped.saturating_add(s.dropped);
        rows = rows.saturating_add(s.rows);
        sum += s.abs_diff_sum;
        add_buckets(&mut buckets, &s.abs_diff);
    }
    if rows > 0 {
        status.mean_abs_diff = Some(sum / rows as f64);
        status.p99_abs_diff = quantile(0.99, &buckets, rows);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_model_fails_the_version_and_a_busy_or_unreachable_registry_does_not() {
        let refused = |status: u16| PredictorError::Refused {
            call: crate::predictor_client::Call::LoadShadow,
            status,
            message: String::new(),
        };
        for status in [400, 404, 409, 413, 422, 500] {
            assert!(fails_the_version(&refused(status)), "{status}");
        }
        for status in [401, 403, 429, 502, 503] {
            assert!(!fails_the_version(&refused(status)), "{status}");
        }
        assert!(!fails_the_version(&PredictorError::NoPrediction));
    }

    #[test]
    fn the_pods_comparisons_add_up() {
        let page = |compared: u64, rows: u64, sum: f64| {
            crate::pod_metrics::parse(&format!(
                "predictor_shadow_compared_total{{version=\"5\"}} {compared}\n\
                 predictor_shadow_abs_diff_sum{{version=\"5\"}} {sum}\n\
                 predictor_shadow_abs_diff_count{{version=\"5\"}} {rows}\n\
                 predictor_shadow_abs_diff_bucket{{le=\"1.0\",version=\"5\"}} {rows}\n\
                 predictor_shadow_errors_total{{version=\"5\"}} 1\n"
            ))
        };
        let pods = [page(10, 20, 10.0), page(30, 60, 50.0)];
        let s = aggregate("5", 2, pods.iter());
        assert_eq!((s.compared, s.errors, s.pods), (40, 2, 2));
        assert_eq!(s.mean_abs_diff, Some(0.75));
        assert!(s.p99_abs_diff.is_some_and(|p| p <= 1.0));
        let none = aggregate("6", 2, pods.iter());
        assert_eq!((none.compared, none.mean_abs_diff), (0, None));
    }
}
