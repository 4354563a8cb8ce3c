//! The HTTP front of the simulator: parses Kubernetes API paths and verbs and answers as
//! kube-apiserver does (objects, lists, tables, watches, Status errors).

mod discovery;
pub mod field_validation;
mod openapi;
pub mod proxy;
pub mod table;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Value, json};

use crate::patch;
use crate::protobuf;
use crate::resources::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::sim::Sim;
use crate::status::{ApiError, ApiResult};
use crate::store::{DeleteOptions, EventKind, Subresource, WriteOptions};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.default_service(web::to(dispatch));
}

fn respond(result: ApiResult<HttpResponse>) -> HttpResponse {
    result.unwrap_or_else(|e| error_response(&e))
}

pub fn error_response(e: &ApiError) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(e.code)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
    .json(e.to_status())
}

fn ok_json(v: &Value) -> HttpResponse {
    HttpResponse::Ok().json(v)
}

/// A parsed resource URL.
struct Target {
    rt: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    sub: Vec<String>,
    watch_path: bool,
}

type Query = HashMap<String, String>;

async fn dispatch(
    req: HttpRequest,
    body: Bytes,
    sim: web::Data<Arc<Sim>>,
    query: web::Query<Query>,
) -> HttpResponse {
    let path = req.path().trim_end_matches('/').to_owned();
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let sim = sim.get_ref().clone();
    match seg.as_slice() {
        ["version"] => ok_json(&discovery::version()),
        ["healthz"] | ["readyz"] | ["livez"] => HttpResponse::Ok().body("ok"),
        ["api"] => ok_json(&discovery::core_versions(&sim.address)),
        ["apis"] => ok_json(&discovery::group_list(sim.store().types())),
        ["api", "v1"] => {
            ok_json(&discovery::resource_list(sim.store().types(), "", "v1").unwrap_or(Value::Null))
        }
        ["apis", group] => match discovery::group(sim.store().types(), group) {
            Some(g) => ok_json(&g),
            None => error_response(&ApiError::not_found_path(&path)),
        },
        ["apis", group, version] => {
            match discovery::resource_list(sim.store().types(), group, version) {
                Some(l) => ok_json(&l),
                None => error_response(&ApiError::not_found_path(&path)),
            }
        }
        ["openapi", "v3"] => ok_json(&openapi::index(sim.store().types())),
        ["openapi", "v3", gv @ ..] => match openapi::document(sim.store().types(), &gv.join("/")) {
            Some(d) => ok_json(&d),
            None => error_response(&ApiError::not_found_path(&path)),
        },
        ["api", "v1", rest @ ..] => {
            let response = respond(resource(&sim, &req, body, &query, "", "v1", rest).await);
            in_accepted_form(&req, &query, response).await
        }
        ["apis", group, version, rest @ ..] => {
            let response = respond(resource(&sim, &req, body, &query, group, version, rest).await);
            in_accepted_form(&req, &query, response).await
        }
        _ => error_response(&ApiError::not_found_path(&path)),
    }
}

/// The response as protobuf when the client accepts nothing else (kube-apiserver answers
/// 406 where it has no protobuf form: custom resources, tables, watches here).
async fn in_accepted_form(
    req: &HttpRequest,
    query: &Query,
    response: HttpResponse,
) -> HttpResponse {
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !protobuf::only_protobuf_accepted(accept) || req.path().contains("/proxy") {
        return response;
    }
    let not_acceptable = |why: String| {
        error_response(&ApiError::new(
            406,
            "NotAcceptable",
            format!("only {} was accepted: {why}", protobuf::MEDIA_TYPE),
        ))
    };
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1")
        || req.path().contains("/watch/");
    if watch {
        return not_acceptable("kube-sim streams watches as JSON only".into());
    }
    let status = response.status();
    let body = match actix_web::body::to_bytes(response.into_body()).await {
        Ok(b) => b,
        Err(_) => return not_acceptable("the answer could not be read".into()),
    };
    let encoded = serde_json::from_slice::<Value>(&body)
        .map_err(|e| e.to_string())
        .and_then(|v| protobuf::encode(&v));
    match encoded {
        Ok(bytes) => HttpResponse::build(status)
            .content_type(protobuf::MEDIA_TYPE)
            .body(bytes),
        Err(why) => not_acceptable(why),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_target(sim: &Sim, group: &str, version: &str, rest: &[&str]) -> ApiResult<Target> {
    let store = sim.store();
    let known = |plural: &str| store.resolve(group, version, plural).is_some();
    let (watch_path, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if known(plural) => (Some(ns.to_string()), {
            let mut v = vec![*plural];
            v.extend_from_slice(tail);
            v
        }),
        _ => (None, rest.to_vec()),
    };
    let plural = rest
        .first()
        .ok_or_else(|| ApiError::not_found_path(&rest.join("/")))?;
    let rt = store
        .resolve(group, version, plural)
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!(
                    "the server could not find the requested resource ({group}/{version} {plural})"
                ),
            )
        })?;
    Ok(Target {
        rt,
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.iter().skip(2).map(|s| s.to_string()).collect(),
        watch_path,
    })
}

