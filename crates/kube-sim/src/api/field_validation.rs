//! `fieldValidation` as kube-apiserver honours it on writes: fields the schema does not
//! declare fail the request (`Strict`, what kubectl sends by default), come back as
//! `Warning` headers (`Warn`, the server's default) or are dropped silently (`Ignore`).
//! Custom resources are checked against their CRD's structural schema, built-in kinds
//! against their protobuf schema (whose field names are the JSON names).

use actix_web::HttpResponse;
use actix_web::http::header::{HeaderValue, WARNING};
use prost_reflect::{Kind, MessageDescriptor};
use serde_json::Value;

use crate::protobuf;
use crate::resources::ResourceType;
use crate::status::{ApiError, ApiResult};

/// Checks a write's body and drops what a built-in kind does not declare (custom
/// resources are pruned by their schema on admission); answers the warnings to send
/// (none unless `Warn`).
pub fn check(
    directive: Option<&str>,
    rt: &ResourceType,
    body: &mut Value,
) -> ApiResult<Vec<String>> {
    let directive = directive.unwrap_or("Warn");
    if !matches!(directive, "Strict" | "Warn" | "Ignore") {
        return Err(ApiError::bad_request(format!(
            "fieldValidation must be Strict, Warn or Ignore, not {directive:?}"
        )));
    }
    let paths = unknown_fields(rt, body);
    prune_built_in(rt, body, &paths);
    if directive == "Ignore" {
        return Ok(Vec::new());
    }
    let unknown: Vec<String> = paths
        .iter()
        .map(|path| format!("unknown field \"{path}\""))
        .collect();
    if directive == "Strict" && !unknown.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            unknown.join(", "),
            kind = rt.kind,
            version = rt.version,
        )));
    }
    Ok(unknown)
}

/// Drops the fields a built-in kind does not declare, as decoding into its type does
/// (`paths` as `unknown_fields` finds them).
pub fn prune_built_in(rt: &ResourceType, object: &mut Value, paths: &[String]) {
    if rt.schema.is_none() {
        for path in paths {
            remove(object, path);
        }
    }
}

/// The response with one `Warning` header per message.
pub fn with_warnings(mut response: HttpResponse, warnings: &[String]) -> HttpResponse {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(WARNING, value);
        }
    }
    response
}

/// Paths (`spec.rollout.canary`) of the fields in `body` the kind does not declare.
pub fn unknown_fields(rt: &ResourceType, body: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let metadata = message("apimachinery.pkg.apis.meta.v1.ObjectMeta");
    match &rt.schema {
        Some(schema) => {
            if let (Some(meta), Some(m)) = (metadata, body.get("metadata")) {
                walk_message(&meta, m, "metadata", &mut found);
            }
            walk_schema(schema, body, "", true, &mut found);
        }
        None => {
            let api_version = if rt.group.is_empty() {
                rt.version.clone()
            } else {
                format!("{}/{}", rt.group, rt.version)
            };
            if let Ok(desc) = protobuf::message_for(&api_version, &rt.kind) {
                walk_message(&desc, body, "", &mut found);
            }
        }
    }
    found
}

/// Removes the field at `path` (as `unknown_fields` writes it: `a.b[2].c`, `m[key].d`).
fn remove(value: &mut Value, path: &str) {
    let mut steps: Vec<&str> = Vec::new();
    for part in path.split('.') {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        steps.push(name);
        for index in rest.split('[').filter(|s| !s.is_empty()) {
            steps.push(index.trim_end_matches(']'));
        }
    }
    let Some((last, parents)) = steps.split_last() else {
        return;
    };
    let mut here = value;
    for step in parents {
        let next = match here {
            Value::Object(map) => map.get_mut(*step),
            Value::Array(items) => step.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        };
        let Some(next) = next else {
            return;
        };
        here = next;
    }
    if let Value::Object(map) = here {
        map.remove(*last);
    }
}

fn message(name: &str) -> Option<MessageDescriptor> {
    protobuf::schema().ok()?.get_message_by_name(name)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk_schema(schema: &Value, value: &Value, path: &str, root: bool, found: &mut Vec<String>) {
    let preserves = schema["x-kubernetes-preserve-unknown-fields"] == true;
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match (props.and_then(|p| p.get(key)), additional) {
                    (Some(p), _) => walk_schema(p, child, &join(path, key), false, found),
                    (None, Some(a)) => walk_schema(a, child, &join(path, key), false, found),
                    (None, None) => {
                        let open = preserves
                            || schema.get("additionalProperties") == Some(&Value::Bool(true));
                        if props.is_some() && !open {
                            found.push(join(path, key));
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|i| i.is_object()) {
                for (i, item) in items.iter().enumerate() {
                    walk_schema(item_schema, item, &format!("{path}[{i}]"), false, found);
                }
            }
        }
        _ => {}
    }
}

fn walk_message(desc: &MessageDescriptor, value: &Value, path: &str, found: &mut Vec<String>) {
    let Value::Object(map) = value else {
        return;
    };
    // JSON schemas in a CRD have JSON names (`$ref`, `x-kubernetes-...`) unlike their
    // proto fields; they are checked by the CRD's own admission.
    let name = desc.full_name();
    if protobuf::is_special(name) || name.contains(".apiextensions.v1.JSONSchemaProps") {
        return;
    }
    for (key, child) in map {
        if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind") {
            continue;
        }
        // Strategic-merge-patch directives are not fields.
        if key.starts_with('$') {
            continue;
        }
        let Some((field, _)) = protobuf::field_for_key(desc, key) else {
            found.push(join(path, key));
            continue;
        };
        let here = join(path, key);
        let Kind::Message(inner) = field.kind() else {
            continue;
        };
        if field.is_map() {
            let value_kind = inner.map_entry_value_field().kind();
            if let (Kind::Message(v), Value::Object(entries)) = (value_kind, child) {
                for (k, entry) in entries {
                    walk_message(&v, entry, &format!("{here}[{k}]"), found);
                }
            }
        } else if let Value::Array(items) = child {
            for (i, item) in items.iter().enumerate() {
                walk_message(&inner, item, &format!("{here}[{i}]"), found);
            }
        } else {
            walk_message(&inner, child, &here, found);
        }
    }
}
