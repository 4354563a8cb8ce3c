//! Drift, pure: the pods' drift figures for the served version against
//! `spec.monitoring.drift` → the `Drifting` condition and the worst PSI per feature.
//! Drifting never changes which version is served; it tells people.

use std::collections::BTreeMap;

use api::forecast_model::DriftSpec;
use api::reasons;

use crate::pod_metrics::{MAX_DRIFT_FEATURES, PodDrift};
use crate::reconcile::conditions::{ConditionState, ConditionStatus};
use crate::reconcile::plan::PodObservation;

/// What the pods' drift figures say.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftVerdict {
    pub state: ConditionState,
    /// The worst PSI of each feature over the pods with enough rows (what
    /// `forecast_operator_drift_psi` exports).
    pub worst: BTreeMap<String, f64>,
}

/// The version the most ready pods serve (after a rollout, the new one), ties to the
/// version named first.
pub fn served_by_pods(pods: &[PodObservation]) -> Option<&str> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for version in pods
        .iter()
        .filter(|p| p.ready)
        .filter_map(|p| p.version.as_deref())
    {
        *counts.entry(version).or_default() += 1;
    }
    let most = counts.values().copied().max()?;
    counts.into_iter().find(|&(_, n)| n == most).map(|(v, _)| v)
}

/// Judges `pods` (each pod's figures for the served version) by `spec`: a feature drifts
/// when its PSI on a pod with at least `minRows` rows in its window is over `maxPsi`;
/// with no such pod, too few rows to say.
pub fn judge(spec: &DriftSpec, pods: &[PodDrift]) -> DriftVerdict {
    let judged: Vec<&PodDrift> = pods.iter().filter(|d| d.rows >= spec.min_rows).collect();
    if judged.is_empty() {
        let message = match pods.iter().map(|d| d.rows).max() {
            None => "no pod reported drift figures for the served version".to_owned(),
            Some(rows) => format!(
                "the busiest pod has {rows} rows in its drift window; {} are needed",
                spec.min_rows
            ),
        };
        return DriftVerdict {
            state: ConditionState::new(ConditionStatus::Unknown, reasons::TOO_FEW_ROWS, message),
            worst: BTreeMap::new(),
        };
    }
    let mut worst: BTreeMap<String, f64> = BTreeMap::new();
    for pod in &judged {
        for (feature, &psi) in &pod.psi {
            // Bounded like one pod's page, whatever the pods report between them.
            if let Some(w) = worst.get_mut(feature) {
                *w = w.max(psi);
            } else if worst.len() < MAX_DRIFT_FEATURES {
                worst.insert(feature.clone(), psi);
            }
        }
    }
    let mut over: Vec<(&String, f64)> = worst
        .iter()
        .filter(|&(_, &psi)| psi > spec.max_psi)
        .map(|(f, &psi)| (f, psi))
        .collect();
    // The worst first; ties by name, so the message is stable.
    over.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let pods = judged.len();
    let state = if over.is_empty() {
        let highest = worst
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(f, psi)| format!(" (highest: {f} {psi:.2})"))
            .unwrap_or_default();
        ConditionState::new(
            false,
            reasons::NO_DRIFT,
            format!(
                "every feature's PSI is at most maxPsi {} on the {pods} pods with at least {} rows{highest}",
                spec.max_psi, spec.min_rows
            ),
        )
    } else {
        let named: Vec<String> = over
            .iter()
            .map(|(f, psi)| format!("{f} (PSI {psi:.2})"))
            .collect();
        ConditionState::new(
            true,
            reasons::DRIFT_DETECTED,
            format!(
                "{} over maxPsi {} (the worst of {pods} pods with at least {} rows)",
                named.join(", "),
                spec.max_psi,
                spec.min_rows
            ),
        )
    };
    DriftVerdict { state, worst }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(rows: u64, psi: &[(&str, f64)]) -> PodDrift {
        PodDrift {
            rows,
            psi: psi.iter().map(|(f, v)| ((*f).to_owned(), *v)).collect(),
        }
    }

    fn spec() -> DriftSpec {
        DriftSpec {
            max_psi: 0.25,
            min_rows: 1000,
        }
    }

    #[test]
    fn a_feature_over_the_limit_on_any_judged_pod_drifts_and_is_named() {
        let v = judge(
            &spec(),
            &[
                pod(1500, &[("lag_1", 0.1), ("month", 0.3)]),
                pod(1000, &[("lag_1", 0.9), ("month", 0.02)]),
                // Too few rows: not judged, however far off.
                pod(999, &[("day", 5.0)]),
            ],
        );
        assert_eq!(v.state.status, ConditionStatus::True);
        assert_eq!(v.state.reason, reasons::DRIFT_DETECTED);
        assert_eq!(
            v.state.message,
            "lag_1 (PSI 0.90), month (PSI 0.30) over maxPsi 0.25 (the worst of 2 pods with at least 1000 rows)"
        );
        assert_eq!(
            v.worst.into_iter().collect::<Vec<_>>(),
            vec![("lag_1".to_owned(), 0.9), ("month".to_owned(), 0.3)]
        );
    }

    #[test]
    fn at_the_limit_is_not_over_it() {
        let v = judge(&spec(), &[pod(1000, &[("lag_1", 0.25), ("month", 0.01)])]);
        assert_eq!(v.state.status, ConditionStatus::False);
        assert_eq!(v.state.reason, reasons::NO_DRIFT);
        assert_eq!(
            v.state.message,
            "every feature's PSI is at most maxPsi 0.25 on the 1 pods with at least 1000 rows (highest: lag_1 0.25)"
        );
    }

    #[test]
    fn the_served_version_is_the_one_most_ready_pods_serve() {
        let p = |version: Option<&str>, ready: bool| PodObservation {
            version: version.map(Into::into),
            ready,
            ..PodObservation::default()
        };
        assert_eq!(served_by_pods(&[]), None);
        assert_eq!(served_by_pods(&[p(Some("3"), false), p(None, true)]), None);
        assert_eq!(
            served_by_pods(&[
                p(Some("3"), true),
                p(Some("4"), true),
                p(Some("4"), true),
                p(Some("3"), false)
            ]),
            Some("4")
        );
        assert_eq!(
            served_by_pods(&[p(Some("5"), true), p(Some("4"), true)]),
            Some("4")
        );
    }

    #[test]
    fn too_few_rows_or_no_figures_is_unknown() {
        let v = judge(&spec(), &[pod(10, &[("lag_1", 3.0)]), pod(999, &[])]);
        assert_eq!(v.state.status, ConditionStatus::Unknown);
        assert_eq!(v.state.reason, reasons::TOO_FEW_ROWS);
        assert_eq!(
            v.state.message,
            "the busiest pod has 999 rows in its drift window; 1000 are needed"
        );
        assert!(v.worst.is_empty());
        let v = judge(&spec(), &[]);
        assert_eq!(v.state.status, ConditionStatus::Unknown);
        assert_eq!(
            v.state.message,
            "no pod reported drift figures for the served version"
        );
    }
}