fn write_options(query: &Query, default_manager: &str) -> WriteOptions {
    WriteOptions {
        manager: query
            .get("fieldManager")
            .cloned()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| default_manager.to_owned()),
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        force: query.get("force").is_some_and(|f| f == "true"),
        record_fields: true,
    }
}

/// The manager name of a writer that did not set `fieldManager` (as the real server
/// derives it from the user agent).
fn agent_manager(req: &HttpRequest) -> String {
    req.headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_owned()
}

fn parse_body(req: &HttpRequest, body: &[u8]) -> ApiResult<Value> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if content_type.contains("protobuf") {
        return protobuf::decode(body).map_err(|e| {
            ApiError::new(415, "UnsupportedMediaType", format!("protobuf body: {e}"))
        });
    }
    if content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(format!(
            "kube-sim accepts JSON, YAML and protobuf bodies, not {content_type}"
        )));
    }
    if content_type.contains("yaml") {
        serde_yaml::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("invalid YAML body: {e}")))
    } else {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

fn validate_fields(query: &Query, rt: &ResourceType, body: &mut Value) -> ApiResult<Vec<String>> {
    field_validation::check(query.get("fieldValidation").map(String::as_str), rt, body)
}

fn with_warnings(response: HttpResponse, warnings: &[String]) -> HttpResponse {
    field_validation::with_warnings(response, warnings)
}

fn selectors(query: &Query) -> ApiResult<(LabelSelector, FieldSelector)> {
    Ok((
        LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))?,
        FieldSelector::parse(query.get("fieldSelector").map(String::as_str).unwrap_or(""))?,
    ))
}

fn list_json(
    rt: &ResourceType,
    items: Vec<Value>,
    revision: u64,
    cont: Option<String>,
    remaining: Option<usize>,
) -> Value {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    if let Some(r) = remaining {
        meta["remainingItemCount"] = json!(r);
    }
    json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": meta, "items": items})
}

