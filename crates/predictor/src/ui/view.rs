//! The `/ui` page: the served model's card and the shadow's, and three forms (one row, a
//! batch, a forecast), each with its answer or its error as the API gives it.

use std::sync::Arc;

use api::predictor::ShadowInfo;
use chrono::NaiveDate;
use maud::{Markup, html};
use model::features::DailyVolume;
use pages::chart::{Band, LineChart, Series};
use pages::layout::{error_box, facts, page};
use pages::number;

use crate::error::ApiError;
use crate::forecasting::{Forecasted, layout_of};
use crate::loader::ServedModel;
use crate::ui::forms::feature_field;

/// Where the stylesheet is served.
pub const STYLESHEET_PATH: &str = "/ui/style.css";
/// Rows of a batch shown as a table (the plot and the CSV download have them all).
pub const MAX_TABLE_ROWS: usize = 200;
/// Days of history drawn before a forecast.
const HISTORY_DRAWN: usize = 90;

/// Which form an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Predict,
    Batch,
    Forecast,
}

/// The challenger's answer beside the served model's.
pub struct ShadowAnswer<T> {
    pub version: String,
    pub answer: Result<T, String>,
}

pub struct SingleResult {
    pub version: String,
    pub prediction: f64,
    pub shadow: Option<ShadowAnswer<f64>>,
}

pub struct BatchResult {
    pub version: String,
    pub predictions: Vec<f64>,
    pub shadow: Option<ShadowAnswer<Vec<f64>>>,
}

pub struct ForecastResult {
    pub history: Vec<DailyVolume>,
    pub forecasted: Forecasted,
}

/// Everything the page shows.
pub struct View {
    pub model: Option<Arc<ServedModel>>,
    pub shadow: Option<ShadowInfo>,
    /// The one-row form's values, as typed (or the input example's).
    pub row_values: Vec<String>,
    pub single: Option<SingleResult>,
    pub batch_csv: String,
    pub batch: Option<BatchResult>,
    pub history_csv: String,
    pub horizon: String,
    pub forecast: Option<ForecastResult>,
    pub error: Option<(Section, ApiError)>,
}

impl View {
    /// The page before any form is sent: forms start from the model's input example.
    pub fn new(model: Option<Arc<ServedModel>>, shadow: Option<ShadowInfo>) -> Self {
        let (row_values, batch_csv) = match &model {
            Some(m) => {
                let values: Vec<String> = (0..m.info.feature_names.len())
                    .map(|i| {
                        m.example
                            .as_ref()
                            .and_then(|e| e.get(i).copied().flatten())
                            .map(|x| x.to_string())
                            .unwrap_or_default()
                    })
                    .collect();
                let mut csv = m.info.feature_names.join(",");
                if values.iter().all(|v| !v.is_empty()) {
                    csv.push('\n');
                    csv.push_str(&values.join(","));
                }
                csv.push('\n');
                (values, csv)
            }
            None => (Vec::new(), String::new()),
        };
        View {
            model,
            shadow,
            row_values,
            single: None,
            batch_csv,
            batch: None,
            history_csv: String::new(),
            horizon: "30".into(),
            forecast: None,
            error: None,
        }
    }

    pub fn render(&self) -> Markup {
        let title = match &self.model {
            Some(m) => format!(
                "{} v{} · forecast-predictor",
                m.info.model_name, m.info.model_version
            ),
            None => "forecast-predictor".to_owned(),
        };
        page(
            &title,
            STYLESHEET_PATH,
            html! {
                h1 { (title) }
                @match &self.model {
                    None => (error_box(ApiError::NoModel.code(), &ApiError::NoModel.to_string())),
                    Some(model) => {
                        div.cards {
                            (model_card(model))
                            (shadow_card(self.shadow.as_ref()))
                        }
                        (self.predict_section(model))
                        (self.batch_section(model))
                        (self.forecast_section(model))
                    }
                }
            },
        )
    }

    fn error_in(&self, section: Section) -> Option<Markup> {
        self.error
            .as_ref()
            .filter(|(s, _)| *s == section)
            .map(|(_, e)| error_box(e.code(), &e.to_string()))
    }

