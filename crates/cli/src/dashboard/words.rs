//! How the dashboard words what it shows: conditions, phases, pods per version, rollouts.
//! Every state is written out, so nothing is told by colour alone.

use std::collections::BTreeMap;

use api::forecast_model::ForecastModelStatus;
use api::rollout::{RolloutPhase, RolloutRecord, RolloutResult};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use maud::{Markup, html};

pub fn condition<'a>(status: &'a ForecastModelStatus, kind: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == kind)
}

/// A table cell: the condition's status and reason, its message on hover.
pub fn condition_cell(c: Option<&Condition>) -> Markup {
    let class = match c.map(|c| (c.type_.as_str(), c.status.as_str())) {
        Some(("Ready", "True")) | Some(("Progressing" | "Degraded" | "Drifting", "False")) => {
            "state-ok"
        }
        Some(("Degraded" | "Drifting", "True")) | Some(("Ready", "False")) => "state-bad",
        Some(_) => "state-warn",
        None => "",
    };
    html! {
        td class=(class) title=(c.map(|c| c.message.as_str()).unwrap_or("")) {
            @match c {
                Some(c) => { (c.status) " " small { (c.reason) } },
                None => "—",
            }
        }
    }
}

pub fn phase(status: &ForecastModelStatus) -> String {
    match status.rollout.as_ref().map(|r| &r.phase) {
        None | Some(RolloutPhase::Idle) => "Idle".into(),
        Some(p) => format!("{p:?}"),
    }
}

pub fn result_word(result: &RolloutResult) -> &'static str {
    match result {
        RolloutResult::Succeeded => "Succeeded",
        RolloutResult::Failed => "Failed",
        RolloutResult::Aborted => "Aborted",
    }
}

pub fn result_class(result: &RolloutResult) -> &'static str {
    match result {
        RolloutResult::Succeeded => "ok",
        RolloutResult::Failed => "bad",
        RolloutResult::Aborted => "warn",
    }
}

/// `v1 → v2 Succeeded at <time>`.
pub fn history_line(r: &RolloutRecord) -> String {
    format!(
        "{} → {} {} at {}",
        r.from.as_deref().unwrap_or("none"),
        r.to,
        result_word(&r.result),
        r.finished_at.0
    )
}

/// `v2: 3, v1: 1` from `status.pods`.
pub fn pods_per_version(status: &ForecastModelStatus) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &status.pods {
        *counts.entry(p.version.as_str()).or_default() += 1;
    }
    if counts.is_empty() {
        return "—".into();
    }
    counts
        .iter()
        .rev()
        .map(|(v, n)| format!("v{v}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use api::forecast_model::PodVersion;

    use super::*;

    #[test]
    fn pods_are_counted_per_version_newest_first() {
        let status = ForecastModelStatus {
            pods: ["2", "1", "2"]
                .iter()
                .enumerate()
                .map(|(i, v)| PodVersion {
                    pod: format!("p{i}"),
                    version: (*v).into(),
                })
                .collect(),
            ..Default::default()
        };
        assert_eq!(pods_per_version(&status), "v2: 2, v1: 1");
        assert_eq!(pods_per_version(&ForecastModelStatus::default()), "—");
        assert_eq!(phase(&status), "Idle");
    }
}
