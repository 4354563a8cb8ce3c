//! What the model page shows beyond the ForecastModel itself, read with the caller's own
//! identity: its recent Events, its pods, and each ready pod's `/model/info` and
//! `/metrics` through the API server's pod proxy (when the caller may use it).

use std::collections::BTreeMap;
use std::time::Duration;

use api::forecast_model::ForecastModel;
use api::predictor::ModelInfo;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::traffic::{VersionTraffic, add_pod};

/// Events shown per model.
const MAX_EVENTS: usize = 20;
/// Events listed per namespace to find them (newest kept).
const EVENTS_LISTED: u32 = 500;
/// Pods read through the proxy per page.
const MAX_PROXIED_PODS: usize = 20;
/// Bytes read of one pod answer.
const MAX_POD_ANSWER: usize = 4 * 1024 * 1024;
/// Deadline of one read.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// One pod as the page shows it.
pub struct PodRow {
    pub name: String,
    pub ip: Option<String>,
    pub ready: bool,
    /// What the pod itself says it serves (through the proxy).
    pub info: Option<ModelInfo>,
}

/// One Event.
pub struct EventRow {
    pub type_: String,
    pub reason: String,
    pub note: String,
    /// RFC 3339.
    pub time: String,
    pub count: i32,
}

/// Why per-version traffic is not shown.
pub enum Traffic {
    Figures(BTreeMap<String, VersionTraffic>),
    /// The caller may not use `pods/proxy` here (the API server's answer).
    Forbidden(String),
    /// No pod answered.
    Unavailable(String),
}

pub struct Snapshot {
    pub pods: Vec<PodRow>,
    pub events: Result<Vec<EventRow>, String>,
    pub traffic: Traffic,
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Reads the snapshot of `fm` with `client`.
pub async fn read(client: &Client, fm: &ForecastModel) -> Snapshot {
    let ns = fm.namespace().unwrap_or_default();
    let (pods, events) = futures::join!(pods(client, fm, &ns), events(client, fm, &ns));
    let (rows, traffic) = match pods {
        Err(e) => (
            Vec::new(),
            Traffic::Unavailable(format!("cannot list pods: {e}")),
        ),
        Ok(pods) => proxied(client, &ns, fm.spec.predictor.port, pods).await,
    };
    Snapshot {
        pods: rows,
        events,
        traffic,
    }
}

async fn pods(client: &Client, fm: &ForecastModel, ns: &str) -> Result<Vec<Pod>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!(
        "app.kubernetes.io/name=forecast-predictor,app.kubernetes.io/instance={}",
        fm.name_any()
    );
    let mut pods = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    pods.sort_by_key(|p| p.name_any());
    Ok(pods)
}

async fn events(client: &Client, fm: &ForecastModel, ns: &str) -> Result<Vec<EventRow>, String> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let uid = fm.uid();
    let listed = api
        .list(&ListParams::default().limit(EVENTS_LISTED))
        .await
        .map_err(|e| format!("cannot list events: {e}"))?;
    let mut rows: Vec<EventRow> = listed
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.uid.clone()) == uid)
        .map(|e| {
            let time = e
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0.to_string())
                .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
                .or_else(|| {
                    e.deprecated_last_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                })
                .unwrap_or_default();
            EventRow {
                type_: e.type_.unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
                note: e.note.unwrap_or_default(),
                time,
                count: e.series.as_ref().map_or(1, |s| s.count),
            }
        })
        .collect();
    rows.sort_by(|a, b| b.time.cmp(&a.time));
    rows.truncate(MAX_EVENTS);
    Ok(rows)
}

/// GETs `path` of a pod through the API server's proxy.
async fn proxy_get(
    client: &Client,
    ns: &str,
    pod: &str,
    port: i32,
    path: &str,
) -> Result<String, kube::Error> {
    let uri = format!("/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy{path}");
    let request = http::Request::get(uri)
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    let text = tokio::time::timeout(READ_TIMEOUT, client.request_text(request))
        .await
        .map_err(|_| kube::Error::Service(format!("no answer within {READ_TIMEOUT:?}").into()))??;
    Ok(if text.len() > MAX_POD_ANSWER {
        String::new()
    } else {
        text
    })
}

fn forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

/// Each pod's row, and the traffic of the ready ones read through the proxy.
async fn proxied(client: &Client, ns: &str, port: i32, pods: Vec<Pod>) -> (Vec<PodRow>, Traffic) {
    let mut rows = Vec::new();
    let mut traffic = BTreeMap::new();
    let mut answered = 0;
    let mut refusal = None;
    let mut failure = None;
    for (i, pod) in pods.iter().enumerate() {
        let name = pod.name_any();
        let ready = ready(pod);
        let mut info = None;
        if ready && i < MAX_PROXIED_PODS && refusal.is_none() {
            let (model_info, metrics) = futures::join!(
                proxy_get(client, ns, &name, port, "/model/info"),
                proxy_get(client, ns, &name, port, "/metrics")
            );
            match (model_info, metrics) {
                (Err(e), _) | (_, Err(e)) if forbidden(&e) => {
                    refusal = Some(e.to_string());
                }
                (model_info, metrics) => {
                    info = model_info.ok().and_then(|t| serde_json::from_str(&t).ok());
                    match metrics {
                        Ok(text) => {
                            add_pod(&mut traffic, &text);
                            answered += 1;
                        }
                        Err(e) => failure = Some(e.to_string()),
                    }
                }
            }
        }
        rows.push(PodRow {
            name,
            ip: pod.status.as_ref().and_then(|s| s.pod_ip.clone()),
            ready,
            info,
        });
    }
    let traffic = match (refusal, answered, failure) {
        (Some(why), _, _) => Traffic::Forbidden(why),
        (None, 0, Some(why)) => Traffic::Unavailable(why),
        (None, 0, None) => Traffic::Unavailable("no ready pod to read".into()),
        _ => Traffic::Figures(traffic),
    };
    (rows, traffic)
}
