//! `/ui`: a page for people. It reads what `/model/info` reads and predicts as `/predict`
//! and `/invocations` do (same readers, same scoring, same errors), so it needs no admin
//! token; `PREDICTOR_UI=false` leaves it out. Server-rendered, no script, nothing loaded
//! from elsewhere: `Content-Security-Policy: default-src 'self'`.

pub mod forms;
pub mod view;

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, get, post, web};

use crate::body::read_limited;
use crate::error::ApiError;
use crate::forecasting::{forecast_days, history_from_csv};
use crate::input::{csv_rows, predict_rows};
use crate::loader::ServedModel;
use crate::routes::BodyLimit;
use crate::scoring::score;
use crate::state::AppState;
use view::{BatchResult, ForecastResult, Section, ShadowAnswer, SingleResult, View};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(index)
        .service(stylesheet)
        .service(predict_one)
        .service(predict_batch)
        .service(download_batch)
        .service(forecast);
}

fn view(state: &AppState) -> View {
    View::new(state.current(), state.shadow.info())
}

/// The page, with the status of the error it shows (200 without one).
fn respond(view: &View) -> HttpResponse {
    let status = match (&view.model, &view.error) {
        (None, _) => ApiError::NoModel.status_code(),
        (_, Some((_, e))) => e.status_code(),
        _ => StatusCode::OK,
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", pages::CONTENT_SECURITY_POLICY))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Cache-Control", "no-store"))
        .body(view.render().into_string())
}

#[get("/ui")]
async fn index(state: web::Data<AppState>) -> HttpResponse {
    respond(&view(&state))
}

#[get("/ui/style.css")]
async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Cache-Control", "max-age=3600"))
        .body(pages::layout::STYLESHEET)
}

/// The shadow's answer for the rows `read` reads with its schema, when one is loaded.
fn shadow_answer<T>(
    state: &AppState,
    answer: impl FnOnce(&ServedModel) -> Result<T, ApiError>,
) -> Option<ShadowAnswer<T>> {
    let shadow = state.shadow.current()?;
    Some(ShadowAnswer {
        version: shadow.info.model_version.clone(),
        answer: answer(&shadow).map_err(|e| e.to_string()),
    })
}

#[post("/ui/predict")]
async fn predict_one(
    state: web::Data<AppState>,
    limit: web::Data<BodyLimit>,
    request: HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    let mut page = view(&state);
    let answer = async {
        let body = read_limited(&request, body, &limit).await?;
        let fields = forms::url_fields(&body)?;
        let model = state.current().ok_or(ApiError::NoModel)?;
        page.row_values = forms::row_values(&model.info.feature_names, &fields);
        let json = forms::predict_body(&model.info.feature_names, &page.row_values);
        let shadow_json = json.clone();
        let (predictions, model) = score(&state, json.len(), move |schema, max| {
            predict_rows(&json, schema, max)
        })
        .await?;
        let shadow = shadow_answer(&state, |shadow| {
            let rows = predict_rows(&shadow_json, &shadow.schema(), 1)?;
            Ok(crate::error::finite(shadow.predict(&rows))?[0])
        });
        Ok::<_, ApiError>(SingleResult {
            version: model.info.model_version.clone(),
            prediction: predictions[0],
            shadow,
        })
    }
    .await;
    match answer {
        Ok(single) => page.single = Some(single),
        Err(e) => page.error = Some((Section::Predict, e)),
    }
    respond(&page)
}

/// Reads the batch form and scores its CSV as `/invocations` scores `text/csv`.
async fn batch(
    state: &AppState,
    limit: &BodyLimit,
    parts: Multipart,
    page: &mut View,
) -> Result<BatchResult, ApiError> {
    let form = forms::batch_form(parts, limit.0).await?;
    page.batch_csv = form.csv().to_owned();
    let csv = page.batch_csv.clone().into_bytes();
    let shadow_csv = csv.clone();
    let (predictions, model) = score(state, csv.len(), move |schema, max| {
        csv_rows(&csv, schema, max)
    })
    .await?;
    let max = state.max_instances;
    let shadow = shadow_answer(state, |shadow| {
        let rows = csv_rows(&shadow_csv, &shadow.schema(), max)?;
        crate::error::finite(shadow.predict(&rows))
    });
    Ok(BatchResult {
        version: model.info.model_version.clone(),
        predictions,
        shadow,
    })
}

