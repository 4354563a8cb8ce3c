//! A pickle reader that never executes anything.
//!
//! It runs pickle's stack machine over the opcodes (protocols 0–5) but builds *data*:
//! `GLOBAL` yields a name checked against the [allow-list](super::allow_list) (anything
//! else fails the load, naming the global), `REDUCE`/`NEWOBJ` record "call this with these
//! arguments" and `BUILD` records the state. The scikit-learn importer then reads the
//! estimators out of that graph.
//!
//! joblib files are pickles too, with numpy arrays written raw right after the `BUILD` of
//! a `NumpyArrayWrapper`; those are read in place (object arrays as a nested pickle).
//!
//! Bounds: every length is checked against the bytes left before anything is allocated;
//! the stack, the memo and nested pickles are capped; the object graph grows by at most
//! one object per opcode.

use std::collections::HashMap;

use super::allow_list;
use super::numpy::{ArrayData, Dtype, NdArray, element_count};
use super::objects::{Id, Obj, Objects};
use crate::error::ModelError;

mod opcodes;

/// Deepest stack of values (and of marks) a pickle may build.
const MAX_STACK: usize = 1 << 20;
/// Most memo entries.
const MAX_MEMO: usize = 1 << 22;
/// How deeply joblib object arrays may nest pickles inside pickles.
const MAX_NESTED_PICKLES: usize = 4;

/// Reads a pickle (or a joblib file) into an object graph; returns the graph and the root.
pub fn read_pickle(bytes: &[u8]) -> Result<(Objects, Id), ModelError> {
    check_not_compressed(bytes)?;
    let mut objects = Objects::with_limit(super::objects::object_limit(bytes.len()));
    let mut reader = Reader {
        bytes,
        pos: 0,
        objects: &mut objects,
        nesting: 0,
    };
    let root = reader.run()?;
    objects.materialize_arrays(bytes.len())?;
    Ok((objects, root))
}

/// joblib's compressed files start with a compressor's magic, not a pickle opcode.
fn check_not_compressed(bytes: &[u8]) -> Result<(), ModelError> {
    let compressed = match bytes {
        [0x78, 0x01 | 0x5e | 0x9c | 0xda, ..] => Some("zlib"),
        [0x1f, 0x8b, ..] => Some("gzip"),
        [b'B', b'Z', b'h', ..] => Some("bz2"),
        [0xfd, b'7', b'z', b'X', b'Z', ..] => Some("xz"),
        [0x5d, 0x00, 0x00, ..] => Some("lzma"),
        [0x04, 0x22, 0x4d, 0x18, ..] => Some("lz4"),
        [b'Z', b'F', 0x00, ..] => Some("joblib zlib"),
        _ => None,
    };
    match compressed {
        Some(kind) => Err(ModelError::unsupported(format!(
            "the file is {kind}-compressed; save it uncompressed (joblib.dump(model, path) \
             with the default compress=0)"
        ))),
        None if bytes.is_empty() => Err(ModelError::invalid("the pickle is empty")),
        None => Ok(()),
    }
}

enum Item {
    Mark,
    Value(Id),
}

struct Reader<'a, 'o> {
    bytes: &'a [u8],
    pos: usize,
    objects: &'o mut Objects,
    nesting: usize,
}

fn truncated() -> ModelError {
    ModelError::invalid("the pickle is truncated")
}

