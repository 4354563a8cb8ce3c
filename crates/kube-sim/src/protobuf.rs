//! Kubernetes' protobuf wire format (`application/vnd.kubernetes.protobuf`), as kubectl's
//! generators (`kubectl create namespace|secret|configmap`) and helm's release storage send
//! it: the magic `k8s\0`, then a `runtime.Unknown` envelope (apiVersion, kind, the object's
//! own protobuf bytes). Objects are decoded to (and encoded from) the same JSON objects the
//! store holds, with the schema of the upstream `generated.proto` files in `protos/` (from
//! the kube-rs `k8s-pb` project), compiled once in-process.
//!
//! The proto field names are the JSON names, so the conversion is generic; only the types
//! whose JSON form is not their message form are special: `Time`, `MicroTime`, `Duration`,
//! `Quantity`, `IntOrString`, `RawExtension`, `FieldsV1` and `apiextensions` `JSON`.

use std::sync::OnceLock;

use base64::Engine;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    ReflectMessage, Value as Field,
};
use serde_json::{Map, Value, json};

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

macro_rules! proto {
    ($dir:literal) => {
        (
            concat!($dir, "/generated.proto"),
            include_str!(concat!("../protos/", $dir, "/generated.proto")),
        )
    };
}
/// The vendored `generated.proto` files, by import name.
const PROTOS: &[(&str, &str)] = &[
    proto!("api/core/v1"),
    proto!("api/apps/v1"),
    proto!("api/autoscaling/v1"),
    proto!("api/coordination/v1"),
    proto!("api/events/v1"),
    proto!("api/rbac/v1"),
    proto!("apiextensions-apiserver/pkg/apis/apiextensions/v1"),
    proto!("apimachinery/pkg/api/resource"),
    proto!("apimachinery/pkg/apis/meta/v1"),
    proto!("apimachinery/pkg/runtime"),
    proto!("apimachinery/pkg/runtime/schema"),
    proto!("apimachinery/pkg/util/intstr"),
];

struct Vendored;

impl protox::file::FileResolver for Vendored {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        let (_, source) = PROTOS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| protox::Error::file_not_found(name))?;
        protox::file::File::from_source(name, source)
    }
}

/// The compiled schema (compiled on first use; the vendored files always compile).
pub fn schema() -> Result<&'static DescriptorPool, String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut compiler = protox::Compiler::with_file_resolver(Vendored);
        compiler.include_imports(true);
        compiler
            .open_files(PROTOS.iter().map(|(name, _)| *name))
            .map_err(|e| format!("the vendored protos do not compile: {e}"))?;
        Ok(compiler.descriptor_pool())
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The proto message of `apiVersion` + `kind` (`apps/v1` `Deployment` →
/// `api.apps.v1.Deployment`).
pub fn message_for(api_version: &str, kind: &str) -> Result<MessageDescriptor, String> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let package = match group {
        _ if kind == "Status" => "apimachinery.pkg.apis.meta.v1".to_owned(),
        "" => format!("api.core.{version}"),
        "meta.k8s.io" => format!("apimachinery.pkg.apis.meta.{version}"),
        // JSON schemas have JSON names and union forms their protos do not.
        "apiextensions.k8s.io" => {
            return Err(format!(
                "kube-sim has no protobuf form for {api_version} {kind}"
            ));
        }
        g => format!("api.{}.{version}", g.split('.').next().unwrap_or(g)),
    };
    schema()?
        .get_message_by_name(&format!("{package}.{kind}"))
        .ok_or_else(|| format!("kube-sim has no protobuf schema for {api_version} {kind}"))
}

/// Messages whose JSON form is not an object of their fields.
const SPECIAL: &[&str] = &[
    "apimachinery.pkg.apis.meta.v1.Time",
    "apimachinery.pkg.apis.meta.v1.MicroTime",
    "apimachinery.pkg.apis.meta.v1.Duration",
    "apimachinery.pkg.apis.meta.v1.FieldsV1",
    "apimachinery.pkg.api.resource.Quantity",
    "apimachinery.pkg.util.intstr.IntOrString",
    "apimachinery.pkg.runtime.RawExtension",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON",
];

