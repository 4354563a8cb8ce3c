//! `meta.k8s.io/v1` Table answers (what `kubectl get` asks for), with printer columns
//! evaluated by a small JSONPath subset: `.a.b`, `.a[0]`, `.a[?(@.k=="v")].b`.

use serde_json::{Value, json};

use crate::resources::ResourceType;

pub fn wants_table(accept: &str) -> bool {
    accept.contains("as=Table")
}

/// Evaluates a printer-column JSONPath against an object.
pub fn json_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let path = path.strip_prefix('$').unwrap_or(path);
    let mut cur = object;
    for seg in split_segments(path) {
        let (name, selector) = match seg.find('[') {
            Some(i) => (&seg[..i], Some(seg[i + 1..].trim_end_matches(']'))),
            None => (seg, None),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        if let Some(sel) = selector {
            let items = cur.as_array()?;
            if let Some(filter) = sel.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (key, want) = filter.split_once("==")?;
                let want = want.trim().trim_matches('"').trim_matches('\'');
                cur = items
                    .iter()
                    .find(|i| i.get(key.trim()).and_then(Value::as_str) == Some(want))?;
            } else {
                let i: usize = sel.trim().parse().ok()?;
                cur = items.get(i)?;
            }
        }
    }
    Some(cur)
}

/// Splits on dots outside brackets.
fn split_segments(path: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0usize, Vec::new());
    for (i, c) in path.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 => {
                if i > start {
                    out.push(&path[start..i]);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < path.len() {
        out.push(&path[start..]);
    }
    out
}

fn cell(v: Option<&Value>, column_type: &str) -> Value {
    match v {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(t)) if column_type == "date" => json!(age(t)),
        Some(v) => v.clone(),
    }
}

/// A timestamp as the API server shows it in tables (apimachinery's HumanDuration).
pub fn age(timestamp: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(timestamp) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds();
    human_duration(secs)
}

pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86_400);
    let with = |big: i64, bu: &str, small: i64, su: &str| {
        if small == 0 {
            format!("{big}{bu}")
        } else {
            format!("{big}{bu}{small}{su}")
        }
    };
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        with(m, "m", secs % 60, "s")
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        with(h, "h", m % 60, "m")
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        with(d, "d", h % 24, "h")
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        with(d / 365, "y", d % 365, "d")
    } else {
        format!("{}y", d / 365)
    }
}

/// Cells the built-in printers compute rather than read (`READY 2/3`).
fn builtin_cell(rt: &ResourceType, column: &str, o: &Value) -> Option<Value> {
    match (rt.kind.as_str(), column) {
        ("Deployment", "Ready") => Some(json!(format!(
            "{}/{}",
            o["status"]["readyReplicas"].as_i64().unwrap_or(0),
            o["spec"]["replicas"].as_i64().unwrap_or(0)
        ))),
        ("Pod", "Ready") => {
            let statuses = o["status"]["containerStatuses"].as_array();
            let total = o["spec"]["containers"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0);
            let ready = statuses
                .map(|s| s.iter().filter(|c| c["ready"] == true).count())
                .unwrap_or(0);
            Some(json!(format!("{ready}/{total}")))
        }
        _ => None,
    }
}

pub fn table(
    rt: &ResourceType,
    objects: &[Value],
    revision: u64,
    continue_token: Option<&str>,
) -> Value {
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    for c in &rt.printer_columns {
        columns.push(json!({"name": c.name, "type": c.column_type, "format": "", "description": c.description, "priority": c.priority}));
    }
    let has_age = rt
        .printer_columns
        .iter()
        .any(|c| c.name.eq_ignore_ascii_case("age"));
    if !has_age {
        columns.push(json!({"name": "Age", "type": "date", "format": "", "description": "CreationTimestamp", "priority": 0}));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            for c in &rt.printer_columns {
                cells.push(
                    builtin_cell(rt, &c.name, o)
                        .unwrap_or_else(|| cell(json_path(o, &c.json_path), &c.column_type)),
                );
            }
            if !has_age {
                cells.push(cell(Some(&o["metadata"]["creationTimestamp"]), "date"));
            }
            json!({
                "cells": cells,
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]},
            })
        })
        .collect();
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(t) = continue_token {
        metadata["continue"] = json!(t);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_column_paths_select_conditions_and_indices() {
        let o = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}], "n": [4, 5]}, "spec": {"model": {"name": "m"}}});
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(&json!("True"))
        );
        assert_eq!(json_path(&o, ".status.n[1]"), Some(&json!(5)));
        assert_eq!(json_path(&o, ".spec.model.name"), Some(&json!("m")));
        assert_eq!(json_path(&o, ".spec.missing"), None);
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(3 * 86_400), "3d");
    }
}
