//! Lists of the built-in kinds that server-side apply treats as maps keyed by `name`
//! (structured-merge-diff's `listType: map`: containers, their `env`, volumes). An applied
//! object naming a key twice is refused with kube-apiserver's own message, and nothing is
//! stored — found when the real API server refused an operator Deployment whose `env`
//! named `MODEL_FALLBACK_DIR` twice, which kube-sim had accepted.

use serde_json::Value;

/// List fields keyed by `name` in the built-in kinds' schemas.
const KEYED_BY_NAME: &[&str] = &[
    "containers",
    "initContainers",
    "ephemeralContainers",
    "env",
    "volumes",
];

/// The first list naming a key twice: `<path>: duplicate entries for key [name="<key>"]`.
pub fn duplicate_key(object: &Value) -> Option<String> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    // Built-in groups only: a custom resource's lists are what its own schema says.
    if api_version.contains('.') && !api_version.contains("k8s.io") {
        return None;
    }
    walk(object, &mut String::new())
}

fn walk(value: &Value, path: &mut String) -> Option<String> {
    match value {
        Value::Object(fields) => {
            for (field, child) in fields {
                let len = path.len();
                path.push('.');
                path.push_str(field);
                let found = match child {
                    Value::Array(items) if KEYED_BY_NAME.contains(&field.as_str()) => {
                        keyed(items, path)
                    }
                    other => walk(other, path),
                };
                path.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                path.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        _ => None,
    }
}

fn keyed(items: &[Value], path: &mut String) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    for item in items {
        let Some(name) = item["name"].as_str() else {
            continue;
        };
        if !seen.insert(name) {
            return Some(format!(
                "{path}: duplicate entries for key [name=\"{name}\"]"
            ));
        }
    }
    for item in items {
        let len = path.len();
        let name = item["name"].as_str().unwrap_or_default();
        path.push_str(&format!("[name=\"{name}\"]"));
        let found = walk(item, path);
        path.truncate(len);
        if found.is_some() {
            return found;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_env_naming_a_variable_twice_is_found_with_the_api_servers_path() {
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {
            "containers": [{"name": "predictor", "env": [
                {"name": "A", "value": "1"}, {"name": "B"}, {"name": "A", "value": "2"}]}]}}}});
        assert_eq!(
            duplicate_key(&deployment).as_deref(),
            Some(
                ".spec.template.spec.containers[name=\"predictor\"].env: duplicate entries for key [name=\"A\"]"
            )
        );
        let fine = json!({"apiVersion": "apps/v1", "spec": {"template": {"spec": {
            "containers": [{"name": "a", "env": [{"name": "A"}]}, {"name": "b", "env": [{"name": "A"}]}]}}}});
        assert_eq!(duplicate_key(&fine), None);
        let custom = json!({"apiVersion": "forecast.dev/v1alpha1", "spec": {"env": [{"name": "A"}, {"name": "A"}]}});
        assert_eq!(duplicate_key(&custom), None);
    }
}
