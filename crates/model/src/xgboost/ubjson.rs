//! Universal Binary JSON (the format of XGBoost's `.ubj` models) into `serde_json::Value`,
//! so the `.ubj` and `.json` forms share one reader. Big-endian, optimised containers
//! (`$` type, `#` count) included; every count is checked against the bytes left.

use serde_json::{Map, Number, Value};

use crate::error::ModelError;

/// Deepest nesting accepted (XGBoost models nest about 6 levels).
const MAX_DEPTH: usize = 64;

pub fn parse(bytes: &[u8]) -> Result<Value, ModelError> {
    let mut p = Parser {
        bytes,
        pos: 0,
        budget: bytes.len(),
    };
    let marker = p.marker()?;
    let value = p.value(marker, 0)?;
    Ok(value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Values the document may still hold: one per byte of the file, for the whole
    /// document. A typed container of zero-size elements (`[$Z#L n`) takes no bytes per
    /// element, and sibling containers could each claim the rest of the file again: without
    /// one budget, a 17 KiB file decoded to hundreds of MB.
    budget: usize,
}

fn err(message: impl Into<String>) -> ModelError {
    ModelError::invalid(format!("not a valid UBJSON model: {}", message.into()))
}

impl Parser<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ModelError> {
        let end = self.pos.checked_add(n).ok_or_else(|| err("truncated"))?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| err("truncated"))?;
        self.pos = end;
        Ok(slice)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ModelError> {
        let mut buf = [0u8; N];
        buf.copy_from_slice(self.take(N)?);
        Ok(buf)
    }

    fn marker(&mut self) -> Result<u8, ModelError> {
        loop {
            let m = self.take(1)?[0];
            // 'N' is a no-op padding marker.
            if m != b'N' {
                return Ok(m);
            }
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// An integer of the type `marker` names (lengths and counts).
    fn int(&mut self, marker: u8) -> Result<i64, ModelError> {
        Ok(match marker {
            b'i' => i64::from(i8::from_be_bytes(self.fixed()?)),
            b'U' => i64::from(u8::from_be_bytes(self.fixed()?)),
            b'I' => i64::from(i16::from_be_bytes(self.fixed()?)),
            b'l' => i64::from(i32::from_be_bytes(self.fixed()?)),
            b'L' => i64::from_be_bytes(self.fixed()?),
            other => {
                return Err(err(format!(
                    "expected an integer type, found {:?}",
                    other as char
                )));
            }
        })
    }

    fn length(&mut self) -> Result<usize, ModelError> {
        let marker = self.marker()?;
        let n = self.int(marker)?;
        usize::try_from(n).map_err(|_| err("negative length"))
    }

    fn string(&mut self) -> Result<String, ModelError> {
        let n = self.length()?;
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec()).map_err(|_| err("a string is not UTF-8"))
    }

    fn value(&mut self, marker: u8, depth: usize) -> Result<Value, ModelError> {
        if depth > MAX_DEPTH {
            return Err(err("nested too deeply"));
        }
        self.budget = self.budget.checked_sub(1).ok_or_else(|| {
            err(format!(
                "more values than the file's {} bytes could hold",
                self.bytes.len()
            ))
        })?;
        Ok(match marker {
            b'Z' => Value::Null,
            b'T' => Value::Bool(true),
            b'F' => Value::Bool(false),
            b'i' | b'U' | b'I' | b'l' | b'L' => Value::Number(self.int(marker)?.into()),
            b'd' => float(f64::from(f32::from_be_bytes(self.fixed()?))),
            b'D' => float(f64::from_be_bytes(self.fixed()?)),
            b'C' => Value::String(char::from(self.take(1)?[0]).to_string()),
            b'S' | b'H' => Value::String(self.string()?),
            b'[' => self.array(depth)?,
            b'{' => self.object(depth)?,
            other => return Err(err(format!("unknown marker {:?}", other as char))),
        })
    }

    /// The optional `$type` and `#count` of an optimised container.
    fn container_header(&mut self) -> Result<(Option<u8>, Option<usize>), ModelError> {
        let mut element_type = None;
        if self.bytes.get(self.pos) == Some(&b'$') {
            self.pos += 1;
            element_type = Some(self.take(1)?[0]);
        }
        let mut count = None;
        if self.bytes.get(self.pos) == Some(&b'#') {
            self.pos += 1;
            count = Some(self.length()?);
        } else if element_type.is_some() {
            return Err(err("a typed container without a count"));
        }
        if let (Some(n), Some(t)) = (count, element_type) {
            let size = match t {
                b'i' | b'U' | b'C' => 1,
                b'I' => 2,
                b'l' | b'd' => 4,
                b'L' | b'D' => 8,
                _ => 1,
            };
            if n.checked_mul(size).is_none_or(|b| b > self.remaining()) {
                return Err(err(format!(
                    "a container claims {n} items, more than the file holds"
                )));
            }
        } else if let Some(n) = count
            && n > self.remaining()
        {
            return Err(err(format!(
                "a container claims {n} items, more than the file holds"
            )));
        }
        Ok((element_type, count))
    }

    fn array(&mut self, depth: usize) -> Result<Value, ModelError> {
        let (element_type, count) = self.container_header()?;
        let mut items = Vec::with_capacity(count.unwrap_or(0).min(self.budget));
        match count {
            Some(n) => {
                for _ in 0..n {
                    let marker = match element_type {
                        Some(t) => t,
                        None => self.marker()?,
                    };
                    items.push(self.value(marker, depth + 1)?);
                }
            }
            None => loop {
                let marker = self.marker()?;
                if marker == b']' {
                    break;
                }
                items.push(self.value(marker, depth + 1)?);
            },
        }
        Ok(Value::Array(items))
    }

    fn object(&mut self, depth: usize) -> Result<Value, ModelError> {
        let (element_type, count) = self.container_header()?;
        let mut map = Map::new();
        match count {
            Some(n) => {
                for _ in 0..n {
                    let key = self.string()?;
                    let marker = match element_type {
                        Some(t) => t,
                        None => self.marker()?,
                    };
                    map.insert(key, self.value(marker, depth + 1)?);
                }
            }
            None => loop {
                if self.bytes.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                    break;
                }
                let key = self.string()?;
                let marker = self.marker()?;
                map.insert(key, self.value(marker, depth + 1)?);
            },
        }
        Ok(Value::Object(map))
    }
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_arrays_and_typed_arrays_decode() {
        // {"a": [1, 2.5f32], "b": [$d#i2 1.0 -2.0], "s": "hi"}
        let mut b = vec![b'{'];
        b.extend_from_slice(b"i\x01a[i\x01d");
        b.extend_from_slice(&2.5f32.to_be_bytes());
        b.push(b']');
        b.extend_from_slice(b"i\x01b[$d#i\x02");
        b.extend_from_slice(&1.0f32.to_be_bytes());
        b.extend_from_slice(&(-2.0f32).to_be_bytes());
        b.extend_from_slice(b"i\x01sSi\x02hi}");
        let v = parse(&b).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": [1, 2.5], "b": [1.0, -2.0], "s": "hi"})
        );
    }

    #[test]
    fn counts_beyond_the_file_are_refused_before_allocating() {
        let mut b = b"[$d#L".to_vec();
        b.extend_from_slice(&(1i64 << 40).to_be_bytes());
        let e = parse(&b).unwrap_err().to_string();
        assert!(e.contains("more than the file holds"), "{e}");
        assert!(parse(b"{i\x01a").is_err());
        assert!(parse(b"").is_err());
    }

    /// Sibling typed containers of zero-size elements, each claiming the rest of the file:
    /// the 16.8 KiB file of issue 22 (376 MB decoded before the refusal).
    fn sibling_null_containers(siblings: usize) -> Vec<u8> {
        let len = 1 + siblings * 13 + 1;
        let mut b = vec![b'['];
        for _ in 0..siblings {
            let remaining = len - (b.len() + 13);
            b.extend_from_slice(b"[$Z#L");
            b.extend_from_slice(&(remaining as i64).to_be_bytes());
        }
        b.push(b']');
        b
    }

    #[test]
    fn zero_size_elements_share_one_budget_of_the_file_length() {
        let bomb = sibling_null_containers(1_300);
        assert_eq!(bomb.len(), 16_902);
        let e = parse(&bomb).unwrap_err().to_string();
        assert!(
            e.contains("more values than the file's 16902 bytes could hold"),
            "{e}"
        );
    }
}