/// Fields whose message is inlined in the parent's JSON (Go's `json:",inline"`), by
/// message; found by comparing the protos with the OpenAPI definitions of each kind.
const INLINE: &[(&str, &str)] = &[
    ("api.core.v1.ConfigMapEnvSource", "localObjectReference"),
    ("api.core.v1.ConfigMapKeySelector", "localObjectReference"),
    ("api.core.v1.ConfigMapProjection", "localObjectReference"),
    ("api.core.v1.ConfigMapVolumeSource", "localObjectReference"),
    ("api.core.v1.EphemeralContainer", "ephemeralContainerCommon"),
    ("api.core.v1.PersistentVolumeSpec", "persistentVolumeSource"),
    ("api.core.v1.Probe", "handler"),
    ("api.core.v1.SecretEnvSource", "localObjectReference"),
    ("api.core.v1.SecretKeySelector", "localObjectReference"),
    ("api.core.v1.SecretProjection", "localObjectReference"),
    ("api.core.v1.Volume", "volumeSource"),
];

/// The field of `desc` whose message is inlined in its JSON form, if any.
pub fn inline_field(desc: &MessageDescriptor) -> Option<FieldDescriptor> {
    let (_, field) = INLINE.iter().find(|(m, _)| *m == desc.full_name())?;
    desc.get_field_by_name(field)
}

/// The field a JSON key names in `desc`: its own, or one of its inlined message's; the
/// second value is true for the latter.
pub fn field_for_key(desc: &MessageDescriptor, key: &str) -> Option<(FieldDescriptor, bool)> {
    if let Some(f) = desc.get_field_by_name(key) {
        return Some((f, false));
    }
    let inline = inline_field(desc)?;
    let Kind::Message(inner) = inline.kind() else {
        return None;
    };
    field_for_key(&inner, key).map(|(f, _)| (f, true))
}

/// True for a message whose JSON form is not an object of its fields (a time, a
/// quantity, embedded JSON...).
pub fn is_special(full_name: &str) -> bool {
    SPECIAL.contains(&full_name)
}

/// Decodes a protobuf request body to the JSON object it stands for.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let raw = body
        .strip_prefix(MAGIC)
        .ok_or("a protobuf body starts with the magic bytes k8s\\0")?;
    let unknown = schema()?
        .get_message_by_name("apimachinery.pkg.runtime.Unknown")
        .ok_or("no runtime.Unknown in the schema")?;
    let envelope = DynamicMessage::decode(unknown, raw)
        .map_err(|e| format!("invalid protobuf envelope: {e}"))?;
    let type_meta = message_field(&envelope, "typeMeta");
    let text = |m: Option<&DynamicMessage>, name| {
        m.and_then(|m| m.get_field_by_name(name))
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let (api_version, kind) = (text(type_meta, "apiVersion"), text(type_meta, "kind"));
    if !text(Some(&envelope), "contentEncoding").is_empty() {
        return Err("protobuf bodies with a contentEncoding are not supported".into());
    }
    let bytes = envelope
        .get_field_by_name("raw")
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    let object = DynamicMessage::decode(message_for(&api_version, &kind)?, bytes)
        .map_err(|e| format!("invalid protobuf {kind}: {e}"))?;
    let mut json = message_to_json(&object)?;
    if let Value::Object(o) = &mut json {
        o.insert("apiVersion".into(), json!(api_version));
        o.insert("kind".into(), json!(kind));
    }
    Ok(json)
}

