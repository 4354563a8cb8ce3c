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

    fn run(&mut self) -> Result<Id, ModelError> {
        let mut stack: Vec<Item> = Vec::new();
        let mut memo: HashMap<usize, Id> = HashMap::new();
        loop {
            let op = self.u8()?;
            match op {
                // PROTO n
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(ModelError::unsupported(format!(
                            "pickle protocol {proto} (this reader knows 0 to 5)"
                        )));
                    }
                }
                // FRAME n: frames only group opcodes; the stream is read as one.
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return pop(&mut stack),
                b'(' => {
                    if stack.len() >= MAX_STACK {
                        return Err(ModelError::invalid("the pickle's stack is too deep"));
                    }
                    stack.push(Item::Mark);
                }
                b'0' => {
                    stack.pop().ok_or_else(underflow)?;
                }
                b'1' => {
                    pop_mark(&mut stack)?;
                }
                b'2' => {
                    let top = peek(&stack)?;
                    push_id(&mut stack, top)?;
                }
                b'N' => self.push(&mut stack, Obj::None)?,
                0x88 => self.push(&mut stack, Obj::Bool(true))?,
                0x89 => self.push(&mut stack, Obj::Bool(false))?,
                // INT (text), also protocol 0's booleans I01/I00
                b'I' => {
                    let line = self.line()?.to_owned();
                    let obj = match line.as_str() {
                        "01" => Obj::Bool(true),
                        "00" => Obj::Bool(false),
                        text => Obj::Int(text.trim().parse().map_err(|_| {
                            ModelError::invalid(format!("bad pickle integer {text:?}"))
                        })?),
                    };
                    self.push(&mut stack, obj)?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.le::<4>()?);
                    self.push(&mut stack, Obj::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(&mut stack, Obj::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le::<2>()?);
                    self.push(&mut stack, Obj::Int(i64::from(v)))?;
                }
                // LONG (text)
                b'L' => {
                    let line = self.line()?.trim_end_matches('L').to_owned();
                    let obj = line.parse::<i64>().map(Obj::Int).unwrap_or(Obj::BigInt);
                    self.push(&mut stack, obj)?;
                }
                // LONG1 / LONG4: little-endian two's complement
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        usize::from(self.u8()?)
                    } else {
                        self.len_u32()?
                    };
                    let raw = self.take(n)?;
                    let obj = long_from_bytes(raw);
                    self.push(&mut stack, obj)?;
                }
                b'F' => {
                    let line = self.line()?.to_owned();
                    let v: f64 = line
                        .trim()
                        .parse()
                        .map_err(|_| ModelError::invalid(format!("bad pickle float {line:?}")))?;
                    self.push(&mut stack, Obj::Float(v))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le::<8>()?);
                    self.push(&mut stack, Obj::Float(v))?;
                }
                // STRING (protocol 0 quoted text): kept as text
                b'S' => {
                    let line = self.line()?.to_owned();
                    let inner = line
                        .strip_prefix(['\'', '"'])
                        .and_then(|l| l.strip_suffix(['\'', '"']))
                        .unwrap_or(&line)
                        .to_owned();
                    self.push(&mut stack, Obj::Str(inner))?;
                }
                // BINSTRING / SHORT_BINSTRING (Python 2 str): bytes, as text when UTF-8
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        self.len_u32()?
                    } else {
                        usize::from(self.u8()?)
                    };
                    let raw = self.take(n)?.to_vec();
                    let obj = match String::from_utf8(raw) {
                        Ok(s) => Obj::Str(s),
                        Err(e) => Obj::Bytes(e.into_bytes()),
                    };
                    self.push(&mut stack, obj)?;
                }
                // UNICODE (raw-unicode-escape text line)
                b'V' => {
                    let line = self.line()?.to_owned();
                    self.push(&mut stack, Obj::Str(line))?;
                }
                b'X' => {
                    let n = self.len_u32()?;
                    let s = self.text(n)?;
                    self.push(&mut stack, Obj::Str(s))?;
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let s = self.text(n)?;
                    self.push(&mut stack, Obj::Str(s))?;
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let s = self.text(n)?;
                    self.push(&mut stack, Obj::Str(s))?;
                }
                // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.len_u32()?,
                        b'C' => usize::from(self.u8()?),
                        _ => self.len_u64()?,
                    };
                    let raw = self.take(n)?.to_vec();
                    self.push(&mut stack, Obj::Bytes(raw))?;
                }
                0x97 => {
                    return Err(ModelError::unsupported(
                        "the pickle uses out-of-band buffers (NEXT_BUFFER), which a file cannot carry",
                    ));
                }
                // READONLY_BUFFER: no effect on data
                0x98 => {}
                b']' => self.push(&mut stack, Obj::List(Vec::new()))?,
                b')' => self.push(&mut stack, Obj::Tuple(Vec::new()))?,
                b'}' => self.push(&mut stack, Obj::Dict(Vec::new()))?,
                0x8f => self.push(&mut stack, Obj::Set(Vec::new()))?,
                b'l' => {
                    let items = pop_mark(&mut stack)?;
                    self.push(&mut stack, Obj::List(items))?;
                }
                b't' => {
                    let items = pop_mark(&mut stack)?;
                    self.push(&mut stack, Obj::Tuple(items))?;
                }
                0x91 => {
                    let items = pop_mark(&mut stack)?;
                    self.push(&mut stack, Obj::Set(items))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(pop(&mut stack)?);
                    }
                    items.reverse();
                    self.push(&mut stack, Obj::Tuple(items))?;
                }
                b'd' => {
                    let items = pop_mark(&mut stack)?;
                    let pairs = pairs(&items)?;
                    self.push(&mut stack, Obj::Dict(pairs))?;
                }
                b'a' => {
                    let value = pop(&mut stack)?;
                    let target = peek(&stack)?;
                    self.extend_list(target, &[value])?;
                }
                b'e' => {
                    let items = pop_mark(&mut stack)?;
                    let target = peek(&stack)?;
                    self.extend_list(target, &items)?;
                }
                0x90 => {
                    let items = pop_mark(&mut stack)?;
                    let target = peek(&stack)?;
                    match self.objects.get_mut(target) {
                        Obj::Set(set) => set.extend(items),
                        _ => return Err(ModelError::invalid("ADDITEMS on something not a set")),
                    }
                }
                b's' => {
                    let value = pop(&mut stack)?;
                    let key = pop(&mut stack)?;
                    let target = peek(&stack)?;
                    self.extend_dict(target, &[(key, value)])?;
                }
                b'u' => {
                    let items = pop_mark(&mut stack)?;
                    let target = peek(&stack)?;
                    let pairs = pairs(&items)?;
                    self.extend_dict(target, &pairs)?;
                }
                // GLOBAL "module\nname\n"
                b'c' => {
                    let module = self.line()?.to_owned();
                    let name = self.line()?.to_owned();
                    let obj = global(module, name)?;
                    self.push(&mut stack, obj)?;
                }
                0x93 => {
                    let name = pop(&mut stack)?;
                    let module = pop(&mut stack)?;
                    let (Some(module), Some(name)) =
                        (self.objects.as_str(module), self.objects.as_str(name))
                    else {
                        return Err(ModelError::invalid("STACK_GLOBAL without text names"));
                    };
                    let obj = global(module.to_owned(), name.to_owned())?;
                    self.push(&mut stack, obj)?;
                }
                // REDUCE: callable(*args)
                b'R' => {
                    let args = pop(&mut stack)?;
                    let callable = pop(&mut stack)?;
                    let obj = self.call(callable, args)?;
                    self.push(&mut stack, obj)?;
                }
                // NEWOBJ: cls.__new__(cls, *args)
                0x81 => {
                    let args = pop(&mut stack)?;
                    let cls = pop(&mut stack)?;
                    let obj = self.call(cls, args)?;
                    self.push(&mut stack, obj)?;
                }
                // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
                0x92 => {
                    let _kwargs = pop(&mut stack)?;
                    let args = pop(&mut stack)?;
                    let cls = pop(&mut stack)?;
                    let obj = self.call(cls, args)?;
                    self.push(&mut stack, obj)?;
                }
                b'b' => {
                    let state = pop(&mut stack)?;
                    let target = peek(&stack)?;
                    self.build(target, state)?;
                    if self.is_joblib_wrapper(target) {
                        let array = self.read_joblib_array(target)?;
                        *self.objects.get_mut(target) = Obj::Array(array);
                    }
                }
                // PUT (text), BINPUT, LONG_BINPUT, MEMOIZE
                b'p' | b'q' | b'r' | 0x94 => {
                    let index = match op {
                        b'p' => self
                            .line()?
                            .trim()
                            .parse::<usize>()
                            .map_err(|_| ModelError::invalid("bad pickle memo index"))?,
                        b'q' => usize::from(self.u8()?),
                        b'r' => self.len_u32()?,
                        _ => memo.len(),
                    };
                    if memo.len() >= MAX_MEMO {
                        return Err(ModelError::invalid("the pickle's memo is too large"));
                    }
                    memo.insert(index, peek(&stack)?);
                }
                // GET (text), BINGET, LONG_BINGET
                b'g' | b'h' | b'j' => {
                    let index = match op {
                        b'g' => self
                            .line()?
                            .trim()
                            .parse::<usize>()
                            .map_err(|_| ModelError::invalid("bad pickle memo index"))?,
                        b'h' => usize::from(self.u8()?),
                        _ => self.len_u32()?,
                    };
                    let id = *memo.get(&index).ok_or_else(|| {
                        ModelError::invalid(format!(
                            "the pickle refers to memo entry {index}, which was never stored"
                        ))
                    })?;
                    push_id(&mut stack, id)?;
                }
                b'P' | b'Q' => {
                    return Err(ModelError::unsupported(
                        "the pickle uses persistent ids, which only the program that wrote it can resolve",
                    ));
                }
                b'i' | b'o' | 0x82..=0x84 => {
                    return Err(ModelError::unsupported(format!(
                        "pickle opcode {op:#04x} (INST/OBJ/EXT) is not supported"
                    )));
                }
                other => {
                    return Err(ModelError::invalid(format!(
                        "not a pickle: unknown opcode {other:#04x} at byte {}",
                        self.pos - 1
                    )));
                }
            }
        }
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
mod tests {
    use super::*;

