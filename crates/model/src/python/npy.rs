//! The `.npy` format (as `numpy.save` writes it, inside skops files): magic, a Python-
//! literal header `{'descr': ..., 'fortran_order': ..., 'shape': (...)}`, then raw data.
//! Structured dtypes (a list of `(name, type)` pairs, `''` for padding) are read too.

use super::numpy::{ArrayData, Dtype, NdArray, check_record};
use crate::error::ModelError;

const MAGIC: &[u8] = b"\x93NUMPY";
/// numpy itself refuses headers over 10 kB by default; structured ones stay far below.
const MAX_HEADER: usize = 64 * 1024;

/// Parses one `.npy` file, keeping its buffer as the array's data (no second copy of a
/// member that may be as large as the model size limit).
pub fn read_npy(mut bytes: Vec<u8>) -> Result<NdArray, ModelError> {
    let (dtype, shape, fortran_order, data_start) = read_header(&bytes)?;
    bytes.drain(..data_start);
    NdArray::new(dtype, shape, fortran_order, ArrayData::Bytes(bytes))
}

/// The dtype, shape, order and where the data starts.
fn read_header(bytes: &[u8]) -> Result<(Dtype, Vec<usize>, bool, usize), ModelError> {
    let bad = |m: &str| ModelError::invalid(format!("not a valid .npy file: {m}"));
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("no NUMPY magic"));
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            let raw = bytes.get(8..12).ok_or_else(|| bad("truncated header"))?;
            (
                u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize,
                12,
            )
        }
        v => return Err(bad(&format!("format version {v}"))),
    };
    if header_len > MAX_HEADER {
        return Err(bad("header too large"));
    }
    let header = bytes
        .get(start..start + header_len)
        .ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let literal = Literal::parse(header).map_err(|e| bad(&e))?;
    let Literal::Dict(entries) = literal else {
        return Err(bad("header is not a dict"));
    };
    let get = |k: &str| {
        entries
            .iter()
            .find(|(key, _)| matches!(key, Literal::Str(s) if s == k))
            .map(|(_, v)| v)
    };
    let dtype = match get("descr").ok_or_else(|| bad("no descr"))? {
        Literal::Str(s) => Dtype::parse(s, None)?,
        Literal::List(fields) => record_dtype(fields)?,
        _ => return Err(bad("descr is neither a type string nor a field list")),
    };
    if matches!(dtype, Dtype::Object) {
        return Err(bad(
            "object arrays need pickle, which .npy files here may not use",
        ));
    }
    let fortran_order = matches!(get("fortran_order"), Some(Literal::Bool(true)));
    let shape = match get("shape").ok_or_else(|| bad("no shape"))? {
        Literal::Tuple(dims) | Literal::List(dims) => dims
            .iter()
            .map(|d| match d {
                Literal::Int(n) => usize::try_from(*n).map_err(|_| bad("negative dimension")),
                _ => Err(bad("a dimension is not an integer")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(bad("shape is not a tuple")),
    };
    Ok((dtype, shape, fortran_order, start + header_len))
}

fn record_dtype(fields: &[Literal]) -> Result<Dtype, ModelError> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    for field in fields {
        let (name, descr) = match field {
            Literal::Tuple(parts) if parts.len() == 2 => match (&parts[0], &parts[1]) {
                (Literal::Str(n), Literal::Str(d)) => (n, d),
                _ => {
                    return Err(ModelError::invalid(
                        "a structured field is not (name, type)",
                    ));
                }
            },
            _ => {
                return Err(ModelError::invalid(
                    "a structured field is not (name, type)",
                ));
            }
        };
        let dtype = Dtype::parse(descr, None)?;
        let size = dtype.itemsize();
        if !name.is_empty() && !matches!(dtype, Dtype::Record { .. }) {
            out.push((name.clone(), dtype, offset));
        }
        offset = offset
            .checked_add(size)
            .ok_or_else(|| ModelError::invalid("structured dtype too large"))?;
    }
    check_record(&out, offset)?;
    Ok(Dtype::Record {
        fields: out,
        itemsize: offset,
    })
}

/// The subset of Python literals `.npy` headers use.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    Tuple(Vec<Literal>),
    List(Vec<Literal>),
    Dict(Vec<(Literal, Literal)>),
}