/// Encodes a JSON object (with `apiVersion` and `kind`) as a protobuf response body.
pub fn encode(object: &Value) -> Result<Vec<u8>, String> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let message = json_to_message(message_for(api_version, kind)?, object)?;
    let pool = schema()?;
    let unknown = pool
        .get_message_by_name("apimachinery.pkg.runtime.Unknown")
        .ok_or("no runtime.Unknown in the schema")?;
    let type_meta = pool
        .get_message_by_name("apimachinery.pkg.runtime.TypeMeta")
        .ok_or("no runtime.TypeMeta in the schema")?;
    let mut meta = DynamicMessage::new(type_meta);
    meta.set_field_by_name("apiVersion", Field::String(api_version.into()));
    meta.set_field_by_name("kind", Field::String(kind.into()));
    let mut envelope = DynamicMessage::new(unknown);
    envelope.set_field_by_name("typeMeta", Field::Message(meta));
    envelope.set_field_by_name("raw", Field::Bytes(message.encode_to_vec().into()));
    envelope.set_field_by_name("contentType", Field::String(String::new()));
    let mut out = MAGIC.to_vec();
    out.extend(envelope.encode_to_vec());
    Ok(out)
}

fn message_field<'a>(m: &'a DynamicMessage, name: &str) -> Option<&'a DynamicMessage> {
    match m.fields().find(|(f, _)| f.name() == name)?.1 {
        Field::Message(inner) => Some(inner),
        _ => None,
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn int(m: &DynamicMessage, name: &str) -> i64 {
    match m.get_field_by_name(name).as_deref() {
        Some(Field::I64(v)) => *v,
        Some(Field::I32(v)) => i64::from(*v),
        _ => 0,
    }
}

fn bytes(m: &DynamicMessage, name: &str) -> Vec<u8> {
    m.get_field_by_name(name)
        .and_then(|v| v.as_bytes().map(|b| b.to_vec()))
        .unwrap_or_default()
}

fn time_text(m: &DynamicMessage, micro: bool) -> Result<Value, String> {
    let (seconds, nanos) = (int(m, "seconds"), int(m, "nanos"));
    let t = chrono::DateTime::from_timestamp(seconds, u32::try_from(nanos).unwrap_or(0))
        .ok_or_else(|| format!("time {seconds}s out of range"))?;
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Ok(json!(t.format(format).to_string()))
}

/// A message as its Kubernetes JSON form.
fn message_to_json(m: &DynamicMessage) -> Result<Value, String> {
    let name = m.descriptor().full_name().to_owned();
    let embedded = |raw: Vec<u8>| -> Result<Value, String> {
        if raw.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&raw).map_err(|e| format!("{name}: embedded JSON: {e}"))
    };
    match name.as_str() {
        "apimachinery.pkg.apis.meta.v1.Time" => return time_text(m, false),
        "apimachinery.pkg.apis.meta.v1.MicroTime" => return time_text(m, true),
        "apimachinery.pkg.apis.meta.v1.Duration" => {
            return Ok(json!(format!("{}s", int(m, "duration") as f64 / 1e9)));
        }
        "apimachinery.pkg.api.resource.Quantity" => {
            return Ok(m
                .get_field_by_name("string")
                .map_or(Value::Null, |v| json!(v.as_str())));
        }
        "apimachinery.pkg.util.intstr.IntOrString" => {
            return Ok(match int(m, "type") {
                1 => m
                    .get_field_by_name("strVal")
                    .map_or(Value::Null, |v| json!(v.as_str())),
                _ => json!(int(m, "intVal")),
            });
        }
        "apimachinery.pkg.runtime.RawExtension"
        | "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON" => {
            return embedded(bytes(m, "raw"));
        }
        "apimachinery.pkg.apis.meta.v1.FieldsV1" => return embedded(bytes(m, "Raw")),
        _ => {}
    }
    let inline = inline_field(&m.descriptor());
    let mut out = Map::new();
    for (field, value) in m.fields() {
        let json = field_to_json(value)?;
        match (&inline, json) {
            (Some(i), Value::Object(fields)) if *i == field => out.extend(fields),
            (_, json) => {
                out.insert(field.name().to_owned(), json);
            }
        }
    }
    Ok(Value::Object(out))
}

