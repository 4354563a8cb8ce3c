//! Writing a [`Report`]: the whole status by server-side apply on the status subresource,
//! then its events.

use api::forecast_model::{ForecastModel, ForecastModelStatus};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::reconcile::events;
use crate::reconcile::status::Report;
use crate::resources::FIELD_MANAGER;

/// Writes the status when it changed, then publishes the events.
pub async fn write(ctx: &Context, fm: &ForecastModel, report: &Report) -> Result<()> {
    if report.changed {
        write_status(ctx, fm, &report.status).await?;
    }
    events::publish(ctx, fm, &report.notes).await;
    Ok(())
}

/// Server-side apply of the whole observed status on the status subresource.
pub async fn write_status(
    ctx: &Context,
    fm: &ForecastModel,
    status: &ForecastModelStatus,
) -> Result<()> {
    let ns = fm
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = fm.name_any();
    let body = json!({
        "apiVersion": "forecast.dev/v1alpha1",
        "kind": "ForecastModel",
        "metadata": {"name": name},
        "status": status,
    });
    Api::<ForecastModel>::namespaced(ctx.client.clone(), &ns)
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
    ctx.memory.record_status(fm, status);
    Ok(())
}
