//! scikit-learn's `Tree` (the node storage of decision trees, forests and classic gradient
//! boosting) and the estimators built on it.

use super::{NodeBudget, n_features};
use crate::ensemble::{
    Aggregate, EnsembleSpec, InputPrecision, NodeSpec, PostTransform, SplitRule, TreeEnsemble,
    TreeSpec,
};
use crate::error::ModelError;
use crate::imported::{ImportedModel, child_index, split_feature};
use crate::python::{Attrs, Id};

/// scikit-learn's marker for "no child".
const TREE_LEAF: i64 = -1;

/// One fitted `Tree` (`estimator.tree_`), its leaves scaled by `scale`; also whether its
/// nodes record how missing values go.
fn convert_tree(
    estimator: &Attrs<'_>,
    n_features: usize,
    scale: f64,
    budget: &NodeBudget,
) -> Result<(TreeSpec, bool), ModelError> {
    let objects = estimator.objects;
    if !matches!(
        estimator.short_class(),
        "DecisionTreeRegressor" | "ExtraTreeRegressor"
    ) {
        return Err(super::unsupported_class(&estimator.class));
    }
    let tree_id = estimator.require("tree_")?;
    let tree = Attrs::of(objects, tree_id)?;
    if tree.short_class() != "Tree" {
        return Err(ModelError::invalid(format!(
            "{}.tree_ is {}, not a Tree",
            estimator.short_class(),
            tree.class
        )));
    }
    let n_outputs = objects
        .call_args(tree_id)
        .get(2)
        .and_then(|&n| objects.as_i64(n))
        .unwrap_or(1);
    if n_outputs != 1 {
        return Err(ModelError::unsupported(format!(
            "a tree with {n_outputs} outputs (only single-output regressors are served)"
        )));
    }
    let nodes = tree.array("nodes")?;
    let values = tree.array("values")?.to_f64()?;
    let count = nodes.len();
    if count == 0 {
        return Err(ModelError::invalid("a tree has no nodes"));
    }
    budget.take(count)?;
    if values.len() != count {
        return Err(ModelError::invalid(format!(
            "a tree has {count} nodes but {} values (multi-output or a classifier?)",
            values.len()
        )));
    }
    let left = nodes.field_i64("left_child")?;
    let right = nodes.field_i64("right_child")?;
    let feature = nodes.field_i64("feature")?;
    let threshold = nodes.field_f64("threshold")?;
    let has_missing = nodes.has_field("missing_go_to_left");
    let missing_left = if has_missing {
        nodes.field_i64("missing_go_to_left")?
    } else {
        vec![0; count]
    };
    // The covers explanations need (what shap.TreeExplainer reads for these trees).
    let covers = if nodes.has_field("weighted_n_node_samples") {
        Some(nodes.field_f64("weighted_n_node_samples")?)
    } else {
        None
    };
    let mut specs = Vec::with_capacity(count);
    for i in 0..count {
        if left[i] == TREE_LEAF || right[i] == TREE_LEAF {
            specs.push(NodeSpec::Leaf {
                leaf: values[i] * scale,
            });
            continue;
        }
        let node = format!("tree node {i}");
        let feature = split_feature(feature[i], n_features, &node)?;
        let go_left = missing_left[i] != 0;
        specs.push(NodeSpec::Split {
            feature,
            rule: SplitRule::Leq,
            threshold: threshold[i],
            yes: child_index(left[i], count, &node, "left child")?,
            no: child_index(right[i], count, &node, "right child")?,
            missing_yes: has_missing && go_left,
            missing_no: has_missing && !go_left,
            nan_as_zero: false,
            zero_is_missing: false,
        });
    }
    Ok((
        TreeSpec {
            nodes: specs,
            covers,
        },
        has_missing,
    ))
}

fn ensemble(
    n_features: usize,
    trees: Vec<TreeSpec>,
    aggregate: Aggregate,
    base_value: f64,
) -> Result<TreeEnsemble, ModelError> {
    TreeEnsemble::new(&EnsembleSpec {
        n_features,
        preprocess: Vec::new(),
        aggregate,
        base_value,
        post_transform: PostTransform::None,
        // scikit-learn validates X as float32 before walking its trees.
        input_precision: InputPrecision::F32,
        trees,
    })
}