fn field_to_json(value: &Field) -> Result<Value, String> {
    Ok(match value {
        Field::Bool(b) => json!(b),
        Field::I32(v) => json!(v),
        Field::I64(v) => json!(v),
        Field::U32(v) => json!(v),
        Field::U64(v) => json!(v),
        Field::F32(v) => json!(v),
        Field::F64(v) => json!(v),
        Field::String(s) => json!(s),
        Field::Bytes(b) => json!(b64().encode(b)),
        Field::EnumNumber(n) => json!(n),
        Field::Message(m) => message_to_json(m)?,
        Field::List(items) => {
            Value::Array(items.iter().map(field_to_json).collect::<Result<_, _>>()?)
        }
        Field::Map(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let key = match k {
                    MapKey::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                out.insert(key, field_to_json(v)?);
            }
            Value::Object(out)
        }
    })
}

/// A JSON object as the message `desc` (fields the schema does not know are an error, as
/// a typed decoder would refuse them).
fn json_to_message(desc: MessageDescriptor, value: &Value) -> Result<DynamicMessage, String> {
    let name = desc.full_name().to_owned();
    let mut m = DynamicMessage::new(desc.clone());
    let set_raw = |m: &mut DynamicMessage, field: &str, v: &Value| {
        m.set_field_by_name(field, Field::Bytes(v.to_string().into_bytes().into()));
    };
    match name.as_str() {
        "apimachinery.pkg.apis.meta.v1.Time" | "apimachinery.pkg.apis.meta.v1.MicroTime" => {
            let t = chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_default())
                .map_err(|e| format!("{name}: {e}"))?;
            m.set_field_by_name("seconds", Field::I64(t.timestamp()));
            m.set_field_by_name("nanos", Field::I32(t.timestamp_subsec_nanos() as i32));
            return Ok(m);
        }
        "apimachinery.pkg.api.resource.Quantity" => {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            m.set_field_by_name("string", Field::String(text));
            return Ok(m);
        }
        "apimachinery.pkg.util.intstr.IntOrString" => {
            match value {
                Value::String(s) => {
                    m.set_field_by_name("type", Field::I64(1));
                    m.set_field_by_name("strVal", Field::String(s.clone()));
                }
                other => {
                    m.set_field_by_name("type", Field::I64(0));
                    let n = other.as_i64().unwrap_or(0);
                    m.set_field_by_name("intVal", Field::I32(n as i32));
                }
            }
            return Ok(m);
        }
        "apimachinery.pkg.runtime.RawExtension"
        | "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON" => {
            set_raw(&mut m, "raw", value);
            return Ok(m);
        }
        "apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            set_raw(&mut m, "Raw", value);
            return Ok(m);
        }
        _ => {}
    }
    let Value::Object(fields) = value else {
        return Err(format!("{name}: expected an object"));
    };
    let mut inlined = Map::new();
    for (key, v) in fields {
        if v.is_null()
            || ((key == "apiVersion" || key == "kind") && desc.get_field_by_name(key).is_none())
        {
            continue;
        }
        match field_for_key(&desc, key) {
            Some((field, false)) => {
                let converted = json_to_field(&field, v)?;
                m.set_field(&field, converted);
            }
            Some((_, true)) => {
                inlined.insert(key.clone(), v.clone());
            }
            None => return Err(format!("{name} has no field {key:?}")),
        }
    }
    if let (Some(field), false) = (inline_field(&desc), inlined.is_empty()) {
        let converted = json_to_field(&field, &Value::Object(inlined))?;
        m.set_field(&field, converted);
    }
    Ok(m)
}

fn json_to_field(field: &FieldDescriptor, value: &Value) -> Result<Field, String> {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return Err(format!("{}: a map without an entry type", field.name()));
        };
        let value_field = entry.map_entry_value_field();
        let mut out = std::collections::HashMap::new();
        for (k, v) in value.as_object().into_iter().flatten() {
            out.insert(MapKey::String(k.clone()), json_to_single(&value_field, v)?);
        }
        return Ok(Field::Map(out));
    }
    if field.is_list() {
        let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
        return Ok(Field::List(
            items
                .iter()
                .map(|v| json_to_single(field, v))
                .collect::<Result<_, _>>()?,
        ));
    }
    json_to_single(field, value)
}

