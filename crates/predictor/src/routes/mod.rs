//! HTTP routes; each module registers its own.

mod admin;
mod explain;
mod forecast;
mod health;
mod invocations;
mod metrics;
mod model_info;
mod predict;
mod reload;
mod shadow;

use actix_web::web;

pub use invocations::BodyLimit;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(health::configure)
        .configure(model_info::configure)
        .configure(predict::configure)
        .configure(invocations::configure)
        .configure(explain::configure)
        .configure(forecast::configure)
        .configure(reload::configure)
        .configure(shadow::configure)
        .configure(metrics::configure);
}
