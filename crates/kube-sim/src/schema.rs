//! Structural-schema handling for custom resources, as the API server does it on every
//! write: defaulting (`default`), pruning of unknown fields, then validation.
//!
//! Validated: `type` (with `nullable`, `x-kubernetes-int-or-string`), `properties`,
//! `required`, `additionalProperties`, `items`, `enum`, `minimum`/`maximum` (and the
//! exclusive forms), `minLength`/`maxLength`, `minItems`/`maxItems`, `minProperties`/
//! `maxProperties`, `oneOf`/`anyOf`/`allOf`/`not`.
//! Not evaluated (accepted as valid): `pattern`, `format`, and CEL rules in
//! `x-kubernetes-validations`.

use serde_json::{Map, Value};

pub type Cause = (String, String);

/// Defaults, prunes and validates `object` (a whole custom resource) in place.
pub fn admit(schema: &Value, object: &mut Value) -> Vec<Cause> {
    apply_defaults(schema, object);
    prune(schema, object, true);
    let mut causes = Vec::new();
    validate(schema, object, "", &mut causes);
    causes
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == true
}

fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (name, prop) in props {
                    if !map.contains_key(name)
                        && let Some(d) = prop.get("default")
                    {
                        map.insert(name.clone(), d.clone());
                    }
                    if let Some(child) = map.get_mut(name) {
                        apply_defaults(prop, child);
                    }
                }
            }
            if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for child in map.values_mut() {
                    apply_defaults(additional, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|i| i.is_object()) {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

fn prune(schema: &Value, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            if preserves_unknown(schema) && schema.get("properties").is_none() {
                return;
            }
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties");
            if let Some(props) = props {
                let keep_unknown = preserves_unknown(schema)
                    || additional.is_some_and(|a| a == true || a.is_object());
                if !keep_unknown {
                    map.retain(|k, _| {
                        props.contains_key(k)
                            || (root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                    });
                }
                for (k, child) in map.iter_mut() {
                    if let Some(p) = props.get(k) {
                        prune(p, child, false);
                    }
                }
            } else if let Some(a) = additional.filter(|a| a.is_object()) {
                for child in map.values_mut() {
                    prune(a, child, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|i| i.is_object()) {
                for item in items {
                    prune(item_schema, item, false);
                }
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn field(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn validate(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let shown = if path.is_empty() { "<root>" } else { path };
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !matches!(type_name(value), "integer" | "string") {
            causes.push((
                shown.into(),
                format!("Invalid value: {value}: must be an integer or a string"),
            ));
        }
    } else if let Some(t) = schema["type"].as_str() {
        let actual = type_name(value);
        let ok = actual == t || (t == "number" && actual == "integer");
        if !ok {
            causes.push((
                shown.into(),
                format!(
                    "Invalid value: \"{actual}\": {shown} in body must be of type {t}: \"{actual}\""
                ),
            ));
            return;
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        let listed: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        causes.push((
            shown.into(),
            format!(
                "Unsupported value: {value}: supported values: {}",
                listed.join(", ")
            ),
        ));
    }
    bounds(schema, value, shown, causes);
    match value {
        Value::Object(map) => object_rules(schema, map, path, causes),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|i| i.is_object()) {
                for (i, item) in items.iter().enumerate() {
                    validate(item_schema, item, &format!("{path}[{i}]"), causes);
                }
            }
        }
        _ => {}
    }
    combinators(schema, value, path, shown, causes);
}

fn bounds(schema: &Value, value: &Value, shown: &str, causes: &mut Vec<Cause>) {
    let mut fail = |m: String| causes.push((shown.to_owned(), m));
    if let Some(x) = value.as_f64() {
        let exclusive_min = schema["exclusiveMinimum"] == true;
        let exclusive_max = schema["exclusiveMaximum"] == true;
        if let Some(min) = schema["minimum"].as_f64()
            && (x < min || (exclusive_min && x == min))
        {
            fail(format!(
                "Invalid value: {value}: {shown} in body should be greater than or equal to {min}"
            ));
        }
        if let Some(max) = schema["maximum"].as_f64()
            && (x > max || (exclusive_max && x == max))
        {
            fail(format!(
                "Invalid value: {value}: {shown} in body should be less than or equal to {max}"
            ));
        }
    }
    let len = match value {
        Value::String(s) => Some((s.chars().count(), "Length", "chars long")),
        Value::Array(a) => Some((a.len(), "Items", "items")),
        Value::Object(o) => Some((o.len(), "Properties", "properties")),
        _ => None,
    };
    if let Some((n, suffix, unit)) = len {
        if let Some(min) = schema[format!("min{suffix}")].as_u64()
            && (n as u64) < min
        {
            fail(format!(
                "Invalid value: {value}: {shown} in body should be at least {min} {unit}"
            ));
        }
        if let Some(max) = schema[format!("max{suffix}")].as_u64()
            && (n as u64) > max
        {
            fail(format!(
                "Too long: {shown} may not have more than {max} {unit}"
            ));
        }
    }
}

fn object_rules(schema: &Value, map: &Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    if let Some(required) = schema["required"].as_array() {
        for r in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                causes.push((field(path, r), "Required value".into()));
            }
        }
    }
    let props = schema["properties"].as_object();
    for (k, child) in map {
        if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(p) = props.and_then(|p| p.get(k)) {
            validate(p, child, &field(path, k), causes);
        } else if let Some(a) = schema.get("additionalProperties") {
            if a.is_object() {
                validate(a, child, &field(path, k), causes);
            } else if *a == false {
                causes.push((field(path, k), "Forbidden: additional property".into()));
            }
        }
    }
}

fn passes(schema: &Value, value: &Value, path: &str) -> bool {
    let mut c = Vec::new();
    validate(schema, value, path, &mut c);
    c.is_empty()
}

fn combinators(schema: &Value, value: &Value, path: &str, shown: &str, causes: &mut Vec<Cause>) {
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            validate(s, value, path, causes);
        }
    }
    if let Some(any) = schema["anyOf"].as_array()
        && !any.iter().any(|s| passes(s, value, path))
    {
        causes.push((
            shown.into(),
            "Invalid value: must validate at least one schema (anyOf)".into(),
        ));
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let n = one.iter().filter(|s| passes(s, value, path)).count();
        if n != 1 {
            causes.push((
                shown.into(),
                format!(
                    "Invalid value: must validate one and only one schema (oneOf); {n} matched"
                ),
            ));
        }
    }
    if let Some(not) = schema.get("not").filter(|n| n.is_object())
        && passes(not, value, path)
    {
        causes.push((
            shown.into(),
            "Invalid value: must not validate the schema (not)".into(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "replicas": {"type": "integer", "minimum": 0, "default": 1},
                "mode": {"type": "string", "enum": ["A", "B"]},
                "alias": {"type": "string"}, "version": {"type": "string"}
            },
            "oneOf": [{"required": ["alias"]}, {"required": ["version"]}]
        }}})
    }

    #[test]
    fn defaults_are_filled_and_unknown_fields_pruned() {
        let mut o = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
            "spec": {"name": "a", "alias": "c", "extra": 1}, "junk": true});
        assert!(admit(&schema(), &mut o).is_empty());
        assert_eq!(o["spec"]["replicas"], 1);
        assert!(o["spec"].get("extra").is_none());
        assert!(o.get("junk").is_none());
        assert_eq!(o["metadata"]["name"], "n");
    }

    #[test]
    fn violations_name_the_field() {
        let mut o =
            json!({"spec": {"replicas": "three", "mode": "C", "alias": "a", "version": "1"}});
        let causes = admit(&schema(), &mut o);
        let text = format!("{causes:?}");
        assert!(
            text.contains("spec.name") && text.contains("Required value"),
            "{text}"
        );
        assert!(text.contains("must be of type integer"), "{text}");
        assert!(text.contains("Unsupported value"), "{text}");
        assert!(text.contains("oneOf"), "{text}");
    }
}