fn json_to_single(field: &FieldDescriptor, value: &Value) -> Result<Field, String> {
    let wrong = || format!("field {}: unexpected value {value}", field.name());
    Ok(match field.kind() {
        Kind::Bool => Field::Bool(value.as_bool().ok_or_else(wrong)?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Field::I32(value.as_i64().ok_or_else(wrong)? as i32)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Field::I64(value.as_i64().ok_or_else(wrong)?)
        }
        Kind::Uint32 | Kind::Fixed32 => Field::U32(value.as_u64().ok_or_else(wrong)? as u32),
        Kind::Uint64 | Kind::Fixed64 => Field::U64(value.as_u64().ok_or_else(wrong)?),
        Kind::Float => Field::F32(value.as_f64().ok_or_else(wrong)? as f32),
        Kind::Double => Field::F64(value.as_f64().ok_or_else(wrong)?),
        Kind::String => Field::String(value.as_str().ok_or_else(wrong)?.to_owned()),
        Kind::Bytes => Field::Bytes(
            b64()
                .decode(value.as_str().ok_or_else(wrong)?)
                .map_err(|_| wrong())?
                .into(),
        ),
        Kind::Enum(_) => Field::EnumNumber(value.as_i64().ok_or_else(wrong)? as i32),
        Kind::Message(desc) => Field::Message(json_to_message(desc, value)?),
    })
}

/// True when a client accepts protobuf and not JSON (`Accept` lists only protobuf).
pub fn only_protobuf_accepted(accept: &str) -> bool {
    accept.contains(MEDIA_TYPE)
        && !accept.contains("json")
        && !accept.contains("*/*")
        && !accept.contains("yaml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_round_trips_with_its_bytes_times_and_labels() {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "team", "labels": {"a": "b"},
                         "creationTimestamp": "2026-12-01T07:00:00Z", "generation": 3},
            "type": "Opaque",
            "data": {"token": b64().encode("s3cret")},
        });
        let wire = encode(&secret).unwrap();
        assert!(wire.starts_with(MAGIC));
        assert_eq!(decode(&wire).unwrap(), secret);
    }

    #[test]
    fn int_or_string_quantities_and_embedded_json_keep_their_json_form() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "x"}},
                     "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                     "template": {"spec": {"containers": [{"name": "c",
                        "resources": {"limits": {"memory": "256Mi"}},
                        "ports": [{"containerPort": 8080}]}]}}},
        });
        assert_eq!(decode(&encode(&deployment).unwrap()).unwrap(), deployment);
    }

    #[test]
    fn inlined_fields_keep_their_json_place() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c",
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 2},
                "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}}]}],
                "volumes": [{"name": "cache", "emptyDir": {}}]},
        });
        let wire = encode(&pod).unwrap();
        assert_eq!(decode(&wire).unwrap(), pod);
    }

    #[test]
    fn unknown_fields_kinds_and_garbage_are_refused_by_name() {
        let e = encode(&json!({"apiVersion": "v1", "kind": "ConfigMap", "bogus": 1})).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = encode(&json!({"apiVersion": "v1", "kind": "Gizmo"})).unwrap_err();
        assert!(e.contains("Gizmo"), "{e}");
        assert!(decode(b"{\"kind\": \"Secret\"}").is_err());
        assert!(decode(b"k8s\0\xff\xff\xff").is_err());
    }

    #[test]
    fn protobuf_is_answered_only_to_clients_that_take_nothing_else() {
        assert!(only_protobuf_accepted(MEDIA_TYPE));
        assert!(!only_protobuf_accepted(&format!(
            "{MEDIA_TYPE}, application/json"
        )));
        assert!(!only_protobuf_accepted("application/json"));
    }
}
