//! skops files (MLflow 3's default sklearn serialisation): a zip holding `schema.json`, a
//! tree of typed nodes, and one `.npy` file per numeric array. Read into the same object
//! graph as pickles; classes go through the same allow-list.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use serde_json::Value;

use super::allow_list;
use super::npy::read_npy;
use super::numpy::{ArrayData, Dtype, NdArray};
use super::objects::{Id, MAX_DEPTH, Obj, Objects};
use crate::error::ModelError;

/// Most entries a skops zip may have.
const MAX_ENTRIES: usize = 100_000;

/// Reads a skops file; `max_bytes` caps what all its entries may inflate to together.
pub fn read_skops(bytes: &[u8], max_bytes: u64) -> Result<(Objects, Id), ModelError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| ModelError::invalid(format!("not a skops file (zip: {e})")))?;
    if zip.len() > MAX_ENTRIES {
        return Err(ModelError::invalid("the skops file has too many entries"));
    }
    let mut budget = max_bytes;
    let schema = read_entry(&mut zip, "schema.json", &mut budget)?;
    let schema: Value = serde_json::from_slice(&schema)
        .map_err(|e| ModelError::invalid(format!("skops schema.json is not JSON: {e}")))?;
    let mut reader = SkopsReader {
        zip,
        budget,
        objects: Objects::new(),
        memo: HashMap::new(),
        files: HashMap::new(),
    };
    let root = reader.node(&schema, 0)?;
    Ok((reader.objects, root))
}

fn read_entry(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    budget: &mut u64,
) -> Result<Vec<u8>, ModelError> {
    let entry = zip
        .by_name(name)
        .map_err(|e| ModelError::invalid(format!("skops file entry {name:?}: {e}")))?;
    if entry.size() > *budget {
        return Err(ModelError::invalid(format!(
            "skops file entry {name:?} inflates to {} bytes, over the model size limit",
            entry.size()
        )));
    }
    // The declared size (checked above) sizes the buffer once; a read that doubles its way
    // up would hold twice the member at its peak.
    let mut out = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
    // `take` bounds the read even when the declared size lies.
    entry
        .take(*budget + 1)
        .read_to_end(&mut out)
        .map_err(|e| ModelError::invalid(format!("skops file entry {name:?}: {e}")))?;
    if out.len() as u64 > *budget {
        return Err(ModelError::invalid(format!(
            "skops file entry {name:?} inflates past the model size limit"
        )));
    }
    *budget -= out.len() as u64;
    Ok(out)
}

struct SkopsReader<'a> {
    zip: zip::ZipArchive<Cursor<&'a [u8]>>,
    budget: u64,
    objects: Objects,
    /// skops writes a shared object in full each time, with the same `__id__`; the first wins.
    memo: HashMap<u64, Id>,
    files: HashMap<String, Id>,
}

fn field<'v>(node: &'v Value, key: &str) -> Result<&'v Value, ModelError> {
    node.get(key)
        .ok_or_else(|| ModelError::invalid(format!("skops node lacks `{key}`")))
}

fn text<'v>(node: &'v Value, key: &str) -> Result<&'v str, ModelError> {
    field(node, key)?
        .as_str()
        .ok_or_else(|| ModelError::invalid(format!("skops node `{key}` is not text")))
}

