//! How kstatus (`sigs.k8s.io/cli-utils/pkg/kstatus/status`, what Flux waits on) reads a
//! ForecastModel, for `forecastctl wait`: the same rules in the same order — an
//! unobserved generation is in progress; then the first of `Reconciling=True` (in
//! progress) and `Stalled=True` (failed) in the written order; then `Ready`; a
//! ForecastModel without any of them is current, as kstatus assumes.

use crate::forecast_model::{ForecastModel, condition};

/// What kstatus calls the ForecastModel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kstatus {
    Current,
    InProgress { reason: String, message: String },
    Failed { reason: String, message: String },
}

pub fn kstatus(fm: &ForecastModel) -> Kstatus {
    let in_progress = |reason: &str, message: String| Kstatus::InProgress {
        reason: reason.to_owned(),
        message,
    };
    let status = fm.status.as_ref();
    if let (Some(generation), Some(observed)) = (
        fm.metadata.generation,
        status.and_then(|s| s.observed_generation),
    ) && generation != observed
    {
        return in_progress(
            "LatestGenerationNotObserved",
            format!(
                "ForecastModel generation is {generation}, but latest observed generation is {observed}"
            ),
        );
    }
    let conditions = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
    for c in conditions.iter().filter(|c| c.status == "True") {
        if c.type_ == condition::RECONCILING {
            return in_progress(&c.reason, c.message.clone());
        }
        if c.type_ == condition::STALLED {
            return Kstatus::Failed {
                reason: c.reason.clone(),
                message: c.message.clone(),
            };
        }
    }
    match conditions.iter().find(|c| c.type_ == condition::READY) {
        Some(c) if c.status == "True" => Kstatus::Current,
        Some(c) => in_progress(&c.reason, c.message.clone()),
        None => Kstatus::Current,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;
    use crate::forecast_model::ForecastModelStatus;

    fn fm(
        generation: Option<i64>,
        observed: Option<i64>,
        conditions: &[(&str, &str)],
    ) -> ForecastModel {
        let spec = serde_json::from_value(serde_json::json!({
            "registry": {"trackingUri": "http://mlflow:5000"},
            "model": {"name": "m", "alias": "champion"},
        }))
        .unwrap();
        let mut fm = ForecastModel::new("daily", spec);
        fm.metadata.generation = generation;
        fm.status = Some(ForecastModelStatus {
            observed_generation: observed,
            conditions: conditions
                .iter()
                .map(|(kind, status)| Condition {
                    type_: (*kind).into(),
                    status: (*status).into(),
                    reason: format!("{kind}Reason"),
                    message: format!("{kind} says"),
                    last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                    observed_generation: observed,
                })
                .collect(),
            ..ForecastModelStatus::default()
        });
        fm
    }

    #[test]
    fn the_rules_and_their_order_are_kstatus_own() {
        let ready = [
            ("Ready", "True"),
            ("Reconciling", "False"),
            ("Stalled", "False"),
        ];
        assert_eq!(kstatus(&fm(Some(2), Some(2), &ready)), Kstatus::Current);
        assert!(matches!(
            kstatus(&fm(Some(3), Some(2), &ready)),
            Kstatus::InProgress { reason, .. } if reason == "LatestGenerationNotObserved"
        ));
        // Without an observed generation the check is skipped, as kstatus does.
        assert_eq!(kstatus(&fm(Some(3), None, &ready)), Kstatus::Current);
        let baking = [
            ("Ready", "True"),
            ("Reconciling", "True"),
            ("Stalled", "False"),
        ];
        assert_eq!(
            kstatus(&fm(Some(1), Some(1), &baking)),
            Kstatus::InProgress {
                reason: "ReconcilingReason".into(),
                message: "Reconciling says".into()
            }
        );
        let failed = [
            ("Ready", "True"),
            ("Reconciling", "False"),
            ("Stalled", "True"),
        ];
        assert_eq!(
            kstatus(&fm(Some(1), Some(1), &failed)),
            Kstatus::Failed {
                reason: "StalledReason".into(),
                message: "Stalled says".into()
            }
        );
        // Both true: the first written wins.
        let both = [("Stalled", "True"), ("Reconciling", "True")];
        assert!(matches!(
            kstatus(&fm(Some(1), Some(1), &both)),
            Kstatus::Failed { .. }
        ));
        let not_ready = [("Ready", "False")];
        assert!(matches!(
            kstatus(&fm(Some(1), Some(1), &not_ready)),
            Kstatus::InProgress { reason, .. } if reason == "ReadyReason"
        ));
        let unknown = [("Ready", "Unknown")];
        assert!(matches!(
            kstatus(&fm(Some(1), Some(1), &unknown)),
            Kstatus::InProgress { .. }
        ));
        assert_eq!(kstatus(&fm(Some(1), Some(1), &[])), Kstatus::Current);
        let mut bare = fm(Some(1), None, &[]);
        bare.status = None;
        assert_eq!(kstatus(&bare), Kstatus::Current);
    }
}
