//! A minimal OpenAPI v3 discovery (`/openapi/v3` and one document per group version).
//! kubectl reads it to learn that the server validates fields itself (the
//! `fieldValidation` parameter of each write), so it sends `fieldValidation=Strict` instead
//! of validating client-side; schemas are given for custom resources (from their CRD)
//! and as open objects for built-ins.

use serde_json::{Map, Value, json};

use crate::resources::ResourceType;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

pub fn index(types: &[ResourceType]) -> Value {
    let mut paths = Map::new();
    for t in types {
        let p = gv_path(&t.group, &t.version);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=kube-sim")}),
        );
    }
    json!({"paths": paths})
}

fn params() -> Value {
    json!([
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
    ])
}

fn schema_name(t: &ResourceType) -> String {
    let group = if t.group.is_empty() {
        "core".to_owned()
    } else {
        t.group.clone()
    };
    format!("{}.{}.{}", group, t.version, t.kind)
}

pub fn document(types: &[ResourceType], gv: &str) -> Option<Value> {
    let in_gv: Vec<&ResourceType> = types
        .iter()
        .filter(|t| gv_path(&t.group, &t.version) == gv)
        .collect();
    if in_gv.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for t in in_gv {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let base = if t.namespaced {
            format!("/{gv}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("/{gv}/{}", t.plural)
        };
        let op = |action: &str| {
            json!({
                "operationId": format!("{action}{}", t.kind),
                "parameters": params(),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "responses": {"200": {"description": "OK"}},
            })
        };
        paths.insert(base.clone(), json!({"post": op("post"), "get": op("list")}));
        paths.insert(format!("{base}/{{name}}"), json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
        let mut schema = t.schema.clone().unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        schemas.insert(schema_name(t), schema);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kube-sim)", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