fn scale_json(o: &Value) -> Value {
    let selector = o["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"],
            "uid": o["metadata"]["uid"], "resourceVersion": o["metadata"]["resourceVersion"],
            "creationTimestamp": o["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": o["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": o["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

async fn resource(
    sim: &Arc<Sim>,
    req: &HttpRequest,
    body: Bytes,
    query: &Query,
    group: &str,
    version: &str,
    rest: &[&str],
) -> ApiResult<HttpResponse> {
    let target = parse_target(sim, group, version, rest)?;
    let rt = target.rt.clone();
    let ns = target.namespace.clone().unwrap_or_default();
    if rt.namespaced && target.name.is_some() && target.namespace.is_none() {
        return Err(ApiError::not_found_path(req.path()));
    }
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let sub: Vec<&str> = target.sub.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match (&method, target.name.as_deref(), sub.as_slice()) {
        // Proxies to pods and services.
        (_, Some(name), ["proxy", tail @ ..])
            if rt.group.is_empty() && (rt.plural == "pods" || rt.plural == "services") =>
        {
            proxy::forward(sim, &rt, &ns, name, &tail.join("/"), req, body).await
        }
        (&Method::GET, Some(name), ["log"]) if rt.group.is_empty() && rt.plural == "pods" => {
            let text = sim
                .pod_log(&ns, name)
                .ok_or_else(|| ApiError::not_found(&rt, name))?;
            Ok(HttpResponse::Ok().content_type("text/plain").body(text))
        }
        (&Method::GET, None, []) => {
            let watching =
                target.watch_path || query.get("watch").is_some_and(|w| w == "true" || w == "1");
            if watching {
                return watch(sim, &rt, target.namespace.clone(), query);
            }
            let (labels, fields) = selectors(query)?;
            let limit = query.get("limit").and_then(|l| l.parse().ok());
            let store = sim.store();
            let result = store.list(
                &rt,
                target.namespace.as_deref(),
                &labels,
                &fields,
                limit,
                query.get("continue").map(String::as_str),
            )?;
            if table::wants_table(&accept) {
                return Ok(ok_json(&table::table(
                    &rt,
                    &result.items,
                    result.revision,
                    result.continue_token.as_deref(),
                )));
            }
            Ok(ok_json(&list_json(
                &rt,
                result.items,
                result.revision,
                result.continue_token,
                result.remaining,
            )))
        }
        (&Method::GET, Some(name), []) | (&Method::GET, Some(name), ["status"]) => {
            if target.watch_path {
                let mut q = query.clone();
                q.insert("fieldSelector".into(), format!("metadata.name={name}"));
                return watch(sim, &rt, target.namespace.clone(), &q);
            }
            let o = sim.store().get(&rt, &ns, name)?;
            if table::wants_table(&accept) {
                let rev = sim.store().revision();
                return Ok(ok_json(&table::table(&rt, &[o], rev, None)));
            }
            Ok(ok_json(&o))
        }
        (&Method::GET, Some(name), ["scale"]) if rt.scale_subresource => {
            let o = sim.store().get(&rt, &ns, name)?;
            Ok(ok_json(&scale_json(&o)))
        }
        (&Method::POST, None, []) => {
            let mut object = parse_body(req, &body)?;
            check_kind(&rt, &object)?;
            let warnings = validate_fields(query, &rt, &mut object)?;
            let opts = write_options(query, &agent_manager(req));
            let created = sim.store().create(&rt, &ns, object, &opts)?;
            Ok(with_warnings(
                HttpResponse::Created().json(created),
                &warnings,
            ))
        }
        (&Method::PUT, Some(name), sub @ ([] | ["status"])) => {
            let mut object = parse_body(req, &body)?;
            check_kind(&rt, &object)?;
            let warnings = validate_fields(query, &rt, &mut object)?;
            let opts = write_options(query, &agent_manager(req));
            let which = if sub.is_empty() {
                Subresource::Main
            } else {
                Subresource::Status
            };
            let updated = sim.store().write(&rt, &ns, name, object, which, &opts)?;
            Ok(with_warnings(ok_json(&updated), &warnings))
        }
        (&Method::PUT, Some(name), ["scale"]) | (&Method::PATCH, Some(name), ["scale"])
            if rt.scale_subresource =>
        {
            let opts = write_options(query, &agent_manager(req));
            let mut store = sim.store();
            let current = store.get(&rt, &ns, name)?;
            let mut scale = scale_json(&current);
            if method == Method::PUT {
                scale = parse_body(req, &body)?;
            } else {
                apply_patch_body(req, &body, &mut scale)?;
            }
            let replicas = scale["spec"]["replicas"]
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("spec.replicas must be an integer"))?;
            let mut updated = current.clone();
            updated["spec"]["replicas"] = json!(replicas);
            updated["metadata"]["resourceVersion"] = scale["metadata"]["resourceVersion"].clone();
            let stored = store.write(&rt, &ns, name, updated, Subresource::Main, &opts)?;
            Ok(ok_json(&scale_json(&stored)))
        }
        (&Method::PATCH, Some(name), sub @ ([] | ["status"])) => {
            let which = if sub.is_empty() {
                Subresource::Main
            } else {
                Subresource::Status
            };
            let content_type = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if content_type.starts_with("application/apply-patch") {
                let mut config = parse_body(req, &body)?;
                check_kind(&rt, &config)?;
                let warnings = validate_fields(query, &rt, &mut config)?;
                let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
                    // kube-apiserver validates PatchOptions: 422, not 400.
                    let mut e = ApiError::new(
                        422,
                        "Invalid",
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                    );
                    e.details = Some(serde_json::json!({
                        "group": "meta.k8s.io", "kind": "PatchOptions",
                        "causes": [{"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}]
                    }));
                    return Err(e);
                };
                let opts = WriteOptions {
                    manager: manager.clone(),
                    ..write_options(query, manager)
                };
                let applied = sim.store().apply(&rt, &ns, name, config, which, &opts)?;
                return Ok(with_warnings(ok_json(&applied), &warnings));
            }
            // A merge or strategic patch is a partial object; a JSON patch is not checked.
            let warnings = match serde_json::from_slice::<Value>(&body) {
                Ok(mut partial @ Value::Object(_)) => validate_fields(query, &rt, &mut partial)?,
                _ => Vec::new(),
            };
            let opts = write_options(query, &agent_manager(req));
            let mut store = sim.store();
            let mut object = store.get(&rt, &ns, name)?;
            apply_patch_body(req, &body, &mut object)?;
            let unknown = field_validation::unknown_fields(&rt, &object);
            field_validation::prune_built_in(&rt, &mut object, &unknown);
            let patched = store.write(&rt, &ns, name, object, which, &opts)?;
            Ok(with_warnings(ok_json(&patched), &warnings))
        }
        (&Method::DELETE, Some(name), []) => {
            let mut opts = DeleteOptions {
                dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
                ..DeleteOptions::default()
            };
            let mut policy = query.get("propagationPolicy").cloned();
            if !body.is_empty()
                && let Ok(b) = serde_json::from_slice::<Value>(&body)
            {
                if let Some(p) = b["propagationPolicy"].as_str() {
                    policy = Some(p.to_owned());
                }
                if b["orphanDependents"] == true {
                    policy = Some("Orphan".into());
                }
                opts.precondition_uid = b["preconditions"]["uid"].as_str().map(str::to_owned);
                opts.precondition_resource_version = b["preconditions"]["resourceVersion"]
                    .as_str()
                    .map(str::to_owned);
                if b["dryRun"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x == "All"))
                {
                    opts.dry_run = true;
                }
            }
            opts.orphan = policy.as_deref() == Some("Orphan");
            let gone = sim.store().delete(&rt, &ns, name, &opts)?;
            Ok(ok_json(&gone))
        }
        (&Method::DELETE, None, []) => {
            let (labels, fields) = selectors(query)?;
            let mut store = sim.store();
            let items = store
                .list(
                    &rt,
                    target.namespace.as_deref(),
                    &labels,
                    &fields,
                    None,
                    None,
                )?
                .items;
            let mut deleted = Vec::new();
            for o in items {
                let n = o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let ons = o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if let Ok(d) = store.delete(&rt, &ons, &n, &DeleteOptions::default()) {
                    deleted.push(d);
                }
            }
            let rev = store.revision();
            Ok(ok_json(&list_json(&rt, deleted, rev, None, None)))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {})",
            req.path()
        ))),
    }
}

