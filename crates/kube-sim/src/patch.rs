//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.
//!
//! Strategic merge is approximated the way it matters for the objects this simulator
//! serves: maps merge recursively, `null` deletes, and lists of objects merge by their
//! natural key (`name`, `containerPort`, `port`, `mountPath`, `type`); other lists are
//! replaced. `$`-directives (`$setElementOrder`, `$retainKeys`, `$patch`) are ignored.

use serde_json::{Map, Value};

use crate::status::ApiError;

pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &ops).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the JSON patch cannot be applied: {e}"),
        )
    })
}

const MERGE_KEYS: &[&str] = &["name", "containerPort", "port", "mountPath", "type", "ip"];

fn merge_key(items: &[Value], patch_items: &[Value]) -> Option<&'static str> {
    MERGE_KEYS.iter().copied().find(|k| {
        !patch_items.is_empty()
            && items
                .iter()
                .chain(patch_items)
                .all(|i| i.get(*k).is_some_and(|v| !v.is_null()))
    })
}

pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if key.starts_with('$') {
            continue;
        }
        match value {
            Value::Null => {
                target_map.remove(key);
            }
            Value::Object(_) => {
                let entry = target_map.entry(key.clone()).or_insert(Value::Null);
                strategic_merge(entry, value);
            }
            Value::Array(patch_items) => {
                let existing = target_map.get(key).and_then(Value::as_array).cloned();
                match existing
                    .as_deref()
                    .and_then(|items| merge_key(items, patch_items).map(|k| (items.to_vec(), k)))
                {
                    Some((mut items, k)) => {
                        for p in patch_items {
                            match items.iter_mut().find(|i| i[k] == p[k]) {
                                Some(i) => strategic_merge(i, p),
                                None => items.push(p.clone()),
                            }
                        }
                        target_map.insert(key.clone(), Value::Array(items));
                    }
                    None => {
                        target_map.insert(key.clone(), value.clone());
                    }
                }
            }
            _ => {
                target_map.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_containers_by_name_and_deletes_nulls() {
        let mut d = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "a", "image": "x:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "b", "image": "y:1"}
        ]}}}, "metadata": {"labels": {"k": "v", "gone": "x"}}});
        strategic_merge(
            &mut d,
            &json!({"spec": {"template": {"spec": {"containers": [
                {"name": "a", "image": "x:2", "env": [{"name": "B", "value": "2"}]}
            ]}}}, "metadata": {"labels": {"gone": null}}, "$setElementOrder/x": []}),
        );
        let containers = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "x:2");
        assert_eq!(containers[0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(containers[1]["name"], "b");
        assert_eq!(d["metadata"]["labels"], json!({"k": "v"}));
        assert_eq!(d["spec"]["replicas"], 1);
    }

    #[test]
    fn json_patch_ops_apply_or_fail_with_422() {
        let mut d = json!({"a": [1, 2]});
        json_patch(&mut d, &json!([{"op": "add", "path": "/a/-", "value": 3}])).unwrap();
        assert_eq!(d, json!({"a": [1, 2, 3]}));
        let err =
            json_patch(&mut d, &json!([{"op": "test", "path": "/a/0", "value": 9}])).unwrap_err();
        assert_eq!(err.code, 422);
    }
}