impl Literal {
    fn parse(text: &str) -> Result<Literal, String> {
        let mut p = LiteralParser {
            s: text.as_bytes(),
            i: 0,
            depth: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err("trailing text in header".into());
        }
        Ok(v)
    }
}

struct LiteralParser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl LiteralParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn value(&mut self) -> Result<Literal, String> {
        self.ws();
        self.depth += 1;
        if self.depth > 16 {
            return Err("header nested too deeply".into());
        }
        let c = *self.s.get(self.i).ok_or("unexpected end of header")?;
        let v = match c {
            b'{' => {
                self.i += 1;
                let mut entries = Vec::new();
                for item in self.sequence(b'}', true)? {
                    entries.push(item);
                }
                Literal::Dict(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k, v.unwrap_or(Literal::None)))
                        .collect(),
                )
            }
            b'(' | b'[' => {
                self.i += 1;
                let close = if c == b'(' { b')' } else { b']' };
                let items = self
                    .sequence(close, false)?
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                if c == b'(' {
                    Literal::Tuple(items)
                } else {
                    Literal::List(items)
                }
            }
            b'\'' | b'"' => {
                self.i += 1;
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i] != c {
                    if self.s[self.i] == b'\\' {
                        return Err("escapes in header strings are not supported".into());
                    }
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i])
                    .map_err(|_| "header string is not UTF-8")?
                    .to_owned();
                self.i += 1;
                if self.i > self.s.len() {
                    return Err("unterminated header string".into());
                }
                Literal::Str(text)
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'-')
                {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"True" => Literal::Bool(true),
                    b"False" => Literal::Bool(false),
                    b"None" => Literal::None,
                    digits => {
                        let text = std::str::from_utf8(digits).map_err(|_| "bad token")?;
                        let text = text.trim_end_matches('L');
                        Literal::Int(
                            text.parse()
                                .map_err(|_| format!("unexpected token {text:?}"))?,
                        )
                    }
                }
            }
        };
        self.depth -= 1;
        Ok(v)
    }

    /// Items up to `close`, comma-separated, a trailing comma allowed; `pairs` reads
    /// `key: value` items.
    fn sequence(
        &mut self,
        close: u8,
        pairs: bool,
    ) -> Result<Vec<(Literal, Option<Literal>)>, String> {
        let mut items = Vec::new();
        loop {
            self.ws();
            match self.s.get(self.i) {
                Some(&c) if c == close => {
                    self.i += 1;
                    return Ok(items);
                }
                None => return Err("unterminated header".into()),
                _ => {}
            }
            let key = self.value()?;
            let value = if pairs {
                self.ws();
                if self.s.get(self.i) != Some(&b':') {
                    return Err("expected ':' in header dict".into());
                }
                self.i += 1;
                Some(self.value()?)
            } else {
                None
            };
            items.push((key, value));
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(&c) if c == close => {}
                _ => return Err("expected ',' in header".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn plain_and_structured_arrays_read_back() {
        let data: Vec<u8> = [1.0f64, 2.0, 3.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        let a = read_npy(npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
            &data,
        ))
        .unwrap();
        assert_eq!(a.to_f64().unwrap(), vec![1.0, 2.0, 3.0]);

        let mut rec = Vec::new();
        for (l, t) in [(5i64, 0.5f64), (-1, 1.5)] {
            rec.extend_from_slice(&l.to_le_bytes());
            rec.extend_from_slice(&t.to_le_bytes());
            rec.extend_from_slice(&[0u8; 4]);
        }
        let a = read_npy(npy(
            "{'descr': [('left', '<i8'), ('thr', '<f8'), ('', '|V4')], 'fortran_order': False, 'shape': (2,), }",
            &rec,
        ))
        .unwrap();
        assert_eq!(a.field_i64("left").unwrap(), vec![5, -1]);
        assert_eq!(a.field_f64("thr").unwrap(), vec![0.5, 1.5]);
    }

    #[test]
    fn a_shape_larger_than_the_data_is_refused() {
        let err = read_npy(npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000, 1000), }",
            &[0; 8],
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("needs"), "{err}");
        assert!(read_npy(b"\x93NUMPY\x01\x00\xff\xff{".to_vec()).is_err());
        assert!(read_npy(b"garbage".to_vec()).is_err());
        assert!(
            read_npy(npy(
                "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }",
                &[0; 8]
            ))
            .is_err()
        );
    }
}
