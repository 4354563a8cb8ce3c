//! Reading what Python wrote, without Python: pickles (also cloudpickle and joblib), skops
//! zips and `.npy` arrays, into an object graph of plain data. Nothing is executed; the
//! globals a file may name are an explicit allow-list.

pub mod allow_list;
pub mod npy;
pub mod numpy;
pub mod objects;
pub mod pickle;
pub mod skops;

pub use objects::{Attrs, Id, Obj, Objects};