impl SkopsReader<'_> {
    fn node(&mut self, node: &Value, depth: usize) -> Result<Id, ModelError> {
        if depth > MAX_DEPTH * 4 {
            return Err(ModelError::invalid("the skops schema nests too deeply"));
        }
        let saved_id = node.get("__id__").and_then(Value::as_u64);
        if let Some(id) = saved_id.and_then(|s| self.memo.get(&s)) {
            return Ok(*id);
        }
        let id = self.new_node(node, depth)?;
        if let Some(saved) = saved_id {
            self.memo.insert(saved, id);
        }
        Ok(id)
    }

    fn children(&mut self, list: &Value, depth: usize) -> Result<Vec<Id>, ModelError> {
        list.as_array()
            .ok_or_else(|| ModelError::invalid("skops node content is not a list"))?
            .iter()
            .map(|n| self.node(n, depth + 1))
            .collect()
    }

    fn global(&mut self, node: &Value) -> Result<Id, ModelError> {
        let module = text(node, "__module__")?;
        let class = text(node, "__class__")?;
        if !allow_list::is_allowed(module, class) {
            return Err(ModelError::invalid(format!(
                "the skops file holds `{module}.{class}`, which is not on the allow-list \
                 (only numpy arrays and the supported scikit-learn estimators are read){}",
                allow_list::refusal_hint(module, class)
            )));
        }
        self.objects.push(Obj::Global {
            module: module.to_owned(),
            name: class.to_owned(),
        })
    }

    fn new_node(&mut self, node: &Value, depth: usize) -> Result<Id, ModelError> {
        let loader = text(node, "__loader__")?;
        let obj = match loader {
            "JsonNode" => json_value(text(node, "content")?)?,
            "DictNode" => {
                let content = field(node, "content")?
                    .as_object()
                    .ok_or_else(|| ModelError::invalid("skops dict content is not an object"))?;
                let mut pairs = Vec::with_capacity(content.len());
                for (k, v) in content {
                    let key = self.objects.push(Obj::Str(k.clone()))?;
                    let value = self.node(v, depth + 1)?;
                    pairs.push((key, value));
                }
                Obj::Dict(pairs)
            }
            "ListNode" => Obj::List(self.children(field(node, "content")?, depth)?),
            "TupleNode" => Obj::Tuple(self.children(field(node, "content")?, depth)?),
            "SetNode" => Obj::Set(self.children(field(node, "content")?, depth)?),
            "ObjectNode" => {
                let callable = self.global(node)?;
                let state = match node.get("content") {
                    Some(c) => Some(self.node(c, depth + 1)?),
                    None => None,
                };
                Obj::Call {
                    callable,
                    args: Vec::new(),
                    state,
                    list_items: Vec::new(),
                    dict_items: Vec::new(),
                }
            }
            "ReduceNode" | "TreeNode" | "LossNode" => {
                let callable = self.global(node)?;
                let args = field(field(node, "__reduce__")?, "args")?;
                let args_id = self.node(args, depth + 1)?;
                let args = self.objects.items(args_id).unwrap_or_default().to_vec();
                let state = match node.get("content") {
                    Some(c) => Some(self.node(c, depth + 1)?),
                    None => None,
                };
                Obj::Call {
                    callable,
                    args,
                    state,
                    list_items: Vec::new(),
                    dict_items: Vec::new(),
                }
            }
            "TypeNode" => {
                let g = self.global(node)?;
                return Ok(g);
            }
            "NdArrayNode" => match text(node, "type")? {
                "numpy" => {
                    let file = text(node, "file")?.to_owned();
                    if let Some(&id) = self.files.get(&file) {
                        return Ok(id);
                    }
                    let bytes = read_entry(&mut self.zip, &file, &mut self.budget)?;
                    let array = read_npy(bytes)
                        .map_err(|e| ModelError::invalid(format!("skops array {file}: {e}")))?;
                    let id = self.objects.push(Obj::Array(array))?;
                    self.files.insert(file, id);
                    return Ok(id);
                }
                "json" => {
                    let shape_id = self.node(field(node, "shape")?, depth + 1)?;
                    let shape: Vec<usize> = self
                        .objects
                        .items(shape_id)
                        .ok_or_else(|| {
                            ModelError::invalid("skops object array shape is not a tuple")
                        })?
                        .iter()
                        .map(|&d| {
                            self.objects
                                .as_i64(d)
                                .and_then(|d| usize::try_from(d).ok())
                                .ok_or_else(|| ModelError::invalid("skops object array dimension"))
                        })
                        .collect::<Result<_, _>>()?;
                    if shape.len() > 64 {
                        return Err(ModelError::invalid(
                            "a skops object array with over 64 dimensions",
                        ));
                    }
                    let rows = self.children(field(node, "content")?, depth)?;
                    let items = if shape.len() > 1 {
                        // `tolist()` of an n-d array: nested lists, flattened here.
                        let mut flat = Vec::new();
                        flatten(&self.objects, &rows, shape.len() - 1, &mut flat)?;
                        flat
                    } else {
                        rows
                    };
                    Obj::Array(NdArray::new(
                        Dtype::Object,
                        shape,
                        false,
                        ArrayData::Objects(items),
                    )?)
                }
                other => {
                    return Err(ModelError::invalid(format!("skops array type {other:?}")));
                }
            },
            "DTypeNode" => return self.node(field(node, "content")?, depth + 1),
            // A defaultdict is read as its plain dict (its factory never runs here).
            "DefaultDictNode" => {
                self.global(node)?;
                return self.node(field(field(node, "content")?, "main")?, depth + 1);
            }
            // Random number generators are kept by estimators but never used to predict.
            "RandomStateNode" | "RandomGeneratorNode" => Obj::None,
            "BytesNode" | "BytearrayNode" => {
                let file = text(node, "file")?.to_owned();
                Obj::Bytes(read_entry(&mut self.zip, &file, &mut self.budget)?)
            }
            other => {
                let module = node
                    .get("__module__")
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                let class = node.get("__class__").and_then(Value::as_str).unwrap_or("?");
                return Err(ModelError::invalid(format!(
                    "the skops file holds `{module}.{class}` as a {other}, which this predictor does not read"
                )));
            }
        };
        self.objects.push(obj)
    }
}

