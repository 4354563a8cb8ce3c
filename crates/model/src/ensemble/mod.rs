//! The one tree-ensemble evaluator used for all serving.
//!
//! Every importer (smartcore forest, ONNX-ML `TreeEnsembleRegressor`, scikit-learn,
//! XGBoost, LightGBM) produces a [`TreeSpec`] list; [`TreeEnsemble::new`] validates it and compiles it into compact
//! 16-byte nodes laid out in pre-order, so the "true" child of a split is always the next
//! node and only the "false" child needs an index. Leaves are summed in `f64`.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

mod compile;
mod explain;
#[cfg(test)]
mod explain_reference;
#[cfg(test)]
mod explain_tests;
mod linear_treeshap;
mod members;
#[cfg(test)]
mod tests;
mod transform;
mod walk;

use compile::{compile_tree, to_u32};
pub use explain::{Explainer, Explanation, MAX_EXPLAIN_DEPTH};
use transform::{apply_post_transform, apply_preprocess, check_preprocess};
use walk::{General, Step};

/// How a split node compares the feature value `x` with its threshold `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum SplitRule {
    /// `x <= t`
    #[serde(rename = "<=")]
    Leq = 0,
    /// `x < t`
    #[serde(rename = "<")]
    Lt = 1,
    /// `x >= t`
    #[serde(rename = ">=")]
    Gte = 2,
    /// `x > t`
    #[serde(rename = ">")]
    Gt = 3,
    /// `x == t`
    #[serde(rename = "==")]
    Eq = 4,
    /// `x != t`
    #[serde(rename = "!=")]
    Neq = 5,
}

/// How the per-tree outputs are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    #[default]
    Sum,
    Average,
    Min,
    Max,
}

impl Aggregate {
    fn identity(self) -> f64 {
        match self {
            Aggregate::Sum | Aggregate::Average => 0.0,
            Aggregate::Min => f64::INFINITY,
            Aggregate::Max => f64::NEG_INFINITY,
        }
    }

    #[inline(always)]
    fn combine(self, acc: f64, leaf: f64) -> f64 {
        match self {
            Aggregate::Sum | Aggregate::Average => acc + leaf,
            Aggregate::Min => acc.min(leaf),
            Aggregate::Max => acc.max(leaf),
        }
    }
}

/// Rows walked together through one tree by [`TreeEnsemble::predict_into`].
pub const ROW_BLOCK: usize = 8;

/// The transform applied to the aggregated score (ONNX-ML `post_transform`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PostTransform {
    #[default]
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
    /// `exp(score)`: log-link objectives (Poisson, Gamma, Tweedie).
    Exp,
}

/// The precision the model's thresholds were chosen for. ONNX runtimes cast inputs to
/// `float32` before comparing; evaluating in the same precision routes borderline values
/// the way the exporter intended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InputPrecision {
    #[default]
    F64,
    F32,
}

/// One node of a tree as importers and the model file describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NodeSpec {
    Split {
        feature: usize,
        rule: SplitRule,
        threshold: f64,
        /// Index (within the tree) of the child taken when the rule holds.
        yes: usize,
        /// Index (within the tree) of the child taken otherwise.
        no: usize,
        /// Whether a missing (NaN) value goes to `yes` regardless of the rule.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        missing_yes: bool,
        /// Whether a missing value goes to `no` regardless of the rule.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        missing_no: bool,
        /// NaN is read as 0 at this split (LightGBM's `missing_type` None and Zero).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        nan_as_zero: bool,
        /// A value within 1e-35 of zero counts as missing (LightGBM's `missing_type` Zero).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        zero_is_missing: bool,
    },
    Leaf {
        leaf: f64,
    },
}

/// One tree: its nodes, the root being index 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeSpec {
    pub nodes: Vec<NodeSpec>,
    /// Each node's cover (by index, as `nodes`): how much training data reached it
    /// (scikit-learn's `weighted_n_node_samples`, XGBoost's `cover`, LightGBM's counts).
    /// Explanations (TreeSHAP) need them; a tree without them can only predict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covers: Option<Vec<f64>>,
}

impl TreeSpec {
    /// A tree without covers.
    pub fn new(nodes: Vec<NodeSpec>) -> Self {
        TreeSpec {
            nodes,
            covers: None,
        }
    }
}

/// A per-feature transform applied to each row before the trees see it (the earlier steps
/// of a scikit-learn `Pipeline`), in `f64`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum Preprocess {
    /// Missing values (NaN, or `missing_value` when set) become `values[feature]`.
    Impute {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        missing_value: Option<f64>,
        values: Vec<f64>,
    },
    /// `(x - mean[feature]) / scale[feature]`.
    Standardize { mean: Vec<f64>, scale: Vec<f64> },
}

/// The serialisable description of an ensemble (the `ensemble.json` model file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleSpec {
    pub n_features: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preprocess: Vec<Preprocess>,
    #[serde(default)]
    pub aggregate: Aggregate,
    #[serde(default)]
    pub base_value: f64,
    #[serde(default)]
    pub post_transform: PostTransform,
    #[serde(default)]
    pub input_precision: InputPrecision,
    pub trees: Vec<TreeSpec>,
}

const LEAF: u8 = u8::MAX;
const MISSING_YES: u8 = 1;
const MISSING_NO: u8 = 2;
const NAN_AS_ZERO: u8 = 4;
const ZERO_IS_MISSING: u8 = 8;
/// LightGBM's `kZeroThreshold`.
const ZERO_THRESHOLD: f64 = 1e-35;