    #[test]
    fn objects_are_capped_by_the_file_size() {
        // PROTO 2, then "push None, pop" a million times: two bytes per ~100-byte object.
        let mut bomb = vec![0x80, 2];
        bomb.extend(b"N0".repeat(1_000_000));
        bomb.extend(b"N.");
        let e = read_pickle(&bomb).unwrap_err().to_string();
        assert!(
            e.contains("makes more than 125000 objects, more than its size allows"),
            "{e}"
        );
        // Small pickles keep a floor of 1,024 objects.
        let mut small = vec![0x80, 2];
        small.extend(b"N0".repeat(500));
        small.extend(b"N.");
        assert!(read_pickle(&small).is_ok());
    }

    /// `pickle.dumps({"a": [1, 2.5, "x"], "b": (True, None)}, protocol=2)`
    const SIMPLE: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00xq\x03eX\x01\x00\x00\x00bq\x04\x88N\x86q\x05u.";

    #[test]
    fn plain_containers_are_read_as_data() {
        let (objects, root) = read_pickle(SIMPLE).unwrap();
        let entries = objects.dict_entries(root).unwrap();
        let a = objects.items(entries["a"]).unwrap();
        assert_eq!(objects.as_i64(a[0]), Some(1));
        assert_eq!(objects.as_f64(a[1]), Some(2.5));
        assert_eq!(objects.as_str(a[2]), Some("x"));
        let b = objects.items(entries["b"]).unwrap();
        assert_eq!(objects.as_bool(b[0]), Some(true));
        assert!(objects.is_none(b[1]));
    }

