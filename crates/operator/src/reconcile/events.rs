//! Events about a ForecastModel: what the status step and the rollout decide to say
//! (pure values), and publishing them through the `Recorder`.

use api::forecast_model::ForecastModel;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType};
use tracing::warn;

/// One event to publish; `reason` is one of `api::reasons`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub type_: EventType,
    pub reason: &'static str,
    pub note: String,
    /// A pod the event is about (events about different pods stay apart instead of
    /// folding into one series).
    pub pod: Option<String>,
}

impl Note {
    pub fn normal(reason: &'static str, note: impl Into<String>) -> Self {
        Note {
            type_: EventType::Normal,
            reason,
            note: super::conditions::bounded(note.into()),
            pod: None,
        }
    }

    pub fn warning(reason: &'static str, note: impl Into<String>) -> Self {
        Note {
            type_: EventType::Warning,
            ..Note::normal(reason, note)
        }
    }

    pub fn about_pod(self, pod: &str) -> Self {
        Note {
            pod: Some(pod.to_owned()),
            ..self
        }
    }
}

/// Publishes `notes` about `fm`; a failure to publish is logged, never fatal.
pub async fn publish(ctx: &crate::context::Context, fm: &ForecastModel, notes: &[Note]) {
    let reference = fm.object_ref(&());
    for n in notes {
        let event = Event {
            type_: n.type_,
            reason: n.reason.into(),
            note: Some(n.note.clone()),
            action: "Reconcile".into(),
            secondary: n.pod.as_ref().map(|pod| ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: reference.namespace.clone(),
                name: Some(pod.clone()),
                ..ObjectReference::default()
            }),
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            warn!(error = %e, reason = n.reason, "cannot publish event");
        }
    }
}
