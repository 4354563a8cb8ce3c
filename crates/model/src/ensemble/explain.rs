//! Exact path-dependent TreeSHAP (Lundberg, Erion and Lee, "Consistent Individualized
//! Feature Attribution for Tree Ensembles"; the values `shap.TreeExplainer` computes) over
//! the evaluator's own compiled trees.
//!
//! "What the model expects without a feature" is read from the node covers (the training
//! data that reached each node), so a model without covers cannot be explained. Each tree
//! is walked once per row by [`linear_treeshap`](super::linear_treeshap); the
//! contributions of a row sum, with the expected value, to the raw prediction.

use super::linear_treeshap::Workspace;
use super::{Aggregate, LEAF, Node, PostTransform, TreeEnsemble};
use crate::error::ModelError;

/// Deeper trees are not explained: the walk recurses once per level and keeps
/// `depth / 2` values per level.
pub const MAX_EXPLAIN_DEPTH: usize = 256;

// The largest walk (`Workspace<128>`) integrates exactly up to this depth.
const _: () = assert!(MAX_EXPLAIN_DEPTH <= 2 * 128);

/// One row's explanation (its contributions are written to the caller's slice).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Explanation {
    /// The model's prediction for the row.
    pub prediction: f64,
    /// The model's mean prediction over its training data (from the covers).
    pub expected_value: f64,
}

/// The covers in compiled-node order, and what is derived from them once.
#[derive(Debug, Clone)]
pub(super) struct Covers {
    pub covers: Vec<f64>,
    /// Each node's cover over its parent's (1 at a root).
    zero: Vec<f64>,
    /// Each tree's expected value (its leaves weighted by the covers' shares).
    expected: Vec<f64>,
    /// The deepest leaf's depth (edges from its root).
    max_depth: usize,
    /// Why the covers cannot be used, if they cannot.
    unusable: Option<String>,
}

impl Covers {
    pub fn new(nodes: &[Node], roots: &[u32], covers: Vec<f64>) -> Self {
        let max_depth = roots
            .iter()
            .map(|&r| tree_depth(nodes, r as usize))
            .max()
            .unwrap_or(0);
        let unusable = if max_depth > MAX_EXPLAIN_DEPTH {
            Some(format!(
                "a tree is {max_depth} levels deep; explanations are computed up to {MAX_EXPLAIN_DEPTH}"
            ))
        } else {
            nodes
                .iter()
                .zip(&covers)
                .position(|(n, &c)| n.rule != LEAF && c <= 0.0)
                .map(|i| format!("node {i} splits but its cover is 0"))
        };
        let expected = if unusable.is_none() {
            roots
                .iter()
                .map(|&r| expected_value(nodes, &covers, r as usize))
                .collect()
        } else {
            Vec::new()
        };
        let mut zero = vec![1.0; nodes.len()];
        if unusable.is_none() {
            for (i, node) in nodes.iter().enumerate().filter(|(_, n)| n.rule != LEAF) {
                zero[i + 1] = covers[i + 1] / covers[i];
                zero[node.no as usize] = covers[node.no as usize] / covers[i];
            }
        }
        Covers {
            covers,
            zero,
            expected,
            max_depth,
            unusable,
        }
    }
}

/// The depth of the tree rooted at `root`, without recursion (a hostile tree may be a
/// chain a million nodes long).
fn tree_depth(nodes: &[Node], root: usize) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(root, 0usize)];
    while let Some((i, depth)) = stack.pop() {
        let node = &nodes[i];
        if node.rule == LEAF {
            deepest = deepest.max(depth);
        } else {
            stack.push((i + 1, depth + 1));
            stack.push((node.no as usize, depth + 1));
        }
    }
    deepest
}

/// The leaves weighted by the share of the cover that reaches them (recursion bounded by
/// [`MAX_EXPLAIN_DEPTH`], checked before).
fn expected_value(nodes: &[Node], covers: &[f64], i: usize) -> f64 {
    let node = &nodes[i];
    if node.rule == LEAF {
        return node.value;
    }
    let (yes, no) = (i + 1, node.no as usize);
    (covers[yes] * expected_value(nodes, covers, yes)
        + covers[no] * expected_value(nodes, covers, no))
        / covers[i]
}