fn check_kind(rt: &ResourceType, object: &Value) -> ApiResult<()> {
    if let Some(kind) = object["kind"].as_str()
        && kind != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the body ({kind}) does not match the resource ({})",
            rt.kind
        )));
    }
    Ok(())
}

fn apply_patch_body(req: &HttpRequest, body: &[u8], target: &mut Value) -> ApiResult<()> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let patch_doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid patch body: {e}")))?;
    if content_type.starts_with("application/merge-patch+json") {
        patch::merge_patch(target, &patch_doc);
    } else if content_type.starts_with("application/json-patch+json") {
        patch::json_patch(target, &patch_doc)?;
    } else if content_type.starts_with("application/strategic-merge-patch+json") {
        patch::strategic_merge(target, &patch_doc);
    } else {
        return Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, \
             application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
        )));
    }
    Ok(())
}

fn watch(
    sim: &Arc<Sim>,
    rt: &ResourceType,
    namespace: Option<String>,
    query: &Query,
) -> ApiResult<HttpResponse> {
    let (labels, fields) = selectors(query)?;
    let filter = watch::WatchFilter {
        resource: rt.clone(),
        namespace: namespace.filter(|n| !n.is_empty() && rt.namespaced),
        labels,
        fields,
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let send_initial = query.get("sendInitialEvents").is_some_and(|s| s == "true");
    let requested = query.get("resourceVersion").cloned().unwrap_or_default();
    let store = sim.store();
    let (replay, start_revision) = if requested.is_empty() || requested == "0" || send_initial {
        let items = store
            .list(
                rt,
                filter.namespace.as_deref(),
                &filter.labels,
                &filter.fields,
                None,
                None,
            )?
            .items;
        (
            items.into_iter().map(|o| (EventKind::Added, o)).collect(),
            store.revision(),
        )
    } else {
        let from: u64 = requested
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {requested:?}")))?;
        match store.events_since(rt, from) {
            Ok(events) => {
                let replay: Vec<(EventKind, Value)> = events
                    .iter()
                    .filter_map(|e| filter_translate(&filter, e))
                    .collect();
                (replay, store.revision())
            }
            Err(gone) => {
                // The real server answers an expired watch with a 200 stream holding one
                // ERROR event carrying the 410 Status.
                let line = format!("{}\n", json!({"type": "ERROR", "object": gone.to_status()}));
                return Ok(HttpResponse::Ok()
                    .content_type("application/json")
                    .body(line));
            }
        }
    };
    let receiver = store.subscribe();
    drop(store);
    let plan = watch::WatchPlan {
        filter,
        replay,
        receiver,
        start_revision,
        bookmarks,
        initial_events_end: send_initial && bookmarks,
        timeout,
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(watch::stream(plan)))
}

fn filter_translate(
    filter: &watch::WatchFilter,
    e: &crate::store::WatchEvent,
) -> Option<(EventKind, Value)> {
    watch::translate_public(filter, e)
}
