//! numpy arrays as data: dtypes (scalar, structured, object, unicode), the pickled forms
//! (`_reconstruct` + state, protocol 5's `_frombuffer`, `scalar`), and typed reads.
//!
//! Every array's declared shape is checked against the bytes actually present before
//! anything is allocated, so a header claiming gigabytes costs nothing.

use super::objects::{Id, Obj, Objects};
use crate::error::ModelError;

mod dtype;

pub(crate) use dtype::check_record;
pub use dtype::{Dtype, ScalarKind};

/// An array's contents.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    Bytes(Vec<u8>),
    Objects(Vec<Id>),
}

/// A numpy array as data.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub fortran_order: bool,
    pub data: ArrayData,
}

/// The number of items of `shape`, refusing overflow.
pub fn element_count(shape: &[usize]) -> Result<usize, ModelError> {
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| ModelError::invalid(format!("array shape {shape:?} overflows")))
    })
}

impl NdArray {
    /// Builds an array, checking that `data` holds exactly what `dtype` and `shape` declare.
    pub fn new(
        dtype: Dtype,
        shape: Vec<usize>,
        fortran_order: bool,
        data: ArrayData,
    ) -> Result<Self, ModelError> {
        // numpy itself allows at most 64 dimensions.
        if shape.len() > 64 {
            return Err(ModelError::invalid(format!(
                "an array with {} dimensions",
                shape.len()
            )));
        }
        let count = element_count(&shape)?;
        match (&dtype, &data) {
            (Dtype::Object, ArrayData::Objects(items)) if items.len() == count => {}
            (Dtype::Object, _) => {
                return Err(ModelError::invalid(format!(
                    "an object array of shape {shape:?} does not hold {count} objects"
                )));
            }
            (_, ArrayData::Bytes(bytes)) => {
                let expected = count.checked_mul(dtype.itemsize()).ok_or_else(|| {
                    ModelError::invalid(format!("array shape {shape:?} overflows"))
                })?;
                if bytes.len() != expected {
                    return Err(ModelError::invalid(format!(
                        "an array of shape {shape:?} needs {expected} bytes of data, found {}",
                        bytes.len()
                    )));
                }
            }
            (_, ArrayData::Objects(_)) => {
                return Err(ModelError::invalid("a numeric array holds Python objects"));
            }
        }
        Ok(NdArray {
            dtype,
            shape,
            fortran_order,
            data,
        })
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The position in storage of the `i`-th item in C order.
    fn storage_index(&self, i: usize) -> usize {
        if !self.fortran_order || self.shape.len() < 2 {
            return i;
        }
        // Unravel `i` in C order, re-ravel in Fortran order.
        let mut rest = i;
        let mut index = 0;
        let mut stride = 1;
        let mut coords = vec![0; self.shape.len()];
        for (axis, &dim) in self.shape.iter().enumerate().rev() {
            coords[axis] = rest % dim.max(1);
            rest /= dim.max(1);
        }
        for (axis, &dim) in self.shape.iter().enumerate() {
            index += coords[axis] * stride;
            stride *= dim;
        }
        index
    }

    fn scalar_at(bytes: &[u8], dtype: &Dtype, offset: usize) -> Option<Scalar> {
        let Dtype::Scalar {
            kind,
            size,
            big_endian,
        } = *dtype
        else {
            return None;
        };
        let raw = bytes.get(offset..offset + size)?;
        let mut buf = [0u8; 8];
        buf[..size].copy_from_slice(raw);
        if big_endian {
            buf[..size].reverse();
        }
        Some(match (kind, size) {
            (ScalarKind::Float, 4) => Scalar::F(f64::from(f32::from_le_bytes([
                buf[0], buf[1], buf[2], buf[3],
            ]))),
            (ScalarKind::Float, _) => Scalar::F(f64::from_le_bytes(buf)),
            (ScalarKind::Int, _) => {
                // Sign-extend from `size` bytes.
                let shift = 64 - 8 * size as u32;
                Scalar::I(((u64::from_le_bytes(buf) << shift) as i64) >> shift)
            }
            (ScalarKind::UInt | ScalarKind::Bool, _) => Scalar::U(u64::from_le_bytes(buf)),
        })
    }

    fn numbers(&self, field: Option<&str>) -> Result<Vec<Scalar>, ModelError> {
        let ArrayData::Bytes(bytes) = &self.data else {
            return Err(ModelError::invalid(
                "expected a numeric array, found an object array",
            ));
        };
        let (dtype, offset) = match (&self.dtype, field) {
            (Dtype::Scalar { .. }, None) => (&self.dtype, 0),
            (Dtype::Record { fields, .. }, Some(name)) => fields
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, d, o)| (d, *o))
                .ok_or_else(|| {
                    ModelError::invalid(format!("the structured array has no field {name:?}"))
                })?,
            (Dtype::Record { .. }, None) => {
                return Err(ModelError::invalid(
                    "expected a plain numeric array, found a structured one",
                ));
            }
            (_, Some(name)) => {
                return Err(ModelError::invalid(format!(
                    "expected a structured array with field {name:?}"
                )));
            }
            _ => {
                return Err(ModelError::invalid(format!(
                    "expected numbers, found dtype {:?}",
                    self.dtype
                )));
            }
        };
        let itemsize = self.dtype.itemsize();
        (0..self.len())
            .map(|i| {
                NdArray::scalar_at(bytes, dtype, self.storage_index(i) * itemsize + offset)
                    .ok_or_else(|| ModelError::invalid("array data is shorter than its shape"))
            })
            .collect()
    }

    /// All items as `f64`, in C order.
    pub fn to_f64(&self) -> Result<Vec<f64>, ModelError> {
        Ok(self.numbers(None)?.into_iter().map(Scalar::f64).collect())
    }

    /// All items as `i64`, in C order (floats must be whole).
    pub fn to_i64(&self) -> Result<Vec<i64>, ModelError> {
        self.numbers(None)?.into_iter().map(Scalar::i64).collect()
    }

    /// One field of a 1-D structured array, as `f64`.
    pub fn field_f64(&self, name: &str) -> Result<Vec<f64>, ModelError> {
        Ok(self
            .numbers(Some(name))?
            .into_iter()
            .map(Scalar::f64)
            .collect())
    }

    /// One field of a 1-D structured array, as `i64`.
    pub fn field_i64(&self, name: &str) -> Result<Vec<i64>, ModelError> {
        self.numbers(Some(name))?
            .into_iter()
            .map(Scalar::i64)
            .collect()
    }

    pub fn has_field(&self, name: &str) -> bool {
        matches!(&self.dtype, Dtype::Record { fields, .. } if fields.iter().any(|(n, _, _)| n == name))
    }

    /// The items of an object array.
    pub fn objects(&self) -> Result<&[Id], ModelError> {
        match &self.data {
            ArrayData::Objects(ids) => Ok(ids),
            ArrayData::Bytes(_) => Err(ModelError::invalid("expected an object array")),
        }
    }

    /// Text items (an object array of `str`, or a `<U` array).
    pub fn to_strings(&self, objects: &Objects) -> Result<Vec<String>, ModelError> {
        match (&self.dtype, &self.data) {
            (Dtype::Object, ArrayData::Objects(ids)) => ids
                .iter()
                .map(|&id| {
                    objects
                        .as_str(id)
                        .map(str::to_owned)
                        .ok_or_else(|| ModelError::invalid("expected text in an object array"))
                })
                .collect(),
            (Dtype::Unicode { chars, big_endian }, ArrayData::Bytes(bytes)) => bytes
                .chunks(chars * 4)
                .map(|item| {
                    item.chunks_exact(4)
                        .map(|c| {
                            let code = if *big_endian {
                                u32::from_be_bytes([c[0], c[1], c[2], c[3]])
                            } else {
                                u32::from_le_bytes([c[0], c[1], c[2], c[3]])
                            };
                            char::from_u32(code)
                        })
                        .take_while(|c| *c != Some('\0'))
                        .collect::<Option<String>>()
                        .ok_or_else(|| ModelError::invalid("invalid text in a unicode array"))
                })
                .collect(),
            _ => Err(ModelError::invalid("expected an array of text")),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Scalar {
    F(f64),
    I(i64),
    U(u64),
}

impl Scalar {
    fn f64(self) -> f64 {
        match self {
            Scalar::F(f) => f,
            Scalar::I(i) => i as f64,
            Scalar::U(u) => u as f64,
        }
    }

    fn i64(self) -> Result<i64, ModelError> {
        match self {
            Scalar::I(i) => Ok(i),
            Scalar::U(u) => {
                i64::try_from(u).map_err(|_| ModelError::invalid("an integer does not fit 64 bits"))
            }
            Scalar::F(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
            Scalar::F(f) => Err(ModelError::invalid(format!(
                "expected an integer, found {f}"
            ))),
        }
    }
}

fn call_name(objects: &Objects, id: Id) -> Option<String> {
    match objects.get(id) {
        Obj::Call { callable, .. } => objects.global_name(*callable),
        _ => None,
    }
}

fn is_one_of(name: Option<&str>, module_tail: &str, fn_name: &str) -> bool {
    name.is_some_and(|n| {
        n == format!("numpy.core.{module_tail}.{fn_name}")
            || n == format!("numpy._core.{module_tail}.{fn_name}")
    })
}

fn shape_of(objects: &Objects, id: Id) -> Result<Vec<usize>, ModelError> {
    if let Some(n) = objects.as_i64(id) {
        return Ok(vec![
            usize::try_from(n).map_err(|_| ModelError::invalid("negative array dimension"))?,
        ]);
    }
    objects
        .items(id)
        .ok_or_else(|| ModelError::invalid(format!("array shape is {}", objects.describe(id))))?
        .iter()
        .map(|&d| {
            objects
                .as_i64(d)
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| {
                    ModelError::invalid("an array dimension is not a non-negative integer")
                })
        })
        .collect()
}

/// Copies the raw data of an array (bytes, or protocol 2's latin-1 text), charging it to
/// `budget`: pickle's memo lets many arrays name one buffer (numpy itself shares the empty
/// one), so copies are allowed up to the size of the file, never a copy per reference
/// beyond that.
fn copy_bytes(objects: &Objects, id: Id, budget: &mut usize) -> Result<Vec<u8>, ModelError> {
    let bytes = objects.as_bytes(id).ok_or_else(|| {
        ModelError::invalid(format!(
            "a numpy array's data is {}, not bytes",
            objects.describe(id)
        ))
    })?;
    *budget = budget.checked_sub(bytes.len()).ok_or_else(|| {
        ModelError::invalid("numpy arrays share data buffers beyond the size of the file")
    })?;
    Ok(bytes.into_owned())
}

/// The array a numpy reconstruction call stands for (`_reconstruct` + state,
/// `_frombuffer`, `scalar`), its data moved out of the graph; `Ok(None)` when `id` is not
/// such a call.
pub fn materialize(
    objects: &Objects,
    id: Id,
    budget: &mut usize,
) -> Result<Option<NdArray>, ModelError> {
    let name = call_name(objects, id);
    let name = name.as_deref();
    if is_one_of(name, "multiarray", "scalar") {
        let (dtype, data) = match objects.call_args(id) {
            [d, b, ..] => (*d, *b),
            _ => return Err(ModelError::invalid("a numpy scalar without data")),
        };
        let dtype = Dtype::from_pickled(objects, dtype, 0)?;
        let bytes = copy_bytes(objects, data, budget)?;
        return NdArray::new(dtype, Vec::new(), false, ArrayData::Bytes(bytes)).map(Some);
    }
    if is_one_of(name, "multiarray", "_reconstruct") {
        // state: (version, shape, dtype, is_fortran, data)
        let state = objects
            .state(id)
            .and_then(|s| objects.items(s))
            .ok_or_else(|| ModelError::invalid("a pickled numpy array has no state"))?;
        let (shape, dtype, fortran, data) = match state {
            [_, s, d, f, data] | [s, d, f, data] => (*s, *d, *f, *data),
            _ => {
                return Err(ModelError::invalid(
                    "a pickled numpy array has a malformed state",
                ));
            }
        };
        let shape = shape_of(objects, shape)?;
        let dtype = Dtype::from_pickled(objects, dtype, 0)?;
        let fortran = objects.as_bool(fortran).unwrap_or(false);
        let data = match dtype {
            Dtype::Object => ArrayData::Objects(
                objects
                    .items(data)
                    .ok_or_else(|| ModelError::invalid("an object array's data is not a list"))?
                    .to_vec(),
            ),
            _ => ArrayData::Bytes(copy_bytes(objects, data, budget)?),
        };
        return NdArray::new(dtype, shape, fortran, data).map(Some);
    }
    if is_one_of(name, "numeric", "_frombuffer") {
        // _frombuffer(buffer, dtype, shape, order)
        let (buf, dtype, shape, order) = match objects.call_args(id) {
            [b, d, s, o] => (*b, *d, *s, Some(*o)),
            [b, d, s] => (*b, *d, *s, None),
            _ => {
                return Err(ModelError::invalid(
                    "numpy _frombuffer with unexpected arguments",
                ));
            }
        };
        let dtype = Dtype::from_pickled(objects, dtype, 0)?;
        let shape = shape_of(objects, shape)?;
        let fortran = order.and_then(|o| objects.as_str(o)) == Some("F");
        let bytes = copy_bytes(objects, buf, budget)?;
        return NdArray::new(dtype, shape, fortran, ArrayData::Bytes(bytes)).map(Some);
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
