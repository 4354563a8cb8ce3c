//! One forecast request: the served model recognised as an archive-forecast model, the
//! history checked, and the days forecast on the compute pool (`model::forecast`).

use std::sync::Arc;

use api::predictor::{ForecastResponse, ForecastedDay, HistoryDay};
use chrono::NaiveDate;
use model::features::DailyVolume;
use model::forecast::{FeatureLayout, ForecastDay, ForecastError, forecast};

use crate::error::ApiError;
use crate::loader::ServedModel;
use crate::state::AppState;

/// The `band` of an answer whose model averages its trees.
pub const BAND_METHOD: &str = "per_step_tree_percentiles";

/// The forecast days and the model that made them.
pub struct Forecasted {
    pub days: Vec<ForecastDay>,
    pub model: Arc<ServedModel>,
}

impl Forecasted {
    pub fn response(&self) -> ForecastResponse {
        let has_band = self.days.iter().any(|d| d.band.is_some());
        ForecastResponse {
            model_name: self.model.info.model_name.clone(),
            model_version: self.model.info.model_version.clone(),
            band: has_band.then(|| BAND_METHOD.to_owned()),
            forecasts: self
                .days
                .iter()
                .map(|d| ForecastedDay {
                    date: d.date.to_string(),
                    forecast: d.gigabytes,
                    p10: d.band.map(|b| b.0),
                    p90: d.band.map(|b| b.1),
                })
                .collect(),
        }
    }
}

/// The served model's feature layout, or why it cannot forecast.
pub fn layout_of(model: &ServedModel) -> Result<FeatureLayout, ApiError> {
    FeatureLayout::of(&model.info.feature_names).map_err(into_api)
}

/// Forecasts `horizon` days after `history` with the served model.
pub async fn forecast_days(
    state: &AppState,
    history: Vec<DailyVolume>,
    horizon: usize,
) -> Result<Forecasted, ApiError> {
    let model = state.current().ok_or(ApiError::NoModel)?;
    let layout = layout_of(&model)?;
    // Checked here too, so bad input is answered without taking a compute slot.
    if horizon == 0 || horizon > model::forecast::MAX_HORIZON_DAYS {
        return Err(into_api(ForecastError::Horizon(horizon)));
    }
    model::forecast::check_history(&history).map_err(into_api)?;
    let worker = model.clone();
    let days = state
        .compute
        .run(move || forecast(&worker.model.ensemble, &layout, &history, horizon).map_err(into_api))
        .await?;
    state.metrics.count_forecast_days(days.len());
    Ok(Forecasted { days, model })
}

fn into_api(e: ForecastError) -> ApiError {
    match e {
        ForecastError::Unavailable(why) => ApiError::ForecastUnavailable(why),
        ForecastError::NotFinite(date) => {
            ApiError::Internal(format!("the model forecast a non-finite value for {date}"))
        }
        other => ApiError::BadRequest(other.to_string()),
    }
}

/// The history of a JSON request, dates parsed.
pub fn history_from_json(days: &[HistoryDay]) -> Result<Vec<DailyVolume>, ApiError> {
    days.iter()
        .enumerate()
        .map(|(i, d)| {
            Ok(DailyVolume {
                date: parse_date(&d.date)
                    .map_err(|why| ApiError::BadRequest(format!("history day {i}: {why}")))?,
                gigabytes: d.gigabytes,
            })
        })
        .collect()
}

/// The history of a CSV text with a `date,gigabytes` header (the `/ui` page's box).
pub fn history_from_csv(text: &str) -> Result<Vec<DailyVolume>, ApiError> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .enumerate()
        .filter(|(_, l)| !l.is_empty());
    let bad = |line: usize, why: String| ApiError::BadRequest(format!("line {}: {why}", line + 1));
    let Some((at, header)) = lines.next() else {
        return Err(ApiError::BadRequest(
            "the history is empty: paste CSV lines `date,gigabytes`, a header first".into(),
        ));
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    if columns != ["date", "gigabytes"] {
        return Err(bad(
            at,
            format!("the header must be `date,gigabytes`, not `{header}`"),
        ));
    }
    let mut days = Vec::new();
    for (at, line) in lines {
        if days.len() > model::forecast::MAX_HISTORY_DAYS {
            return Err(ApiError::BadRequest(format!(
                "the history has more than {} days",
                model::forecast::MAX_HISTORY_DAYS
            )));
        }
        let mut fields = line.split(',').map(str::trim);
        let (Some(date), Some(gigabytes), None) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad(
                at,
                format!("expected `date,gigabytes`, found `{line}`"),
            ));
        };
        let date = parse_date(date).map_err(|why| bad(at, why))?;
        let gigabytes = gigabytes
            .parse::<f64>()
            .map_err(|_| bad(at, format!("gigabytes `{gigabytes}` is not a number")))?;
        days.push(DailyVolume { date, gigabytes });
    }
    Ok(days)
}

fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("date `{text}` is not a YYYY-MM-DD date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_history_is_read_with_its_header_and_every_line_checked() {
        let days =
            history_from_csv("date,gigabytes\n2026-11-01, 812.5\r\n\n2026-11-02,790\n").unwrap();
        assert_eq!(days.len(), 2);
        assert_eq!(days[1].date.to_string(), "2026-11-02");
        assert_eq!(days[0].gigabytes, 812.5);
        let err = |text: &str| history_from_csv(text).err().unwrap().to_string();
        assert!(err("").contains("the history is empty"));
        assert!(err("day,gb\n").contains("line 1: the header must be `date,gigabytes`"));
        assert!(err("date,gigabytes\n2026-11-01,abc").contains("line 2: gigabytes `abc`"));
        assert!(err("date,gigabytes\n2026-13-01,1").contains("line 2: date `2026-13-01`"));
        assert!(err("date,gigabytes\n2026-11-01,1,2").contains("expected `date,gigabytes`"));
    }

    #[test]
    fn json_history_dates_are_checked() {
        let day = |date: &str| HistoryDay {
            date: date.into(),
            gigabytes: 1.0,
        };
        assert!(history_from_json(&[day("2026-11-01")]).is_ok());
        let e = history_from_json(&[day("2026-11-01"), day("11/02/2026")])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("history day 1: date `11/02/2026`"), "{e}");
    }
}