    fn predict_section(&self, model: &ServedModel) -> Markup {
        html! {
            section #predict {
                h2 { "Predict one row" }
                form.panel method="post" action="/ui/predict" {
                    div.fields {
                        @for (i, name) in model.info.feature_names.iter().enumerate() {
                            div {
                                label for=(feature_field(i)) { (name) }
                                input type="text" inputmode="decimal" id=(feature_field(i)) name=(feature_field(i))
                                    value=(self.row_values.get(i).map(String::as_str).unwrap_or(""));
                            }
                        }
                    }
                    button type="submit" { "Predict" }
                }
                @if let Some(e) = self.error_in(Section::Predict) { (e) }
                @if let Some(single) = &self.single {
                    p.result #prediction {
                        "Prediction (v" (single.version) "): "
                        strong data-value=(single.prediction) { (number(single.prediction)) }
                    }
                    @if let Some(shadow) = &single.shadow {
                        p.result #shadow-prediction {
                            "Shadow (v" (shadow.version) "): "
                            @match &shadow.answer {
                                Ok(p) => strong data-value=(p) { (number(*p)) },
                                Err(why) => span.state-bad { "cannot score: " (why) },
                            }
                        }
                    }
                }
            }
        }
    }

    fn batch_section(&self, model: &ServedModel) -> Markup {
        html! {
            section #batch {
                h2 { "Predict a batch" }
                form.panel method="post" action="/ui/batch" enctype="multipart/form-data" {
                    label for="csv" { "CSV, a header of feature names first (" (model.info.feature_names.join(", ")) ")" }
                    textarea #csv name="csv" spellcheck="false" { (self.batch_csv) }
                    label for="file" { "or upload a CSV file" }
                    input #file type="file" name="file" accept=".csv,text/csv";
                    div {
                        button type="submit" { "Predict batch" }
                        button.secondary type="submit" formaction="/ui/batch.csv" { "Download CSV" }
                    }
                }
                @if let Some(e) = self.error_in(Section::Batch) { (e) }
                @if let Some(batch) = &self.batch { (batch_result(batch)) }
            }
        }
    }

    fn forecast_section(&self, model: &ServedModel) -> Markup {
        let unavailable = layout_of(model).err();
        html! {
            section #forecast {
                h2 { "Forecast" }
                @if let Some(why) = unavailable {
                    p.note #forecast-unavailable { (why.to_string()) }
                } @else {
                    form.panel method="post" action="/ui/forecast" {
                        label for="history" { "History, CSV " code { "date,gigabytes" } " (at least 7 consecutive days, oldest first)" }
                        textarea #history name="history" spellcheck="false" placeholder="date,gigabytes\n2026-11-01,812.5\n2026-11-02,790.0" { (self.history_csv) }
                        label for="horizon" { "Days to forecast (1–" (model::forecast::MAX_HORIZON_DAYS) ")" }
                        input #horizon type="number" name="horizon" min="1" max=(model::forecast::MAX_HORIZON_DAYS) value=(self.horizon);
                        div { button type="submit" { "Forecast" } }
                    }
                    @if let Some(e) = self.error_in(Section::Forecast) { (e) }
                    @if let Some(f) = &self.forecast { (forecast_result(f)) }
                }
            }
        }
    }
}