#[post("/ui/batch")]
async fn predict_batch(
    state: web::Data<AppState>,
    limit: web::Data<BodyLimit>,
    parts: Multipart,
) -> HttpResponse {
    let mut page = view(&state);
    match batch(&state, &limit, parts, &mut page).await {
        Ok(result) => page.batch = Some(result),
        Err(e) => page.error = Some((Section::Batch, e)),
    }
    respond(&page)
}

/// The batch as CSV: the rows' features, the prediction and the shadow's.
#[post("/ui/batch.csv")]
async fn download_batch(
    state: web::Data<AppState>,
    limit: web::Data<BodyLimit>,
    parts: Multipart,
) -> HttpResponse {
    let mut page = view(&state);
    let result = batch(&state, &limit, parts, &mut page)
        .await
        .and_then(|result| {
            let model = state.current().ok_or(ApiError::NoModel)?;
            let rows = csv_rows(
                page.batch_csv.as_bytes(),
                &model.schema(),
                state.max_instances,
            )?;
            Ok(download::batch_csv(
                &model.info.feature_names,
                &rows,
                &result,
            ))
        });
    match result {
        Ok(csv) => HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                "Content-Disposition",
                "attachment; filename=\"predictions.csv\"",
            ))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .body(csv),
        Err(e) => {
            page.error = Some((Section::Batch, e));
            respond(&page)
        }
    }
}

#[post("/ui/forecast")]
async fn forecast(
    state: web::Data<AppState>,
    limit: web::Data<BodyLimit>,
    request: HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    let mut page = view(&state);
    let answer = async {
        let body = read_limited(&request, body, &limit).await?;
        let fields = forms::url_fields(&body)?;
        page.history_csv = forms::field(&fields, "history").unwrap_or("").to_owned();
        page.horizon = forms::field(&fields, "horizon")
            .unwrap_or("")
            .trim()
            .to_owned();
        let horizon: usize = page.horizon.parse().map_err(|_| {
            ApiError::BadRequest(format!(
                "the number of days to forecast must be a whole number, not `{}`",
                page.horizon
            ))
        })?;
        let history = history_from_csv(&page.history_csv)?;
        let forecasted = forecast_days(&state, history.clone(), horizon).await?;
        Ok::<_, ApiError>(ForecastResult {
            history,
            forecasted,
        })
    }
    .await;
    match answer {
        Ok(result) => page.forecast = Some(result),
        Err(e) => page.error = Some((Section::Forecast, e)),
    }
    respond(&page)
}

mod download {
    use crate::input::Matrix;
    use crate::ui::view::BatchResult;

    /// A CSV of the rows (missing values empty), each row's prediction and, when a shadow
    /// scored the batch, its prediction.
    pub fn batch_csv(features: &[String], rows: &Matrix, result: &BatchResult) -> String {
        let shadow = result.shadow.as_ref().and_then(|s| s.answer.as_ref().ok());
        let mut writer = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<String> = features.to_vec();
        header.push("prediction".into());
        if shadow.is_some() {
            header.push("shadow_prediction".into());
        }
        let mut write = |record: Vec<String>| writer.write_record(&record).is_ok();
        let mut ok = write(header);
        for (i, row) in rows.iter_rows().enumerate() {
            let mut record: Vec<String> = row
                .iter()
                .map(|x| {
                    if x.is_nan() {
                        String::new()
                    } else {
                        x.to_string()
                    }
                })
                .collect();
            record.push(
                result
                    .predictions
                    .get(i)
                    .map_or(String::new(), f64::to_string),
            );
            if let Some(values) = shadow {
                record.push(values.get(i).map_or(String::new(), f64::to_string));
            }
            ok &= write(record);
        }
        let bytes = if ok {
            writer.into_inner().unwrap_or_default()
        } else {
            Vec::new()
        };
        String::from_utf8(bytes).unwrap_or_default()
    }
}