impl Reader<'_, '_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ModelError> {
        let end = self.pos.checked_add(n).ok_or_else(truncated)?;
        let slice = self.bytes.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, ModelError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], ModelError> {
        let mut buf = [0u8; N];
        buf.copy_from_slice(self.take(N)?);
        Ok(buf)
    }

    fn len_u32(&mut self) -> Result<usize, ModelError> {
        Ok(u32::from_le_bytes(self.le::<4>()?) as usize)
    }

    fn len_u64(&mut self) -> Result<usize, ModelError> {
        usize::try_from(u64::from_le_bytes(self.le::<8>()?)).map_err(|_| truncated())
    }

    fn line(&mut self) -> Result<&str, ModelError> {
        let rest = self.bytes.get(self.pos..).ok_or_else(truncated)?;
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(truncated)?;
        let line = std::str::from_utf8(&rest[..end])
            .map_err(|_| ModelError::invalid("the pickle has a text line that is not UTF-8"))?;
        self.pos += end + 1;
        Ok(line)
    }

    fn text(&mut self, n: usize) -> Result<String, ModelError> {
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| ModelError::invalid("the pickle has a string that is not UTF-8"))
    }

    fn push(&mut self, stack: &mut Vec<Item>, obj: Obj) -> Result<(), ModelError> {
        let id = self.objects.push(obj)?;
        push_id(stack, id)
    }

    fn call(&mut self, callable: Id, args: Id) -> Result<Obj, ModelError> {
        if self.objects.global_name(callable).is_none() {
            return Err(ModelError::invalid(format!(
                "the pickle calls {}, which is not an allowed global",
                self.objects.describe(callable)
            )));
        }
        let args = self
            .objects
            .items(args)
            .ok_or_else(|| {
                ModelError::invalid("the pickle calls a global without an argument tuple")
            })?
            .to_vec();
        Ok(Obj::Call {
            callable,
            args,
            state: None,
            list_items: Vec::new(),
            dict_items: Vec::new(),
        })
    }

    fn build(&mut self, target: Id, new_state: Id) -> Result<(), ModelError> {
        match self.objects.get_mut(target) {
            Obj::Call { state, .. } => {
                *state = Some(new_state);
                Ok(())
            }
            _ => Err(ModelError::invalid(
                "BUILD on something that is not an object",
            )),
        }
    }

    fn extend_list(&mut self, target: Id, items: &[Id]) -> Result<(), ModelError> {
        match self.objects.get_mut(target) {
            Obj::List(list) => list.extend_from_slice(items),
            Obj::Call { list_items, .. } => list_items.extend_from_slice(items),
            _ => {
                return Err(ModelError::invalid(
                    "APPEND on something that is not a list",
                ));
            }
        }
        Ok(())
    }

    fn extend_dict(&mut self, target: Id, pairs: &[(Id, Id)]) -> Result<(), ModelError> {
        match self.objects.get_mut(target) {
            Obj::Dict(dict) => dict.extend_from_slice(pairs),
            Obj::Call { dict_items, .. } => dict_items.extend_from_slice(pairs),
            _ => {
                return Err(ModelError::invalid(
                    "SETITEM on something that is not a dict",
                ));
            }
        }
        Ok(())
    }

    fn is_joblib_wrapper(&self, id: Id) -> bool {
        self.objects.class_of(id).as_deref() == Some(allow_list::JOBLIB_ARRAY_WRAPPER)
    }

    /// joblib writes a `NumpyArrayWrapper` (shape, order, dtype) and then the array right
    /// after its `BUILD`: raw bytes (after an alignment pad in joblib ≥ 1.2), or a nested
    /// pickle for object arrays.
    fn read_joblib_array(&mut self, wrapper: Id) -> Result<NdArray, ModelError> {
        let attrs = super::objects::Attrs::of(self.objects, wrapper)?;
        let shape_id = attrs.require("shape")?;
        let shape: Vec<usize> = self
            .objects
            .items(shape_id)
            .ok_or_else(|| ModelError::invalid("joblib array shape is not a tuple"))?
            .iter()
            .map(|&d| {
                self.objects
                    .as_i64(d)
                    .and_then(|d| usize::try_from(d).ok())
                    .ok_or_else(|| ModelError::invalid("joblib array dimension is not a count"))
            })
            .collect::<Result<_, _>>()?;
        let fortran = attrs.get("order").and_then(|o| self.objects.as_str(o)) == Some("F");
        let dtype = Dtype::from_pickled(self.objects, attrs.require("dtype")?, 0)?;
        let aligned = attrs
            .get("numpy_array_alignment_bytes")
            .is_some_and(|a| !self.objects.is_none(a));
        drop(attrs);
        if dtype == Dtype::Object {
            if self.nesting >= MAX_NESTED_PICKLES {
                return Err(ModelError::invalid("joblib object arrays nest too deeply"));
            }
            let mut nested = Reader {
                bytes: self.bytes,
                pos: self.pos,
                objects: self.objects,
                nesting: self.nesting + 1,
            };
            let inner = nested.run()?;
            self.pos = nested.pos;
            let mut budget = self.bytes.len();
            let array = super::numpy::materialize(self.objects, inner, &mut budget)?
                .ok_or_else(|| ModelError::invalid("a joblib object array is not a numpy array"))?;
            if array.shape != shape {
                return Err(ModelError::invalid(
                    "joblib object array shape disagrees with its wrapper",
                ));
            }
            return Ok(array);
        }
        if aligned {
            let pad = usize::from(self.u8()?);
            self.take(pad)?;
        }
        let count = element_count(&shape)?;
        let n = count
            .checked_mul(dtype.itemsize())
            .ok_or_else(|| ModelError::invalid("joblib array size overflows"))?;
        let data = self.take(n)?.to_vec();
        NdArray::new(dtype, shape, fortran, ArrayData::Bytes(data))
    }
}

