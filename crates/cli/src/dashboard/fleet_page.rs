//! The fleet page: every ForecastModel the caller can read, one row each.

use api::forecast_model::ForecastModel;
use kube::ResourceExt;
use maud::{Markup, html};

use super::words::{condition, condition_cell, history_line, phase, pods_per_version};

pub fn render(models: &[std::sync::Arc<ForecastModel>], scope: &str) -> Markup {
    let mut models: Vec<&ForecastModel> = models.iter().map(|m| m.as_ref()).collect();
    models.sort_by_key(|m| (m.namespace(), m.name_any()));
    html! {
        h1 { "ForecastModels" }
        p.note { (models.len()) " in " (scope) "; live: this page follows the cluster as it changes." }
        div.table-wrap {
            table #fleet {
                thead { tr {
                    th { "namespace/name" } th { "Ready" } th { "Progressing" } th { "Degraded" }
                    th { "served" } th { "desired" } th { "pods per version" } th { "rollout" }
                    th { "last rollout" } th { "Drifting" }
                } }
                tbody {
                    @for m in &models {
                        @let status = m.status.clone().unwrap_or_default();
                        @let ns = m.namespace().unwrap_or_default();
                        tr data-model=(format!("{ns}/{}", m.name_any())) {
                            td { a href=(format!("/models/{ns}/{}", m.name_any())) { (ns) "/" (m.name_any()) } }
                            (condition_cell(condition(&status, "Ready")))
                            (condition_cell(condition(&status, "Progressing")))
                            (condition_cell(condition(&status, "Degraded")))
                            td.served { (status.served_version.as_deref().unwrap_or("—")) }
                            td.desired { (status.desired_version.as_deref().unwrap_or("—")) }
                            td { (pods_per_version(&status)) }
                            td.phase { (phase(&status)) }
                            td.last { (status.history.first().map(history_line).unwrap_or_else(|| "—".into())) }
                            (condition_cell(condition(&status, "Drifting")))
                        }
                    }
                }
            }
        }
    }
}