/// A compiled node: 16 bytes. For a leaf `value` is the leaf value; for a split it is the
/// threshold, the "yes" child is the next node and `no` the index of the other child.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Node {
    value: f64,
    no: u32,
    feature: u16,
    rule: u8,
    flags: u8,
}

const _: () = assert!(std::mem::size_of::<Node>() == 16);

fn rule_from_u8(v: u8) -> SplitRule {
    match v {
        0 => SplitRule::Leq,
        1 => SplitRule::Lt,
        2 => SplitRule::Gte,
        3 => SplitRule::Gt,
        4 => SplitRule::Eq,
        _ => SplitRule::Neq,
    }
}

/// A validated, compiled tree ensemble ready to predict.
#[derive(Debug, Clone)]
pub struct TreeEnsemble {
    nodes: Vec<Node>,
    roots: Vec<u32>,
    n_features: usize,
    /// The one rule every split uses, if so (the fast walk is compiled per rule).
    uniform_rule: Option<u8>,
    /// Some split counts zero as missing (LightGBM `missing_type` Zero): rows without NaN
    /// still need the general walk.
    zero_is_missing: bool,
    preprocess: Vec<Preprocess>,
    aggregate: Aggregate,
    base_value: f64,
    post_transform: PostTransform,
    input_precision: InputPrecision,
    /// The trees' covers and what explanations derive from them, when the model has them.
    explain: Option<explain::Covers>,
}

impl TreeEnsemble {
    /// Validates `spec` (indices in range, every node reachable once, features in range,
    /// finite leaves) and compiles it.
    pub fn new(spec: &EnsembleSpec) -> Result<Self, ModelError> {
        if spec.trees.is_empty() {
            return Err(ModelError::invalid("the ensemble has no trees"));
        }
        if spec.n_features == 0 || spec.n_features > usize::from(u16::MAX) {
            return Err(ModelError::invalid(format!(
                "the ensemble declares {} features; expected 1..=65535",
                spec.n_features
            )));
        }
        if !spec.base_value.is_finite() {
            return Err(ModelError::invalid(
                "the ensemble's base value is not finite",
            ));
        }
        for step in &spec.preprocess {
            check_preprocess(step, spec.n_features)?;
        }
        let mut nodes = Vec::with_capacity(spec.trees.iter().map(|t| t.nodes.len()).sum());
        let mut roots = Vec::with_capacity(spec.trees.len());
        // Covers are kept only when every tree has them (explanations need all).
        let mut covers = spec
            .trees
            .iter()
            .all(|t| t.covers.is_some())
            .then(|| Vec::with_capacity(nodes.capacity()));
        for (tree_index, tree) in spec.trees.iter().enumerate() {
            roots.push(to_u32(nodes.len())?);
            compile_tree(
                tree,
                tree_index,
                spec.n_features,
                &mut nodes,
                covers.as_mut(),
            )?;
        }
        let mut split_rules = nodes.iter().filter(|n| n.rule != LEAF).map(|n| n.rule);
        let first_rule = split_rules.next();
        let uniform_rule = first_rule.filter(|&r| split_rules.all(|other| other == r));
        let zero_is_missing = nodes.iter().any(|n| n.flags & ZERO_IS_MISSING != 0);
        let explain = covers.map(|covers| explain::Covers::new(&nodes, &roots, covers));
        Ok(TreeEnsemble {
            explain,
            nodes,
            roots,
            n_features: spec.n_features,
            uniform_rule,
            zero_is_missing,
            preprocess: spec.preprocess.clone(),
            aggregate: spec.aggregate,
            base_value: spec.base_value,
            post_transform: spec.post_transform,
            input_precision: spec.input_precision,
        })
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Predicts one row. The caller guarantees `row.len() == n_features()` (checked in
    /// debug builds; a shorter row would index out of bounds and panic).
    pub fn predict_row(&self, row: &[f64]) -> f64 {
        debug_assert_eq!(row.len(), self.n_features);
        if self.preprocess.is_empty() && self.input_precision == InputPrecision::F64 {
            return self.score(row);
        }
        let mut stack_buf = [0.0f64; 64];
        let mut heap_buf;
        let buf: &mut [f64] = if row.len() <= stack_buf.len() {
            &mut stack_buf[..row.len()]
        } else {
            heap_buf = vec![0.0; row.len()];
            &mut heap_buf
        };
        buf.copy_from_slice(row);
        self.prepare(buf);
        self.score(buf)
    }

    /// Applies the preprocessing steps and the input precision to a row in place.
    fn prepare(&self, row: &mut [f64]) {
        for step in &self.preprocess {
            apply_preprocess(step, row);
        }
        if self.input_precision == InputPrecision::F32 {
            for x in row.iter_mut() {
                *x = f64::from(*x as f32);
            }
        }
    }

    /// Predicts many rows; rows must each have `n_features()` values.
    pub fn predict(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
        rows.iter()
            .enumerate()
            .map(|(i, row)| {
                if row.len() != self.n_features {
                    Err(ModelError::invalid(format!(
                        "row {i} has {} values; the model expects {}",
                        row.len(),
                        self.n_features
                    )))
                } else {
                    Ok(self.predict_row(row))
                }
            })
            .collect()
    }

    /// The aggregated leaves → the prediction.
    fn finish(&self, acc: f64) -> f64 {
        let aggregated = match self.aggregate {
            Aggregate::Average => acc / self.roots.len() as f64,
            _ => acc,
        };
        apply_post_transform(self.post_transform, aggregated + self.base_value)
    }
}