fn flatten(
    objects: &Objects,
    items: &[Id],
    levels: usize,
    out: &mut Vec<Id>,
) -> Result<(), ModelError> {
    for &item in items {
        if levels == 0 {
            out.push(item);
        } else {
            let inner = objects
                .items(item)
                .ok_or_else(|| ModelError::invalid("skops object array rows are not lists"))?
                .to_vec();
            flatten(objects, &inner, levels - 1, out)?;
        }
    }
    Ok(())
}

/// A `JsonNode`'s content: JSON as Python's `json` writes it (with `NaN`, `Infinity`).
fn json_value(content: &str) -> Result<Obj, ModelError> {
    match content {
        "NaN" => return Ok(Obj::Float(f64::NAN)),
        "Infinity" => return Ok(Obj::Float(f64::INFINITY)),
        "-Infinity" => return Ok(Obj::Float(f64::NEG_INFINITY)),
        _ => {}
    }
    let value: Value = serde_json::from_str(content)
        .map_err(|e| ModelError::invalid(format!("skops JSON value: {e}")))?;
    Ok(match value {
        Value::Null => Obj::None,
        Value::Bool(b) => Obj::Bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Obj::Int(i),
            None if n.is_u64() || !content.contains(['.', 'e', 'E']) => Obj::BigInt,
            None => Obj::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Obj::Str(s),
        // Plain JSON containers do not occur as JsonNode content in skops files.
        Value::Array(_) | Value::Object(_) => {
            return Err(ModelError::invalid("skops JSON node holds a container"));
        }
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        out.into_inner()
    }

    #[test]
    fn an_entry_inflating_past_the_limit_is_refused() {
        let bomb = vec![b' '; 8 * 1024 * 1024];
        let file = zip_of(&[("schema.json", &bomb)]);
        assert!(file.len() < 64 * 1024, "the test file should be small");
        let err = read_skops(&file, 1024 * 1024).unwrap_err().to_string();
        assert!(err.contains("model size limit"), "{err}");
    }

    #[test]
    fn classes_off_the_allow_list_and_unknown_nodes_are_refused_by_name() {
        let schema = br#"{"__class__": "Popen", "__module__": "subprocess", "__loader__": "ObjectNode",
            "content": {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode", "content": {}}}"#;
        let err = read_skops(&zip_of(&[("schema.json", schema)]), 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("subprocess.Popen"), "{err}");
        let schema = br#"{"__class__": "partial", "__module__": "functools", "__loader__": "PartialNode", "content": {}}"#;
        let err = read_skops(&zip_of(&[("schema.json", schema)]), 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("functools.partial") && err.contains("PartialNode"),
            "{err}"
        );
        let err = read_skops(b"PK\x03\x04 truncated", 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("zip"), "{err}");
    }
}