fn global(module: String, name: String) -> Result<Obj, ModelError> {
    if allow_list::is_allowed(&module, &name) {
        Ok(Obj::Global { module, name })
    } else {
        Err(ModelError::invalid(format!(
            "the pickle refers to `{module}.{name}`, which is not on the allow-list \
             (only numpy arrays and the supported scikit-learn estimators are read){}",
            allow_list::refusal_hint(&module, &name)
        )))
    }
}

fn long_from_bytes(raw: &[u8]) -> Obj {
    if raw.is_empty() {
        return Obj::Int(0);
    }
    if raw.len() > 8 {
        return Obj::BigInt;
    }
    let mut buf = [0u8; 8];
    buf[..raw.len()].copy_from_slice(raw);
    let shift = 64 - 8 * raw.len() as u32;
    Obj::Int(((u64::from_le_bytes(buf) << shift) as i64) >> shift)
}

fn underflow() -> ModelError {
    ModelError::invalid("the pickle pops from an empty stack")
}

fn push_id(stack: &mut Vec<Item>, id: Id) -> Result<(), ModelError> {
    if stack.len() >= MAX_STACK {
        return Err(ModelError::invalid("the pickle's stack is too deep"));
    }
    stack.push(Item::Value(id));
    Ok(())
}

fn pop(stack: &mut Vec<Item>) -> Result<Id, ModelError> {
    match stack.pop() {
        Some(Item::Value(id)) => Ok(id),
        Some(Item::Mark) => Err(ModelError::invalid("the pickle pops a mark as a value")),
        None => Err(underflow()),
    }
}

fn peek(stack: &[Item]) -> Result<Id, ModelError> {
    match stack.last() {
        Some(Item::Value(id)) => Ok(*id),
        Some(Item::Mark) => Err(ModelError::invalid("the pickle uses a mark as a value")),
        None => Err(underflow()),
    }
}

fn pop_mark(stack: &mut Vec<Item>) -> Result<Vec<Id>, ModelError> {
    let mark = stack
        .iter()
        .rposition(|i| matches!(i, Item::Mark))
        .ok_or_else(|| ModelError::invalid("the pickle has no mark to pop to"))?;
    let items = stack
        .drain(mark + 1..)
        .map(|i| match i {
            Item::Value(id) => id,
            Item::Mark => unreachable!("the last mark is at `mark`"),
        })
        .collect();
    stack.pop();
    Ok(items)
}

fn pairs(items: &[Id]) -> Result<Vec<(Id, Id)>, ModelError> {
    if !items.len().is_multiple_of(2) {
        return Err(ModelError::invalid(
            "the pickle has a dict with an odd item count",
        ));
    }
    Ok(items.chunks_exact(2).map(|p| (p[0], p[1])).collect())
}

#[cfg(test)]
mod tests;
