use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use api::predictor::ErrorResponse;

use crate::loader::LoadError;

/// Every error a route can answer. Each maps to a status code and a JSON
/// [`ErrorResponse`] whose `error` code is stable and whose `message` says what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("no model is loaded yet")]
    NoModel,
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("the model predicted a non-finite value for row {0}; no prediction is answered")]
    NonFinitePrediction(usize),
    #[error("the prediction took longer than the deadline of {} ms", .0.as_millis())]
    PredictTimeout(std::time::Duration),
    #[error("this model cannot be explained: {0}")]
    ExplanationsUnavailable(String),
    #[error("this model cannot forecast: {0}")]
    ForecastUnavailable(String),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Reload(#[from] LoadError),
}

/// The predictions, or an error naming the first row whose prediction is NaN or infinite
/// (JSON has no such number: it would go out as `null`).
pub fn finite(predictions: Vec<f64>) -> Result<Vec<f64>, ApiError> {
    match predictions.iter().position(|p| !p.is_finite()) {
        Some(row) => Err(ApiError::NonFinitePrediction(row)),
        None => Ok(predictions),
    }
}

impl ApiError {
    /// The stable `error` code of the JSON answer.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "invalid_input",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::NoModel => "no_model",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NonFinitePrediction(_) => "prediction_not_finite",
            ApiError::PredictTimeout(_) => "predict_timeout",
            ApiError::ExplanationsUnavailable(_) => "explanations_unavailable",
            ApiError::ForecastUnavailable(_) => "forecast_unavailable",
            ApiError::Internal(_) => "internal",
            ApiError::Reload(e) => e.code(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NoModel => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NonFinitePrediction(_) | ApiError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::PredictTimeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ExplanationsUnavailable(_) | ApiError::ForecastUnavailable(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Reload(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.json(ErrorResponse {
            error: self.code().to_owned(),
            message: self.to_string(),
        })
    }
}

/// Turns actix's JSON extractor failures into JSON errors that say what is wrong.
pub fn json_error(
    err: actix_web::error::JsonPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let api = match &err {
        E::OverflowKnownLength { length, limit } => ApiError::PayloadTooLarge(format!(
            "the body is {length} bytes; the limit is {limit} bytes"
        )),
        E::Overflow { limit } => ApiError::PayloadTooLarge(format!(
            "the body is larger than the limit of {limit} bytes"
        )),
        E::ContentType => ApiError::UnsupportedMediaType(
            "send the body as JSON (Content-Type: application/json)".into(),
        ),
        E::Deserialize(e) => ApiError::BadRequest(format!("malformed JSON: {e}")),
        other => ApiError::BadRequest(format!("cannot read the body: {other}")),
    };
    api.into()
}