    #[test]
    fn a_global_off_the_allow_list_is_refused_by_name() {
        // pickle.dumps of an object whose __reduce__ is (os.system, ("touch /tmp/x",)), protocol 2
        let hostile =
            b"\x80\x02cposix\nsystem\nq\x00X\x0b\x00\x00\x00touch /tmp/xq\x01\x85q\x02Rq\x03.";
        let err = read_pickle(hostile).unwrap_err().to_string();
        assert!(err.contains("posix.system"), "{err}");
        assert!(err.contains("allow-list"), "{err}");
    }

    #[test]
    fn truncated_and_oversized_lengths_fail_without_allocating() {
        let err = read_pickle(&SIMPLE[..SIMPLE.len() / 2])
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated"), "{err}");
        // BINBYTES8 claiming 2^60 bytes.
        let mut huge = b"\x80\x04\x8e".to_vec();
        huge.extend_from_slice(&(1u64 << 60).to_le_bytes());
        huge.extend_from_slice(b"abc.");
        let err = read_pickle(&huge).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        assert!(read_pickle(b"").is_err());
        assert!(read_pickle(b"\x80\x02.").is_err(), "STOP on an empty stack");
        assert!(
            read_pickle(b"\x80\x02h\x07.")
                .unwrap_err()
                .to_string()
                .contains("memo entry 7")
        );
    }

    #[test]
    fn compressed_joblib_files_are_refused_with_the_fix() {
        let err = read_pickle(&[0x78, 0x9c, 1, 2, 3]).unwrap_err().to_string();
        assert!(err.contains("compress=0"), "{err}");
    }

    #[test]
    fn big_and_negative_longs_decode() {
        assert_eq!(long_from_bytes(&[0xff]), Obj::Int(-1));
        assert_eq!(long_from_bytes(&[0x00, 0x01]), Obj::Int(256));
        assert_eq!(long_from_bytes(&[0; 9]), Obj::BigInt);
    }
}