pub(super) fn import_single_tree(
    attrs: &Attrs<'_>,
    budget: &NodeBudget,
) -> Result<ImportedModel, ModelError> {
    let n = n_features(attrs)?;
    let (tree, has_missing) = convert_tree(attrs, n, 1.0, budget)?;
    Ok(ImportedModel {
        ensemble: ensemble(n, vec![tree], Aggregate::Sum, 0.0)?,
        estimator: attrs.short_class().to_owned(),
        feature_names: None,
        accepts_missing: has_missing,
    })
}

/// The fitted trees of a forest or a boosting model, each converted.
fn convert_all(
    attrs: &Attrs<'_>,
    items: &[Id],
    n: usize,
    scale: f64,
    budget: &NodeBudget,
) -> Result<(Vec<TreeSpec>, bool), ModelError> {
    if items.is_empty() {
        return Err(ModelError::invalid(format!(
            "{} has no fitted trees",
            attrs.short_class()
        )));
    }
    let mut trees = Vec::with_capacity(items.len());
    let mut all_missing = true;
    for &id in items {
        let (tree, has_missing) = convert_tree(&Attrs::of(attrs.objects, id)?, n, scale, budget)?;
        all_missing &= has_missing;
        trees.push(tree);
    }
    Ok((trees, all_missing))
}

pub(super) fn import_forest(
    attrs: &Attrs<'_>,
    budget: &NodeBudget,
) -> Result<ImportedModel, ModelError> {
    let n = n_features(attrs)?;
    let estimators = attrs.require("estimators_")?;
    let items = attrs.objects.items(estimators).ok_or_else(|| {
        ModelError::invalid(format!("{}.estimators_ is not a list", attrs.short_class()))
    })?;
    let (trees, all_missing) = convert_all(attrs, items, n, 1.0, budget)?;
    Ok(ImportedModel {
        ensemble: ensemble(n, trees, Aggregate::Average, 0.0)?,
        estimator: attrs.short_class().to_owned(),
        feature_names: None,
        accepts_missing: all_missing,
    })
}

pub(super) fn import_gradient_boosting(
    attrs: &Attrs<'_>,
    budget: &NodeBudget,
) -> Result<ImportedModel, ModelError> {
    let n = n_features(attrs)?;
    let loss = attrs.str("loss").unwrap_or("squared_error");
    if !matches!(
        loss,
        "squared_error" | "absolute_error" | "huber" | "quantile" | "ls" | "lad"
    ) {
        return Err(ModelError::unsupported(format!(
            "GradientBoostingRegressor with loss {loss:?}"
        )));
    }
    let learning_rate = attrs.f64("learning_rate")?;
    if !learning_rate.is_finite() {
        return Err(ModelError::invalid(
            "GradientBoostingRegressor.learning_rate is not finite",
        ));
    }
    let base_value = init_prediction(attrs)?;
    let estimators = attrs.array("estimators_")?;
    if estimators.shape.len() != 2 || estimators.shape[1] != 1 {
        return Err(ModelError::unsupported(format!(
            "GradientBoostingRegressor.estimators_ of shape {:?} (expected (n, 1))",
            estimators.shape
        )));
    }
    let (trees, _) = convert_all(attrs, estimators.objects()?, n, learning_rate, budget)?;
    Ok(ImportedModel {
        ensemble: ensemble(n, trees, Aggregate::Sum, base_value)?,
        estimator: attrs.short_class().to_owned(),
        feature_names: None,
        // scikit-learn refuses NaN here ("does not accept missing values encoded as NaN").
        accepts_missing: false,
    })
}

/// The raw prediction before the first stage: `init_` is `"zero"` or a `DummyRegressor`
/// (the loss's link is the identity for every regression loss).
fn init_prediction(attrs: &Attrs<'_>) -> Result<f64, ModelError> {
    let objects = attrs.objects;
    let init = attrs.require("init_")?;
    if objects.as_str(init) == Some("zero") {
        return Ok(0.0);
    }
    let dummy = Attrs::of(objects, init)?;
    if dummy.short_class() != "DummyRegressor" {
        return Err(ModelError::unsupported(format!(
            "GradientBoostingRegressor with init={} (served: the default, \"zero\", or a DummyRegressor)",
            dummy.class
        )));
    }
    let constant = dummy.array("constant_")?.to_f64()?;
    match constant.as_slice() {
        [c] if c.is_finite() => Ok(*c),
        _ => Err(ModelError::invalid(
            "GradientBoostingRegressor.init_.constant_ is not a single finite number",
        )),
    }
}