fn model_card(model: &ServedModel) -> Markup {
    let info = &model.info;
    let origin = serde_json::to_value(info.origin)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    html! {
        div.card #model-card {
            h2 { "Served model" }
            (facts([
                ("name", html! { (info.model_name) }),
                ("version", html! { span #model-version { (info.model_version) } }),
                ("origin", html! { (origin) }),
                ("selector", html! { (info.selector) }),
                ("digest", html! { code { (info.digest) } }),
                ("loaded at", html! { (info.loaded_at) }),
                ("estimator", html! { (info.estimator) }),
                ("flavor", html! { (info.flavor) }),
                ("trees", html! { (info.n_trees) }),
                ("features", html! { (info.feature_names.join(", ")) }),
            ]))
        }
    }
}

fn shadow_card(shadow: Option<&ShadowInfo>) -> Markup {
    html! {
        div.card #shadow-card {
            h2 { "Shadow" }
            @match shadow {
                None => p.note { "No shadow version is loaded." },
                Some(s) => (facts([
                    ("version", html! { span #shadow-version { (s.version) } }),
                    ("digest", html! { code { (s.digest) } }),
                    ("loaded at", html! { (s.loaded_at) }),
                    ("requests compared", html! { span #shadow-compared { (s.compared) } }),
                    ("mean |shadow − served|", html! { (number(s.mean_abs_diff)) }),
                    ("max |shadow − served|", html! { (number(s.max_abs_diff)) }),
                    ("dropped (queue full)", html! { (s.dropped) }),
                    ("errors", html! { (s.errors) }),
                ])),
            }
        }
    }
}

fn batch_result(batch: &BatchResult) -> Markup {
    let shadow = batch.shadow.as_ref();
    let shadow_values = shadow.and_then(|s| s.answer.as_ref().ok());
    let mut series = vec![Series {
        name: format!("v{} (served)", batch.version),
        class: "champion",
        points: indexed(&batch.predictions),
    }];
    if let (Some(s), Some(values)) = (shadow, shadow_values) {
        series.push(Series {
            name: format!("v{} (shadow)", s.version),
            class: "shadow",
            points: indexed(values),
        });
    }
    let chart = LineChart {
        title: format!("{} predictions by row", batch.predictions.len()),
        x_label: "row".into(),
        y_label: "prediction".into(),
        series,
        band: None,
        x_ticks: Vec::new(),
    };
    let shown = batch.predictions.len().min(MAX_TABLE_ROWS);
    html! {
        div #batch-result {
            p { (batch.predictions.len()) " rows predicted by v" (batch.version) "." }
            @if let Some(ShadowAnswer { version, answer: Err(why) }) = shadow {
                p.state-bad { "Shadow v" (version) " cannot score this batch: " (why) }
            }
            (chart.render())
            @if shown < batch.predictions.len() {
                p.note { "The first " (shown) " of " (batch.predictions.len()) " rows; download the CSV for all." }
            }
            div.table-wrap {
                table #batch-table {
                    thead { tr {
                        th { "row" } th { "prediction" }
                        @if shadow_values.is_some() { th { "shadow" } }
                    } }
                    tbody {
                        @for (i, p) in batch.predictions.iter().take(shown).enumerate() {
                            tr {
                                td { (i) }
                                td data-value=(p) { (number(*p)) }
                                @if let Some(values) = shadow_values {
                                    td data-value=(values[i]) { (number(values[i])) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn indexed(values: &[f64]) -> Vec<(f64, f64)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (i as f64, *v))
        .collect()
}

/// Days since the forecast's first drawn day, for the chart's x axis.
fn day_number(origin: NaiveDate, date: NaiveDate) -> f64 {
    (date - origin).num_days() as f64
}

fn forecast_result(result: &ForecastResult) -> Markup {
    let drawn = &result.history[result.history.len().saturating_sub(HISTORY_DRAWN)..];
    let days = &result.forecasted.days;
    let origin = drawn
        .first()
        .map(|d| d.date)
        .or_else(|| days.first().map(|d| d.date))
        .unwrap_or_default();
    let band: Vec<(f64, f64, f64)> = days
        .iter()
        .filter_map(|d| d.band.map(|(lo, hi)| (day_number(origin, d.date), lo, hi)))
        .collect();
    let last_date = days.last().map(|d| d.date).unwrap_or(origin);
    let span = day_number(origin, last_date).max(1.0);
    let step = ((span / 6.0).ceil() as u64).max(1);
    let x_ticks = (0..=span as u64)
        .step_by(step as usize)
        .map(|n| {
            let date = origin + chrono::Days::new(n);
            (n as f64, date.format("%b %-d").to_string())
        })
        .collect();
    let chart = LineChart {
        title: format!(
            "{} days of history and {} forecast days",
            drawn.len(),
            days.len()
        ),
        x_label: "date".into(),
        y_label: "GB".into(),
        series: vec![
            Series {
                name: "history".into(),
                class: "history",
                points: drawn
                    .iter()
                    .map(|d| (day_number(origin, d.date), d.gigabytes))
                    .collect(),
            },
            Series {
                name: format!("forecast (v{})", result.forecasted.model.info.model_version),
                class: "forecast",
                points: days
                    .iter()
                    .map(|d| (day_number(origin, d.date), d.gigabytes))
                    .collect(),
            },
        ],
        band: (!band.is_empty()).then(|| Band {
            name: "p10–p90 of the trees".into(),
            points: band,
        }),
        x_ticks,
    };
    let has_band = days.iter().any(|d| d.band.is_some());
    html! {
        div #forecast-result {
            (chart.render())
            @if has_band {
                p.note { "The band is per day: the 10th and 90th percentiles of the forest's trees for that day's features, the earlier days' forecasts taken as its lags." }
            }
            div.table-wrap {
                table #forecast-table {
                    thead { tr { th { "date" } th { "forecast, GB" } @if has_band { th { "p10" } th { "p90" } } } }
                    tbody {
                        @for d in days {
                            tr {
                                td { (d.date) }
                                td data-value=(d.gigabytes) { (number(d.gigabytes)) }
                                @if let Some((lo, hi)) = d.band {
                                    td data-value=(lo) { (number(lo)) }
                                    td data-value=(hi) { (number(hi)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
