//! Server-side apply and field ownership (`metadata.managedFields`, FieldsV1).
//!
//! Fields are tracked as leaf paths: scalars, lists (atomic, as `+listType=atomic`) and
//! empty maps. An apply sets the manager's fields to exactly those in its configuration,
//! removes fields it applied before and no longer applies (unless another manager owns
//! them), and conflicts when it would change a value another manager owns, unless forced.
//! Other writes (create, update, patch) give the writer the fields they changed.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

pub type FieldPath = Vec<String>;

/// Identity and server-managed metadata never owned by a manager.
const SERVER_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
];

/// The leaf paths of an object's content.
pub fn leaf_paths(v: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    if let Value::Object(map) = v {
        for (k, child) in map {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            if k == "metadata" {
                if let Value::Object(meta) = child {
                    for (mk, mv) in meta {
                        if SERVER_FIELDS.contains(&mk.as_str()) {
                            continue;
                        }
                        collect(mv, vec!["metadata".into(), mk.clone()], &mut out);
                    }
                }
                continue;
            }
            collect(child, vec![k.clone()], &mut out);
        }
    }
    out
}

fn collect(v: &Value, path: FieldPath, out: &mut BTreeSet<FieldPath>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let mut p = path.clone();
                p.push(k.clone());
                collect(child, p, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

pub fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, seg| cur.get(seg))
}

fn remove_at(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parents {
        match cur.get_mut(seg) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(map) = cur.as_object_mut() {
        map.remove(last);
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Deep merge for apply: maps merge, everything else replaces.
pub fn apply_merge(target: &mut Value, config: &Value) {
    match (target, config) {
        (Value::Object(t), Value::Object(c)) => {
            for (k, v) in c {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        apply_merge(existing, v)
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, c) => *t = c.clone(),
    }
}

/// One `managedFields` entry, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: String,
    pub time: String,
    pub fields: BTreeSet<FieldPath>,
}

impl ManagedEntry {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode_fields(&self.fields),
        });
        if !self.subresource.is_empty() {
            v["subresource"] = json!(self.subresource);
        }
        v
    }
}

fn encode_fields(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut cur = &mut root;
        for seg in path {
            let entry = cur
                .entry(format!("f:{seg}"))
                .or_insert_with(|| Value::Object(Map::new()));
            cur = match entry {
                Value::Object(m) => m,
                _ => unreachable!("entries are always objects"),
            };
        }
    }
    Value::Object(root)
}

fn decode_fields(v: &Value, path: FieldPath, out: &mut BTreeSet<FieldPath>) {
    let Some(map) = v.as_object() else {
        return;
    };
    let children: Vec<(&String, &Value)> =
        map.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    let has_other = map
        .keys()
        .any(|k| k.starts_with("k:") || k.starts_with("v:") || k.starts_with("i:"));
    if (children.is_empty() || has_other) && !path.is_empty() {
        out.insert(path);
        return;
    }
    for (k, child) in children {
        let mut p = path.clone();
        p.push(k[2..].to_owned());
        decode_fields(child, p, out);
    }
}

