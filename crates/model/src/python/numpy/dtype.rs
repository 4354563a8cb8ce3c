//! numpy dtypes: scalar, structured, object and unicode, as pickles and `.npy` headers
//! describe them.

use super::*;

/// The kind of a scalar numpy type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    Float,
    Int,
    UInt,
    Bool,
}

/// A numpy dtype.
#[derive(Debug, Clone, PartialEq)]
pub enum Dtype {
    Scalar {
        kind: ScalarKind,
        size: usize,
        big_endian: bool,
    },
    /// A structured dtype: named fields at byte offsets within `itemsize`.
    Record {
        fields: Vec<(String, Dtype, usize)>,
        itemsize: usize,
    },
    /// Python objects (`|O`).
    Object,
    /// Fixed-width UTF-32 text (`<U8`), `chars` code points per item.
    Unicode { chars: usize, big_endian: bool },
}

impl Dtype {
    /// Bytes per item (objects are stored apart, so 0 here).
    pub fn itemsize(&self) -> usize {
        match self {
            Dtype::Scalar { size, .. } => *size,
            Dtype::Record { itemsize, .. } => *itemsize,
            Dtype::Object => 0,
            Dtype::Unicode { chars, .. } => chars * 4,
        }
    }

    /// Parses a type string such as `<f8`, `|u1`, `f8`, `V64`, `O`, `<U12`. `order` is
    /// the byte order given apart (a pickled dtype's state), if any.
    pub fn parse(descr: &str, order: Option<char>) -> Result<Dtype, ModelError> {
        let bad = || ModelError::invalid(format!("unsupported numpy dtype {descr:?}"));
        let mut chars = descr.chars().peekable();
        let mut big_endian = order == Some('>');
        if let Some(&c) = chars.peek()
            && matches!(c, '<' | '>' | '|' | '=')
        {
            big_endian = c == '>';
            chars.next();
        }
        let kind = chars.next().ok_or_else(bad)?;
        let digits: String = chars.collect();
        let size: usize = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| bad())?
        };
        let scalar = |kind, allowed: &[usize]| {
            if allowed.contains(&size) {
                Ok(Dtype::Scalar {
                    kind,
                    size,
                    big_endian,
                })
            } else {
                Err(bad())
            }
        };
        match kind {
            'f' => scalar(ScalarKind::Float, &[4, 8]),
            'i' => scalar(ScalarKind::Int, &[1, 2, 4, 8]),
            'u' => scalar(ScalarKind::UInt, &[1, 2, 4, 8]),
            'b' => scalar(ScalarKind::Bool, &[1]),
            '?' => Ok(Dtype::Scalar {
                kind: ScalarKind::Bool,
                size: 1,
                big_endian: false,
            }),
            'O' => Ok(Dtype::Object),
            'U' if size > 0 && size <= 1 << 20 => Ok(Dtype::Unicode {
                chars: size,
                big_endian,
            }),
            // A structured dtype's placeholder: fields come from the pickled state.
            'V' if size > 0 => Ok(Dtype::Record {
                fields: Vec::new(),
                itemsize: size,
            }),
            _ => Err(bad()),
        }
    }

    /// Reads a pickled `numpy.dtype(...)` object: `dtype(descr, align, copy)` plus its
    /// `__setstate__` tuple `(version, order, subarray, names, fields, itemsize, ...)`.
    pub fn from_pickled(objects: &Objects, id: Id, depth: usize) -> Result<Dtype, ModelError> {
        if depth > 8 {
            return Err(ModelError::invalid("numpy dtype nested too deeply"));
        }
        let name = match objects.get(id) {
            Obj::Call { callable, .. } => objects.global_name(*callable),
            _ => None,
        };
        if !matches!(name.as_deref(), Some("numpy.dtype")) {
            return Err(ModelError::invalid(format!(
                "expected a numpy dtype, found {}",
                objects.describe(id)
            )));
        }
        let descr = objects
            .call_args(id)
            .first()
            .and_then(|&a| objects.as_str(a))
            .ok_or_else(|| ModelError::invalid("a numpy dtype without a type string"))?;
        let state = objects.state(id).and_then(|s| objects.items(s));
        let order = state
            .and_then(|s| s.get(1))
            .and_then(|&o| objects.as_str(o))
            .and_then(|o| o.chars().next());
        let mut dtype = Dtype::parse(descr, order)?;
        if let Dtype::Record { fields, itemsize } = &mut dtype {
            let state =
                state.ok_or_else(|| ModelError::invalid("a structured dtype without fields"))?;
            let names = state
                .get(3)
                .and_then(|&n| objects.items(n))
                .ok_or_else(|| ModelError::invalid("a structured dtype without field names"))?;
            let field_map = state
                .get(4)
                .and_then(|&f| objects.dict_entries(f))
                .ok_or_else(|| ModelError::invalid("a structured dtype without a field map"))?;
            if let Some(size) = state.get(5).and_then(|&s| objects.as_i64(s))
                && size > 0
            {
                *itemsize =
                    usize::try_from(size).map_err(|_| ModelError::invalid("bad itemsize"))?;
            }
            for &name_id in names {
                let name = objects.as_str(name_id).ok_or_else(|| {
                    ModelError::invalid("a structured dtype field name is not text")
                })?;
                let spec = field_map
                    .get(name)
                    .and_then(|&f| objects.items(f))
                    .ok_or_else(|| {
                        ModelError::invalid(format!("dtype field {name:?} has no type"))
                    })?;
                let (&field_dtype, &offset) = match spec {
                    [d, o, ..] => (d, o),
                    _ => {
                        return Err(ModelError::invalid(format!(
                            "dtype field {name:?} is malformed"
                        )));
                    }
                };
                let field_dtype = Dtype::from_pickled(objects, field_dtype, depth + 1)?;
                let offset = objects
                    .as_i64(offset)
                    .and_then(|o| usize::try_from(o).ok())
                    .ok_or_else(|| {
                        ModelError::invalid(format!("dtype field {name:?} has a bad offset"))
                    })?;
                fields.push((name.to_owned(), field_dtype, offset));
            }
            check_record(fields, *itemsize)?;
        }
        Ok(dtype)
    }
}

/// Every field of a record must be a scalar lying inside the item.
pub(crate) fn check_record(
    fields: &[(String, Dtype, usize)],
    itemsize: usize,
) -> Result<(), ModelError> {
    for (name, dtype, offset) in fields {
        if !matches!(dtype, Dtype::Scalar { .. }) {
            return Err(ModelError::invalid(format!(
                "structured dtype field {name:?} is not a plain number"
            )));
        }
        if offset
            .checked_add(dtype.itemsize())
            .is_none_or(|end| end > itemsize)
        {
            return Err(ModelError::invalid(format!(
                "structured dtype field {name:?} lies outside its {itemsize}-byte item"
            )));
        }
    }
    Ok(())
}
