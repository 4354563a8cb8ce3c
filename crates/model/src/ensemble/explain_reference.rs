//! The path-dependent TreeSHAP of the paper (algorithm 2, as `shap`'s C++ implements it),
//! kept beside the tests as an independent reference for the linear walk on trees too
//! deep to check against Shapley values by definition.

use super::{Aggregate, General, LEAF, Node, Step, TreeEnsemble};

/// The contributions of one row by the paper's algorithm.
pub fn explain(model: &TreeEnsemble, row: &[f64]) -> Vec<f64> {
    let covers = &model.explain.as_ref().expect("covers").covers;
    let mut prepared = row.to_vec();
    model.prepare(&mut prepared);
    let mut phi = vec![0.0; model.n_features];
    let depth = 260;
    let mut path = vec![PathElement::default(); (depth + 2) * (depth + 3) / 2 + 2];
    for &root in &model.roots {
        Walk {
            nodes: &model.nodes,
            covers,
            row: &prepared,
            phi: &mut phi,
            path: &mut path,
        }
        .node(root as usize, 0, 0, 1.0, 1.0, -1);
    }
    if model.aggregate == Aggregate::Average {
        let trees = model.roots.len() as f64;
        for c in &mut phi {
            *c /= trees;
        }
    }
    phi
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
