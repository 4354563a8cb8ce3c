//! Importer for smartcore's `RandomForestRegressor`.
//!
//! smartcore keeps its trees private; its serde form is the one stable view of them
//! (`forest_regressor.trees[].nodes[]` with `output`, `split_feature`, `split_value`,
//! `true_child`, `false_child`; a node without children is a leaf; the forest predicts
//! the mean of its trees, going to the true child when `x <= split_value`).

use serde::Deserialize;
use smartcore::ensemble::random_forest_regressor::RandomForestRegressor;
use smartcore::linalg::basic::matrix::DenseMatrix;

use crate::ensemble::{
    Aggregate, EnsembleSpec, InputPrecision, NodeSpec, PostTransform, SplitRule, TreeEnsemble,
    TreeSpec,
};
use crate::error::ModelError;

pub type SmartcoreForest = RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>;

#[derive(Deserialize)]
struct ForestView {
    forest_regressor: Option<BaseForestView>,
}

#[derive(Deserialize)]
struct BaseForestView {
    trees: Option<Vec<TreeView>>,
}

#[derive(Deserialize)]
struct TreeView {
    nodes: Vec<NodeView>,
}

#[derive(Deserialize)]
struct NodeView {
    output: f64,
    split_feature: usize,
    split_value: Option<f64>,
    true_child: Option<usize>,
    false_child: Option<usize>,
}

/// Converts a fitted smartcore forest into the serving evaluator. smartcore keeps no node
/// covers, so they are counted by passing `training_rows` (the rows it was fitted on)
/// through each tree, as `shap.TreeExplainer` does when it is given data; with no rows the
/// forest predicts but cannot be explained.
pub fn import_smartcore_forest(
    forest: &SmartcoreForest,
    n_features: usize,
    training_rows: &[Vec<f64>],
) -> Result<TreeEnsemble, ModelError> {
    let value = serde_json::to_value(forest)
        .map_err(|e| ModelError::invalid(format!("cannot read the smartcore forest: {e}")))?;
    let view: ForestView = serde_json::from_value(value).map_err(|e| {
        ModelError::unsupported(format!(
            "the smartcore forest's layout is not the one this importer knows: {e}"
        ))
    })?;
    let trees = view
        .forest_regressor
        .and_then(|f| f.trees)
        .ok_or_else(|| ModelError::invalid("the smartcore forest is not fitted"))?;
    let trees = trees
        .into_iter()
        .map(|tree| {
            let nodes: Vec<NodeSpec> = tree
                .nodes
                .into_iter()
                .map(|n| match (n.true_child, n.false_child, n.split_value) {
                    (Some(yes), Some(no), Some(threshold)) => NodeSpec::Split {
                        feature: n.split_feature,
                        rule: SplitRule::Leq,
                        threshold,
                        yes,
                        no,
                        missing_yes: false,
                        missing_no: false,
                        nan_as_zero: false,
                        zero_is_missing: false,
                    },
                    _ => NodeSpec::Leaf { leaf: n.output },
                })
                .collect();
            let covers = (!training_rows.is_empty()).then(|| count_covers(&nodes, training_rows));
            TreeSpec { nodes, covers }
        })
        .collect();
    TreeEnsemble::new(&EnsembleSpec {
        n_features,
        preprocess: Vec::new(),
        aggregate: Aggregate::Average,
        base_value: 0.0,
        post_transform: PostTransform::None,
        input_precision: InputPrecision::F64,
        trees,
    })
}

/// How many of `rows` reach each node of a tree of `x <= threshold` splits (the form
/// smartcore's trees have; a child index out of range ends that row's walk).
fn count_covers(nodes: &[NodeSpec], rows: &[Vec<f64>]) -> Vec<f64> {
    let mut covers = vec![0.0; nodes.len()];
    for row in rows {
        let mut i = 0;
        // Each step goes down one level, so a tree of n nodes is left within n steps.
        for _ in 0..nodes.len() {
            let Some(node) = nodes.get(i) else { break };
            covers[i] += 1.0;
            match node {
                NodeSpec::Leaf { .. } => break,
                NodeSpec::Split {
                    feature,
                    threshold,
                    yes,
                    no,
                    ..
                } => {
                    let value = row.get(*feature).copied().unwrap_or(f64::NAN);
                    i = if value <= *threshold { *yes } else { *no };
                }
            }
        }
    }
    covers
}
