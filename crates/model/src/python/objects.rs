//! The object graph a Python serialisation describes, held as data: nothing is constructed
//! or called. The pickle reader and the skops reader both fill an [`Objects`] arena; the
//! scikit-learn importer reads estimators out of it through the accessors here.
//!
//! Objects refer to each other by [`Id`] (an index into the arena), as pickle's memo
//! shares them; a cycle is possible in hostile input, so every walk is bounded.

use std::collections::BTreeMap;

use super::numpy::NdArray;
use crate::error::ModelError;

/// An object's index in its [`Objects`] arena.
pub type Id = usize;

/// One Python object, as data.
#[derive(Debug, Clone, PartialEq)]
pub enum Obj {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit 64 bits (kept only to be refused if ever read).
    BigInt,
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    /// A module-level name (class or function) that passed the allow-list.
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)` as `REDUCE`/`NEWOBJ` describe it, with the state `BUILD` gave it
    /// and the items `APPEND(S)`/`SETITEM(S)` added (for list and dict subclasses).
    Call {
        callable: Id,
        args: Vec<Id>,
        state: Option<Id>,
        list_items: Vec<Id>,
        dict_items: Vec<(Id, Id)>,
    },
    /// A numpy array already decoded (joblib's inline arrays, skops' `.npy` files).
    Array(NdArray),
}

/// The arena. Its size is bounded by the input's size (each opcode or schema node adds at
/// most one object) and by its `limit`.
#[derive(Debug)]
pub struct Objects {
    objs: Vec<Obj>,
    limit: usize,
}

impl Default for Objects {
    fn default() -> Self {
        Objects {
            objs: Vec::new(),
            limit: usize::MAX,
        }
    }
}

/// Objects a pickle of `len` bytes may hold: one per 16 bytes (at least 1,024). Two opcode
/// bytes (push None, pop) add an object of about a hundred bytes, so without this a pickle
/// could grow fifty-fold in memory; a real model pickle spends far more than 16 bytes per
/// object (class paths, keys, array data).
pub fn object_limit(len: usize) -> usize {
    (len / 16).max(1024)
}

/// How deep nested containers may go before a walk gives up (also stops cycles).
pub const MAX_DEPTH: usize = 64;

impl Objects {
    pub fn new() -> Self {
        Objects::default()
    }

    /// An arena that refuses its `limit + 1`-th object.
    pub fn with_limit(limit: usize) -> Self {
        Objects {
            objs: Vec::new(),
            limit,
        }
    }

    pub fn push(&mut self, obj: Obj) -> Result<Id, crate::error::ModelError> {
        if self.objs.len() >= self.limit {
            return Err(crate::error::ModelError::invalid(format!(
                "the file makes more than {} objects, more than its size allows",
                self.limit
            )));
        }
        self.objs.push(obj);
        Ok(self.objs.len() - 1)
    }

    pub fn get(&self, id: Id) -> &Obj {
        // Ids only come from `push`, so they are always in range.
        &self.objs[id]
    }

    pub fn get_mut(&mut self, id: Id) -> &mut Obj {
        &mut self.objs[id]
    }

    pub fn len(&self) -> usize {
        self.objs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objs.is_empty()
    }

    /// `module.name` when `id` is a global.
    pub fn global_name(&self, id: Id) -> Option<String> {
        match self.get(id) {
            Obj::Global { module, name } => Some(format!("{module}.{name}")),
            _ => None,
        }
    }

    /// For an instance (`cls.__new__(cls)` + state, or `cls(*args)` + state), its class
    /// path, e.g. `sklearn.tree._classes.DecisionTreeRegressor`.
    pub fn class_of(&self, id: Id) -> Option<String> {
        match self.get(id) {
            Obj::Call { callable, args, .. } => {
                let name = self.global_name(*callable)?;
                // Protocol 0/1: copyreg._reconstructor(cls, object, None).
                if name == "copyreg._reconstructor" {
                    return args.first().and_then(|&c| self.global_name(c));
                }
                Some(name)
            }
            _ => None,
        }
    }

    /// A short description of what `id` is, for error messages.
    pub fn describe(&self, id: Id) -> String {
        match self.get(id) {
            Obj::None => "None".into(),
            Obj::Bool(b) => format!("the boolean {b}"),
            Obj::Int(i) => format!("the integer {i}"),
            Obj::BigInt => "a very large integer".into(),
            Obj::Float(f) => format!("the number {f}"),
            Obj::Str(s) => format!("the string {:?}", s.chars().take(40).collect::<String>()),
            Obj::Bytes(b) => format!("{} bytes", b.len()),
            Obj::List(_) => "a list".into(),
            Obj::Tuple(_) => "a tuple".into(),
            Obj::Dict(_) => "a dict".into(),
            Obj::Set(_) => "a set".into(),
            Obj::Global { module, name } => format!("{module}.{name}"),
            Obj::Call { .. } => match self.class_of(id) {
                Some(c) => format!("an instance of {c}"),
                None => "an object".into(),
            },
            Obj::Array(a) => format!("an array of shape {:?}", a.shape),
        }
    }

    /// The state an instance was given (its `__dict__` for estimators).
    pub fn state(&self, id: Id) -> Option<Id> {
        match self.get(id) {
            Obj::Call { state, .. } => *state,
            _ => None,
        }
    }

    /// The constructor arguments of a `Call`.
    pub fn call_args(&self, id: Id) -> &[Id] {
        match self.get(id) {
            Obj::Call { args, .. } => args,
            _ => &[],
        }
    }

    /// Entries of a dict (also a dict subclass filled by `SETITEMS`), keyed by string.
    pub fn dict_entries(&self, id: Id) -> Option<BTreeMap<String, Id>> {
        let pairs: &[(Id, Id)] = match self.get(id) {
            Obj::Dict(pairs) => pairs,
            Obj::Call { dict_items, .. } => dict_items,
            _ => return None,
        };
        Some(
            pairs
                .iter()
                .filter_map(|&(k, v)| match self.get(k) {
                    Obj::Str(s) => Some((s.clone(), v)),
                    _ => None,
                })
                .collect(),
        )
    }

    /// Items of a list or tuple (also a list subclass filled by `APPENDS`).
    pub fn items(&self, id: Id) -> Option<&[Id]> {
        match self.get(id) {
            Obj::List(items) | Obj::Tuple(items) | Obj::Set(items) => Some(items),
            Obj::Call { list_items, .. } => Some(list_items),
            _ => None,
        }
    }

    pub fn as_str(&self, id: Id) -> Option<&str> {
        match self.get(id) {
            Obj::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self, id: Id) -> Option<i64> {
        match self.get(id) {
            Obj::Int(i) => Some(*i),
            Obj::Bool(b) => Some(i64::from(*b)),
            Obj::Array(a) if a.shape.is_empty() => a.to_i64().ok()?.first().copied(),
            _ => None,
        }
    }

    pub fn as_f64(&self, id: Id) -> Option<f64> {
        match self.get(id) {
            Obj::Float(f) => Some(*f),
            Obj::Int(i) => Some(*i as f64),
            Obj::Bool(b) => Some(f64::from(u8::from(*b))),
            Obj::Array(a) if a.shape.is_empty() => a.to_f64().ok()?.first().copied(),
            _ => None,
        }
    }

    pub fn as_bool(&self, id: Id) -> Option<bool> {
        match self.get(id) {
            Obj::Bool(b) => Some(*b),
            Obj::Int(i) => Some(*i != 0),
            _ => None,
        }
    }

    pub fn is_none(&self, id: Id) -> bool {
        matches!(self.get(id), Obj::None)
    }

    /// Bytes, including protocol 2's `_codecs.encode(text, "latin1")` form.
    pub fn as_bytes(&self, id: Id) -> Option<std::borrow::Cow<'_, [u8]>> {
        match self.get(id) {
            Obj::Bytes(b) => Some(std::borrow::Cow::Borrowed(b)),
            Obj::Call { callable, args, .. }
                if self.global_name(*callable).as_deref() == Some("_codecs.encode") =>
            {
                let text = self.as_str(*args.first()?)?;
                let encoding = args.get(1).and_then(|&e| self.as_str(e)).unwrap_or("utf-8");
                match encoding {
                    "latin1" | "latin-1" | "iso-8859-1" => text
                        .chars()
                        .map(|c| u8::try_from(u32::from(c)).ok())
                        .collect::<Option<Vec<u8>>>()
                        .map(std::borrow::Cow::Owned),
                    "utf-8" | "utf8" => Some(std::borrow::Cow::Owned(text.as_bytes().to_vec())),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The numpy array `id` is (after [`Objects::materialize_arrays`]).
    pub fn array(&self, id: Id) -> Result<&NdArray, ModelError> {
        match self.get(id) {
            Obj::Array(a) => Ok(a),
            _ => Err(ModelError::invalid(format!(
                "expected a numpy array, found {}",
                self.describe(id)
            ))),
        }
    }

    /// Turns every numpy reconstruction call (pickle's `_reconstruct`, `_frombuffer`,
    /// `scalar`) into an [`Obj::Array`], once however many references a file makes to it;
    /// the data copied may not exceed `copy_budget` bytes (the file's size).
    pub fn materialize_arrays(&mut self, copy_budget: usize) -> Result<(), ModelError> {
        let mut budget = copy_budget;
        for id in 0..self.objs.len() {
            if let Some(array) = super::numpy::materialize(self, id, &mut budget)? {
                self.objs[id] = Obj::Array(array);
            }
        }
        Ok(())
    }
}

/// Reads attributes of an estimator's state dict with errors that name the class and the
/// attribute.
pub struct Attrs<'a> {
    pub objects: &'a Objects,
    pub class: String,
    entries: BTreeMap<String, Id>,
}

impl<'a> Attrs<'a> {
    /// The attributes of instance `id` (its state dict).
    pub fn of(objects: &'a Objects, id: Id) -> Result<Self, ModelError> {
        let class = objects.class_of(id).ok_or_else(|| {
            ModelError::invalid(format!(
                "expected an object, found {}",
                objects.describe(id)
            ))
        })?;
        let state = objects
            .state(id)
            .ok_or_else(|| ModelError::invalid(format!("{class} has no saved state")))?;
        // Some classes pickle their state as `(dict, slots)`.
        let state = match objects.get(state) {
            Obj::Tuple(parts) if parts.len() == 2 => parts[0],
            _ => state,
        };
        let entries = objects.dict_entries(state).ok_or_else(|| {
            ModelError::invalid(format!(
                "the state of {class} is {}, not a dict",
                objects.describe(state)
            ))
        })?;
        Ok(Attrs {
            objects,
            class,
            entries,
        })
    }

    pub fn short_class(&self) -> &str {
        self.class.rsplit('.').next().unwrap_or(&self.class)
    }

    pub fn get(&self, name: &str) -> Option<Id> {
        self.entries.get(name).copied()
    }

    pub fn require(&self, name: &str) -> Result<Id, ModelError> {
        self.get(name).ok_or_else(|| {
            ModelError::invalid(format!(
                "{} lacks the attribute `{name}` (is it fitted?)",
                self.short_class()
            ))
        })
    }

    fn wrong(&self, name: &str, expected: &str, id: Id) -> ModelError {
        ModelError::invalid(format!(
            "{}.{name} should be {expected}, found {}",
            self.short_class(),
            self.objects.describe(id)
        ))
    }

    pub fn f64(&self, name: &str) -> Result<f64, ModelError> {
        let id = self.require(name)?;
        self.objects
            .as_f64(id)
            .ok_or_else(|| self.wrong(name, "a number", id))
    }

    pub fn i64(&self, name: &str) -> Result<i64, ModelError> {
        let id = self.require(name)?;
        self.objects
            .as_i64(id)
            .ok_or_else(|| self.wrong(name, "an integer", id))
    }

    pub fn str(&self, name: &str) -> Result<&'a str, ModelError> {
        let id = self.require(name)?;
        self.objects
            .as_str(id)
            .ok_or_else(|| self.wrong(name, "a string", id))
    }

    pub fn array(&self, name: &str) -> Result<&'a NdArray, ModelError> {
        let id = self.require(name)?;
        self.objects
            .array(id)
            .map_err(|e| ModelError::invalid(format!("{}.{name}: {e}", self.short_class())))
    }

    /// Feature names the estimator was fitted with (`feature_names_in_`), if any.
    pub fn feature_names_in(&self) -> Option<Vec<String>> {
        let id = self.get("feature_names_in_")?;
        let array = self.objects.array(id).ok()?;
        array.to_strings(self.objects).ok()
    }
}
