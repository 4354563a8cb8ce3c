//! Exact path-dependent TreeSHAP (Lundberg, Erion and Lee, "Consistent Individualized
//! Feature Attribution for Tree Ensembles", algorithm 2; the algorithm `shap.TreeExplainer`
//! implements) over the evaluator's own compiled trees.
//!
//! Each tree is walked once per row, keeping the path of unique features from the root
//! with the share of every subset of them that reaches the node; at a leaf each feature on
//! the path gets its Shapley weight times the leaf. "What the model expects without a
//! feature" is read from the node covers (the training data that reached each node), so a
//! model without covers cannot be explained. The contributions of a row sum, with the
//! expected value, to the raw prediction.

use super::{Aggregate, General, LEAF, Node, PostTransform, Step, TreeEnsemble};
use crate::error::ModelError;

/// Deeper trees are not explained: the walk recurses once per level and its path
/// workspace grows with the square of the depth.
pub const MAX_EXPLAIN_DEPTH: usize = 256;

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
        Covers {
            covers,
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

/// One element of the path of unique features: the feature (-1 for the root), the share
/// of the cover that goes this way when the feature is unknown (`zero`) and whether the
/// row goes this way (`one`), and the weight of the subsets of this length.
#[derive(Debug, Clone, Copy, Default)]
struct PathElement {
    feature: i32,
    zero: f64,
    one: f64,
    weight: f64,
}

/// Adds a feature to the path of `depth + 1` elements (at index `depth`).
fn extend(path: &mut [PathElement], depth: usize, zero: f64, one: f64, feature: i32) {
    path[depth] = PathElement {
        feature,
        zero,
        one,
        weight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let len = (depth + 1) as f64;
    for i in (0..depth).rev() {
        path[i + 1].weight += one * path[i].weight * (i + 1) as f64 / len;
        path[i].weight = zero * path[i].weight * (depth - i) as f64 / len;
    }
}

/// Removes element `index` from the path of `depth + 1` elements, undoing its `extend`.
fn unwind(path: &mut [PathElement], depth: usize, index: usize) {
    let PathElement { one, zero, .. } = path[index];
    let len = (depth + 1) as f64;
    let mut next = path[depth].weight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let kept = path[i].weight;
            path[i].weight = next * len / ((i + 1) as f64 * one);
            next = kept - path[i].weight * zero * (depth - i) as f64 / len;
        } else {
            path[i].weight = path[i].weight * len / (zero * (depth - i) as f64);
        }
    }
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
}

/// The total weight of the path with element `index` unwound, without changing it.
fn unwound_sum(path: &[PathElement], depth: usize, index: usize) -> f64 {
    let PathElement { one, zero, .. } = path[index];
    let len = (depth + 1) as f64;
    let mut next = path[depth].weight;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let w = next * len / ((i + 1) as f64 * one);
            total += w;
            next = path[i].weight - w * zero * (depth - i) as f64 / len;
        } else if zero != 0.0 {
            total += path[i].weight / zero / ((depth - i) as f64 / len);
        }
    }
    total
}

/// One tree's walk for one row.
struct Walk<'a> {
    nodes: &'a [Node],
    covers: &'a [f64],
    row: &'a [f64],
    phi: &'a mut [f64],
    path: &'a mut [PathElement],
}

impl Walk<'_> {
    /// Node `i`, its parent's path at `parent` (`depth + 1` elements, or none at the root),
    /// and the edge into it: `zero`, `one` and the parent's split feature.
    fn node(
        &mut self,
        i: usize,
        parent: usize,
        mut depth: usize,
        zero: f64,
        one: f64,
        feature: i32,
    ) {
        // This node's path follows its parent's.
        let here = parent + depth + 1;
        self.path.copy_within(parent..parent + depth + 1, here);
        extend(&mut self.path[here..], depth, zero, one, feature);
        let node = &self.nodes[i];
        if node.rule == LEAF {
            let path = &self.path[here..here + depth + 1];
            for k in 1..=depth {
                let w = unwound_sum(path, depth, k);
                let el = path[k];
                self.phi[el.feature as usize] += w * (el.one - el.zero) * node.value;
            }
            return;
        }
        let hot = General::next(i, node, self.row);
        let cold = if hot == i + 1 {
            node.no as usize
        } else {
            i + 1
        };
        let split = i32::from(node.feature);
        let (mut incoming_zero, mut incoming_one) = (1.0, 1.0);
        if let Some(k) = (0..=depth).find(|&k| self.path[here + k].feature == split) {
            incoming_zero = self.path[here + k].zero;
            incoming_one = self.path[here + k].one;
            unwind(&mut self.path[here..], depth, k);
            depth -= 1;
        }
        let cover = self.covers[i];
        self.node(
            hot,
            here,
            depth + 1,
            self.covers[hot] / cover * incoming_zero,
            incoming_one,
            split,
        );
        self.node(
            cold,
            here,
            depth + 1,
            self.covers[cold] / cover * incoming_zero,
            0.0,
            split,
        );
    }
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
        let d = covers.max_depth;
        Ok(Explainer {
            ensemble: self,
            covers,
            expected_value: expected_value + self.base_value,
            prepared: Vec::with_capacity(self.n_features),
            // Each level's path (at most depth + 2 elements) follows its parent's.
            path: vec![PathElement::default(); (d + 2) * (d + 3) / 2 + 2],
        })
    }
}

/// Explains rows one after another with one set of buffers (no allocation per row).
pub struct Explainer<'m> {
    ensemble: &'m TreeEnsemble,
    covers: &'m Covers,
    expected_value: f64,
    prepared: Vec<f64>,
    path: Vec<PathElement>,
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
            Walk {
                nodes: &model.nodes,
                covers: &self.covers.covers,
                row: &self.prepared,
                phi: contributions,
                path: &mut self.path,
            }
            .node(root as usize, 0, 0, 1.0, 1.0, -1);
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
