//! `/api/v1/namespaces/{ns}/pods/{name[:port]}/proxy/...` and
//! `/api/v1/namespaces/{ns}/services/{name[:port]}/proxy/...`: the API server proxy,
//! which lets a client outside the cluster reach a pod or a Service (round-robin over
//! its ready endpoints) through the API server, on a simulator as on a real cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::Value;

use crate::resources::ResourceType;
use crate::selectors::LabelSelector;
use crate::sim::Sim;
use crate::status::{ApiError, ApiResult};

static ROUND_ROBIN: AtomicUsize = AtomicUsize::new(0);

fn is_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// A container port of the pod by number or name (default: the first declared, else 80).
fn pod_port(pod: &Value, port: Option<&str>) -> Option<u16> {
    let ports: Vec<&Value> = pod["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .collect()
        })
        .unwrap_or_default();
    match port {
        Some(p) => match p.parse::<u16>() {
            Ok(n) => Some(n),
            Err(_) => ports
                .iter()
                .find(|x| x["name"] == p)
                .and_then(|x| x["containerPort"].as_u64())
                .and_then(|n| u16::try_from(n).ok()),
        },
        None => ports
            .first()
            .and_then(|x| x["containerPort"].as_u64())
            .and_then(|n| u16::try_from(n).ok())
            .or(Some(80)),
    }
}

/// Picks the backend `ip:port` for a proxy request.
fn backend(sim: &Sim, rt: &ResourceType, ns: &str, name_port: &str) -> ApiResult<String> {
    let (name, port) = match name_port.split_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (name_port, None),
    };
    let store = sim.store();
    let pods_rt = store
        .resolve("", "v1", "pods")
        .cloned()
        .ok_or_else(|| ApiError::not_found_path("pods"))?;
    let unavailable = |what: String| ApiError::new(503, "ServiceUnavailable", what);
    if rt.plural == "pods" {
        let pod = store.get(&pods_rt, ns, name)?;
        let ip = pod["status"]["podIP"]
            .as_str()
            .ok_or_else(|| unavailable(format!("pod {name} has no IP yet")))?;
        let port = pod_port(&pod, port)
            .ok_or_else(|| ApiError::bad_request(format!("no port {port:?} on pod {name}")))?;
        return Ok(format!("{ip}:{port}"));
    }
    let svc = store.get(rt, ns, name)?;
    let ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
    let svc_port = match port {
        Some(p) => ports
            .iter()
            .find(|x| {
                x["name"] == p || x["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(p)
            })
            .cloned()
            .ok_or_else(|| ApiError::bad_request(format!("service {name} has no port {p}")))?,
        None => ports
            .first()
            .cloned()
            .ok_or_else(|| ApiError::bad_request(format!("service {name} has no ports")))?,
    };
    let selector =
        LabelSelector::from_object(&serde_json::json!({"matchLabels": svc["spec"]["selector"]}))?;
    if selector.is_empty() {
        return Err(unavailable(format!("service {name} has no selector")));
    }
    let mut ready: Vec<Value> = store.select(&pods_rt, |p| {
        p["metadata"]["namespace"] == ns && selector.matches(p) && is_ready(p)
    });
    if ready.is_empty() {
        return Err(unavailable(format!(
            "no endpoints available for service \"{name}\""
        )));
    }
    ready.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    let pod = &ready[ROUND_ROBIN.fetch_add(1, Ordering::Relaxed) % ready.len()];
    let target = &svc_port["targetPort"];
    let port = match target {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => pod_port(pod, Some(s)),
        _ => svc_port["port"]
            .as_u64()
            .and_then(|n| u16::try_from(n).ok()),
    }
    .ok_or_else(|| ApiError::bad_request("cannot resolve the service's target port"))?;
    let ip = pod["status"]["podIP"].as_str().unwrap_or("127.0.0.1");
    Ok(format!("{ip}:{port}"))
}

pub async fn forward(
    sim: &Arc<Sim>,
    rt: &ResourceType,
    ns: &str,
    name_port: &str,
    path: &str,
    req: &HttpRequest,
    body: Bytes,
) -> ApiResult<HttpResponse> {
    let target = backend(sim, rt, ns, name_port)?;
    let mut url = format!("http://{target}/{path}");
    if !req.query_string().is_empty() {
        url.push('?');
        url.push_str(req.query_string());
    }
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| ApiError::method_not_allowed("unsupported method"))?;
    let mut outbound = sim.http.request(method, &url).body(body.to_vec());
    for header in ["content-type", "accept", "authorization"] {
        if let Some(v) = req.headers().get(header).and_then(|v| v.to_str().ok()) {
            outbound = outbound.header(header, v);
        }
    }
    let response = outbound.send().await.map_err(|e| {
        ApiError::new(
            503,
            "ServiceUnavailable",
            format!("error trying to reach {target}: {e}"),
        )
    })?;
    let status = actix_web::http::StatusCode::from_u16(response.status().as_u16())
        .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let bytes = response.bytes().await.map_err(|e| {
        ApiError::new(
            503,
            "ServiceUnavailable",
            format!("reading from {target}: {e}"),
        )
    })?;
    Ok(HttpResponse::build(status)
        .content_type(content_type)
        .body(bytes))
}