pub fn read_managed(object: &Value) -> Vec<ManagedEntry> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let mut fields = BTreeSet::new();
                    decode_fields(&e["fieldsV1"], Vec::new(), &mut fields);
                    ManagedEntry {
                        manager: e["manager"].as_str().unwrap_or_default().to_owned(),
                        operation: e["operation"].as_str().unwrap_or("Update").to_owned(),
                        api_version: e["apiVersion"].as_str().unwrap_or_default().to_owned(),
                        subresource: e["subresource"].as_str().unwrap_or_default().to_owned(),
                        time: e["time"].as_str().unwrap_or_default().to_owned(),
                        fields,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn write_managed(object: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(ManagedEntry::to_json)
        .collect();
    if !object["metadata"].is_object() && object.is_object() {
        object["metadata"] = json!({});
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Who wrote, how.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    pub now: &'a str,
}

/// Fields `config` would change that other managers own: `(manager, path)`.
pub fn apply_conflicts(existing: &Value, config: &Value, writer: &Writer) -> Vec<(String, String)> {
    let managed = read_managed(existing);
    let mut conflicts = Vec::new();
    for path in leaf_paths(config) {
        if value_at(existing, &path) == value_at(config, &path) {
            continue;
        }
        for e in &managed {
            let same = e.manager == writer.manager && e.operation == "Apply";
            if !same && e.fields.iter().any(|f| overlaps(f, &path)) {
                conflicts.push((e.manager.clone(), format!(".{}", path.join("."))));
            }
        }
    }
    conflicts
}

/// Server-side apply of `config` onto `existing` (None = create). Returns the new object
/// with its `managedFields` (conflicts must have been checked or forced first).
pub fn apply(existing: Option<&Value>, config: &Value, writer: &Writer, force: bool) -> Value {
    let config_paths = leaf_paths(config);
    let mut managed = existing.map(read_managed).unwrap_or_default();
    let mut object = existing.cloned().unwrap_or_else(|| json!({}));

    let mine = managed.iter().position(|e| {
        e.manager == writer.manager && e.operation == "Apply" && e.subresource == writer.subresource
    });
    let previous: BTreeSet<FieldPath> = mine.map(|i| managed[i].fields.clone()).unwrap_or_default();

    // Fields this manager stops applying go away unless someone else owns them, and so do
    // the maps they leave empty that the config no longer names (as structured-merge-diff
    // removes `f:a` with its last `f:a.f:b`).
    let owned_elsewhere = |path: &[String]| {
        managed
            .iter()
            .enumerate()
            .any(|(i, e)| Some(i) != mine && e.fields.iter().any(|f| overlaps(f, path)))
    };
    for path in previous.difference(&config_paths) {
        if owned_elsewhere(path) {
            continue;
        }
        remove_at(&mut object, path);
        for depth in (1..path.len()).rev() {
            let parent = &path[..depth];
            let emptied = value_at(&object, parent)
                .and_then(Value::as_object)
                .is_some_and(serde_json::Map::is_empty);
            let named = config_paths.iter().any(|c| c.starts_with(parent));
            if !emptied || named || owned_elsewhere(parent) {
                break;
            }
            remove_at(&mut object, parent);
        }
    }
    apply_merge(&mut object, config);

    // Forcing takes the conflicting fields from their owners; applying the value a field
    // already has shares it.
    if force {
        let before = existing.unwrap_or(&Value::Null);
        let taken: Vec<&FieldPath> = config_paths
            .iter()
            .filter(|p| value_at(before, p) != value_at(config, p))
            .collect();
        for (i, e) in managed.iter_mut().enumerate() {
            if Some(i) != mine {
                e.fields.retain(|f| !taken.iter().any(|p| overlaps(f, p)));
            }
        }
    }
    let entry = ManagedEntry {
        manager: writer.manager.to_owned(),
        operation: "Apply".into(),
        api_version: writer.api_version.to_owned(),
        subresource: writer.subresource.to_owned(),
        time: writer.now.to_owned(),
        fields: config_paths,
    };
    match mine {
        Some(i) => {
            // Keep the timestamp when nothing this manager owns changed.
            let unchanged = managed[i].fields == entry.fields;
            let time = if unchanged {
                managed[i].time.clone()
            } else {
                entry.time.clone()
            };
            managed[i] = ManagedEntry { time, ..entry };
        }
        None => managed.push(entry),
    }
    write_managed(&mut object, &managed);
    object
}

/// Records a non-apply write: the writer owns every field it added or changed; fields it
/// changed or removed are taken from other managers.
pub fn record_update(old: Option<&Value>, new: &mut Value, writer: &Writer) {
    let empty = Value::Null;
    let old_v = old.unwrap_or(&empty);
    let old_paths = leaf_paths(old_v);
    let new_paths = leaf_paths(new);
    let changed: BTreeSet<FieldPath> = new_paths
        .iter()
        .filter(|p| value_at(old_v, p) != value_at(new, p))
        .cloned()
        .collect();
    let removed: BTreeSet<FieldPath> = old_paths.difference(&new_paths).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        return;
    }
    let mut managed = old.map(read_managed).unwrap_or_default();
    for e in managed.iter_mut() {
        e.fields
            .retain(|f| !changed.iter().chain(removed.iter()).any(|p| overlaps(f, p)));
    }
    match managed.iter_mut().find(|e| {
        e.manager == writer.manager
            && e.operation == "Update"
            && e.subresource == writer.subresource
    }) {
        Some(e) => {
            e.fields.extend(changed);
            e.time = writer.now.to_owned();
        }
        None => managed.push(ManagedEntry {
            manager: writer.manager.to_owned(),
            operation: "Update".into(),
            api_version: writer.api_version.to_owned(),
            subresource: writer.subresource.to_owned(),
            time: writer.now.to_owned(),
            fields: changed,
        }),
    }
    write_managed(new, &managed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "v1",
            subresource: "",
            now: "2026-01-01T00:00:00Z",
        }
    }

    #[test]
    fn apply_removes_fields_the_manager_stopped_applying() {
        let first = apply(
            None,
            &json!({"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}, "data": {"k": "v"}}),
            &w("op"),
            false,
        );
        let second = apply(
            Some(&first),
            &json!({"metadata": {"name": "x", "labels": {"a": "1"}}}),
            &w("op"),
            false,
        );
        assert_eq!(second["metadata"]["labels"], json!({"a": "1"}));
        assert!(
            second.get("data").is_none(),
            "an emptied map goes too: {second}"
        );
        let managed = read_managed(&second);
        assert_eq!(managed.len(), 1);
        assert!(managed[0].fields.contains(&vec![
            "metadata".to_string(),
            "labels".into(),
            "a".into()
        ]));
    }

    #[test]
    fn another_managers_changed_field_conflicts_until_forced() {
        let applied = apply(None, &json!({"spec": {"replicas": 3}}), &w("op"), false);
        let mut scaled = applied.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(Some(&applied), &mut scaled, &w("kubectl"));
        let conflicts = apply_conflicts(&scaled, &json!({"spec": {"replicas": 3}}), &w("op"));
        assert_eq!(
            conflicts,
            vec![("kubectl".to_string(), ".spec.replicas".to_string())]
        );
        let forced = apply(
            Some(&scaled),
            &json!({"spec": {"replicas": 3}}),
            &w("op"),
            true,
        );
        assert_eq!(forced["spec"]["replicas"], 3);
        assert!(apply_conflicts(&forced, &json!({"spec": {"replicas": 4}}), &w("op")).is_empty());
    }

    #[test]
    fn fields_v1_round_trips() {
        let paths: BTreeSet<FieldPath> = [
            vec!["spec".to_string(), "a".into()],
            vec!["metadata".into(), "labels".into(), "x".into()],
        ]
        .into();
        let mut out = BTreeSet::new();
        decode_fields(&encode_fields(&paths), Vec::new(), &mut out);
        assert_eq!(out, paths);
    }
}