impl TreeEnsemble {
    /// Why this model cannot be explained, or `None` when it can.
    pub fn explanations_unavailable(&self) -> Option<String> {
        let Some(covers) = &self.explain else {
            return Some(
                "the model's trees carry no node covers (how much training data reached each \
                 node), which explanations need; an ONNX TreeEnsembleRegressor has none"
                    .into(),
            );
        };
        if let Some(why) = &covers.unusable {
            return Some(why.clone());
        }
        if matches!(self.aggregate, Aggregate::Min | Aggregate::Max) {
            return Some("the trees are combined by min or max, which is not additive".into());
        }
        if self.post_transform != PostTransform::None {
            return Some(format!(
                "the trees' sum goes through a {:?} transform, so contributions would not add up \
                 to the prediction",
                self.post_transform
            ));
        }
        None
    }

    /// One row's explanation: writes one contribution per feature to `contributions`
    /// (`n_features()` of them) such that `expected_value` + their sum is the prediction,
    /// up to rounding. For many rows, [`TreeEnsemble::explainer`] reuses its buffers.
    pub fn explain_row(
        &self,
        row: &[f64],
        contributions: &mut [f64],
    ) -> Result<Explanation, ModelError> {
        self.explainer()?.explain_row(row, contributions)
    }

    /// An explainer for this model, or why it cannot be explained.
    pub fn explainer(&self) -> Result<Explainer<'_>, ModelError> {
        if let Some(why) = self.explanations_unavailable() {
            return Err(ModelError::unsupported(why));
        }
        let Some(covers) = &self.explain else {
            return Err(ModelError::unsupported("the model's trees carry no covers"));
        };
        let mut expected_value: f64 = covers.expected.iter().sum();
        if self.aggregate == Aggregate::Average {
            expected_value /= self.roots.len() as f64;
        }
        let (depth, features) = (covers.max_depth, self.n_features);
        // A rule of M points is exact to degree 2M − 1; an integrand's degree is below the
        // number of distinct features on a path, which is at most the depth and at most
        // the model's features.
        let walker = Walker::new(depth.min(features).div_ceil(2), depth, features);
        Ok(Explainer {
            ensemble: self,
            covers,
            expected_value: expected_value + self.base_value,
            prepared: Vec::with_capacity(self.n_features),
            walker,
        })
    }
}

/// The walk's workspace with at least the points a model needs (`Workspace<M>` for the
/// smallest listed `M`; each size is its own compiled walk).
macro_rules! walkers {
    ($($variant:ident = $m:literal),+) => {
        enum Walker {
            $($variant(Box<Workspace<$m>>),)+
        }

        impl Walker {
            fn new(points: usize, depth: usize, features: usize) -> Self {
                $(if points <= $m {
                    return Walker::$variant(Box::new(Workspace::new(depth, features)));
                })+
                unreachable!("MAX_EXPLAIN_DEPTH / 2 points at most")
            }

            fn walk_tree(
                &mut self,
                nodes: &[Node],
                zero: &[f64],
                root: usize,
                row: &[f64],
                phi: &mut [f64],
            ) {
                match self {
                    $(Walker::$variant(w) => w.walk_tree(nodes, zero, root, row, phi),)+
                }
            }
        }
    };
}

walkers!(
    P2 = 2,
    P3 = 3,
    P4 = 4,
    P5 = 5,
    P6 = 6,
    P8 = 8,
    P16 = 16,
    P32 = 32,
    P64 = 64,
    P128 = 128
);

/// Explains rows one after another with one set of buffers (no allocation per row).
pub struct Explainer<'m> {
    ensemble: &'m TreeEnsemble,
    covers: &'m Covers,
    expected_value: f64,
    prepared: Vec<f64>,
    walker: Walker,
}

impl Explainer<'_> {
    /// The model's mean prediction over its training data.
    pub fn expected_value(&self) -> f64 {
        self.expected_value
    }

    /// Explains one row (`n_features()` values) into `contributions` (as many).
    pub fn explain_row(
        &mut self,
        row: &[f64],
        contributions: &mut [f64],
    ) -> Result<Explanation, ModelError> {
        let model = self.ensemble;
        if row.len() != model.n_features || contributions.len() != model.n_features {
            return Err(ModelError::invalid(format!(
                "a row of {} values and {} contributions for a model of {} features",
                row.len(),
                contributions.len(),
                model.n_features
            )));
        }
        self.prepared.clear();
        self.prepared.extend_from_slice(row);
        model.prepare(&mut self.prepared);
        contributions.fill(0.0);
        for &root in &model.roots {
            self.walker.walk_tree(
                &model.nodes,
                &self.covers.zero,
                root as usize,
                &self.prepared,
                contributions,
            );
        }
        if model.aggregate == Aggregate::Average {
            let trees = model.roots.len() as f64;
            for c in contributions.iter_mut() {
                *c /= trees;
            }
        }
        Ok(Explanation {
            prediction: model.predict_row(row),
            expected_value: self.expected_value,
        })
    }
}
