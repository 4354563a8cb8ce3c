//! Types shared across the project, with no I/O: the predictor's HTTP wire types (and,
//! with the operator, the `ForecastModel` resource).

pub mod predictor;
