//! Trees as specified compiled into the evaluator's flat pre-order nodes, and back.

use super::*;

pub(super) fn to_u32(v: usize) -> Result<u32, ModelError> {
    u32::try_from(v).map_err(|_| ModelError::invalid("the ensemble has more than 2^32 nodes"))
}

/// Appends `tree` to `out` in pre-order (yes-child next), checking it is a proper tree.
/// With `covers_out`, the tree's covers (which it must have) are appended in the same
/// order as its nodes.
pub(super) fn compile_tree(
    tree: &TreeSpec,
    tree_index: usize,
    n_features: usize,
    out: &mut Vec<Node>,
    mut covers_out: Option<&mut Vec<f64>>,
) -> Result<(), ModelError> {
    let len = tree.nodes.len();
    if len == 0 {
        return Err(ModelError::invalid(format!(
            "tree {tree_index} has no nodes"
        )));
    }
    if let Some(covers) = &tree.covers {
        if covers.len() != len {
            return Err(ModelError::invalid(format!(
                "tree {tree_index} has {len} nodes but {} covers",
                covers.len()
            )));
        }
        if let Some(bad) = covers.iter().position(|c| !c.is_finite() || *c < 0.0) {
            return Err(ModelError::invalid(format!(
                "tree {tree_index}: node {bad} has cover {}, not a finite count >= 0",
                covers[bad]
            )));
        }
    }
    let mut visited = vec![false; len];
    // (spec index, compiled index of the parent whose `no` must point here)
    let mut stack: Vec<(usize, Option<usize>)> = vec![(0, None)];
    while let Some((index, patch_parent)) = stack.pop() {
        let node = tree.nodes.get(index).ok_or_else(|| {
            ModelError::invalid(format!(
                "tree {tree_index} refers to node {index}, but it has only {len} nodes"
            ))
        })?;
        if std::mem::replace(&mut visited[index], true) {
            return Err(ModelError::invalid(format!(
                "tree {tree_index}: node {index} is reached twice (not a tree)"
            )));
        }
        let here = out.len();
        if let Some(parent) = patch_parent {
            out[parent].no = to_u32(here)?;
        }
        if let (Some(covers), Some(from)) = (covers_out.as_deref_mut(), tree.covers.as_ref()) {
            covers.push(from[index]);
        }
        match *node {
            NodeSpec::Leaf { leaf } => {
                if !leaf.is_finite() {
                    return Err(ModelError::invalid(format!(
                        "tree {tree_index}: leaf {index} has a non-finite value"
                    )));
                }
                out.push(Node {
                    value: leaf,
                    no: 0,
                    feature: 0,
                    rule: LEAF,
                    flags: 0,
                });
            }
            NodeSpec::Split {
                feature,
                rule,
                threshold,
                yes,
                no,
                missing_yes,
                missing_no,
                nan_as_zero,
                zero_is_missing,
            } => {
                if missing_yes && missing_no {
                    return Err(ModelError::invalid(format!(
                        "tree {tree_index}: node {index} sends missing values both ways"
                    )));
                }
                if feature >= n_features {
                    return Err(ModelError::invalid(format!(
                        "tree {tree_index}: node {index} splits on feature {feature}, \
                         but the model has {n_features} features"
                    )));
                }
                if threshold.is_nan() {
                    return Err(ModelError::invalid(format!(
                        "tree {tree_index}: node {index} has a NaN threshold"
                    )));
                }
                out.push(Node {
                    value: threshold,
                    no: 0,
                    // n_features <= u16::MAX was checked by the caller.
                    feature: feature as u16,
                    rule: rule as u8,
                    flags: (if missing_yes { MISSING_YES } else { 0 })
                        | (if missing_no { MISSING_NO } else { 0 })
                        | (if nan_as_zero { NAN_AS_ZERO } else { 0 })
                        | (if zero_is_missing { ZERO_IS_MISSING } else { 0 }),
                });
                // The "no" subtree is emitted after the whole "yes" subtree.
                stack.push((no, Some(here)));
                stack.push((yes, None));
            }
        }
    }
    if let Some(orphan) = visited.iter().position(|v| !v) {
        return Err(ModelError::invalid(format!(
            "tree {tree_index}: node {orphan} is not reachable from the root"
        )));
    }
    Ok(())
}

impl TreeEnsemble {
    /// The ensemble back in its serialisable form (pre-order, yes-child first).
    pub fn to_spec(&self) -> EnsembleSpec {
        let trees = self
            .roots
            .iter()
            .enumerate()
            .map(|(t, &root)| {
                let start = root as usize;
                let end = self
                    .roots
                    .get(t + 1)
                    .map(|&r| r as usize)
                    .unwrap_or(self.nodes.len());
                let nodes = self.nodes[start..end]
                    .iter()
                    .enumerate()
                    .map(|(local, n)| {
                        if n.rule == LEAF {
                            NodeSpec::Leaf { leaf: n.value }
                        } else {
                            NodeSpec::Split {
                                feature: usize::from(n.feature),
                                rule: rule_from_u8(n.rule),
                                threshold: n.value,
                                yes: local + 1,
                                no: n.no as usize - start,
                                missing_yes: n.flags & MISSING_YES != 0,
                                missing_no: n.flags & MISSING_NO != 0,
                                nan_as_zero: n.flags & NAN_AS_ZERO != 0,
                                zero_is_missing: n.flags & ZERO_IS_MISSING != 0,
                            }
                        }
                    })
                    .collect();
                let covers = self.explain.as_ref().map(|e| e.covers[start..end].to_vec());
                TreeSpec { nodes, covers }
            })
            .collect();
        EnsembleSpec {
            n_features: self.n_features,
            preprocess: self.preprocess.clone(),
            aggregate: self.aggregate,
            base_value: self.base_value,
            post_transform: self.post_transform,
            input_precision: self.input_precision,
            trees,
        }
    }
}
