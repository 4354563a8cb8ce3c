//! `HistGradientBoostingRegressor`: its `TreePredictor` node arrays, baseline and link.
//! scikit-learn walks these trees on `float64` inputs (`X_DTYPE`), NaN going where each
//! node's `missing_go_to_left` says.

use super::{NodeBudget, n_features};
use crate::ensemble::{
    Aggregate, EnsembleSpec, InputPrecision, NodeSpec, PostTransform, SplitRule, TreeEnsemble,
    TreeSpec,
};
use crate::error::ModelError;
use crate::imported::{ImportedModel, child_index, split_feature};
use crate::python::Attrs;

pub(super) fn import(attrs: &Attrs<'_>, budget: &NodeBudget) -> Result<ImportedModel, ModelError> {
    let objects = attrs.objects;
    let n = n_features(attrs)?;
    if attrs
        .get("_preprocessor")
        .is_some_and(|p| !objects.is_none(p))
    {
        return Err(categorical_refused());
    }
    if let Some(flags) = attrs
        .get("is_categorical_")
        .filter(|&c| !objects.is_none(c))
    {
        let flags = objects.array(flags)?.to_i64()?;
        if flags.iter().any(|&f| f != 0) {
            return Err(categorical_refused());
        }
    }
    let per_iteration = attrs.i64("n_trees_per_iteration_").unwrap_or(1);
    if per_iteration != 1 {
        return Err(ModelError::unsupported(format!(
            "HistGradientBoostingRegressor with {per_iteration} trees per iteration"
        )));
    }
    let post_transform = match attrs.str("loss")? {
        "squared_error" | "absolute_error" | "quantile" => PostTransform::None,
        // Log link: predictions are exp(raw).
        "poisson" | "gamma" => PostTransform::Exp,
        other => {
            return Err(ModelError::unsupported(format!(
                "HistGradientBoostingRegressor with loss {other:?}"
            )));
        }
    };
    let baseline = attrs.array("_baseline_prediction")?.to_f64()?;
    let base_value = match baseline.as_slice() {
        [b] if b.is_finite() => *b,
        _ => {
            return Err(ModelError::invalid(
                "HistGradientBoostingRegressor._baseline_prediction is not one finite number",
            ));
        }
    };
    let iterations = objects
        .items(attrs.require("_predictors")?)
        .ok_or_else(|| {
            ModelError::invalid("HistGradientBoostingRegressor._predictors is not a list")
        })?;
    if iterations.is_empty() {
        return Err(ModelError::invalid(
            "HistGradientBoostingRegressor has no fitted trees",
        ));
    }
    let mut trees = Vec::with_capacity(iterations.len());
    for &iteration in iterations {
        let predictors = objects.items(iteration).ok_or_else(|| {
            ModelError::invalid("HistGradientBoostingRegressor._predictors holds a non-list")
        })?;
        for &predictor in predictors {
            trees.push(convert_predictor(
                &Attrs::of(objects, predictor)?,
                n,
                budget,
            )?);
        }
    }
    let ensemble = TreeEnsemble::new(&EnsembleSpec {
        n_features: n,
        preprocess: Vec::new(),
        aggregate: Aggregate::Sum,
        base_value,
        post_transform,
        input_precision: InputPrecision::F64,
        trees,
    })?;
    Ok(ImportedModel {
        ensemble,
        estimator: attrs.short_class().to_owned(),
        feature_names: None,
        accepts_missing: true,
    })
}

fn categorical_refused() -> ModelError {
    ModelError::unsupported(
        "HistGradientBoostingRegressor with categorical features (only numeric features are served)",
    )
}

fn convert_predictor(
    predictor: &Attrs<'_>,
    n_features: usize,
    budget: &NodeBudget,
) -> Result<TreeSpec, ModelError> {
    if predictor.short_class() != "TreePredictor" {
        return Err(ModelError::invalid(format!(
            "expected a TreePredictor, found {}",
            predictor.class
        )));
    }
    let nodes = predictor.array("nodes")?;
    let count = nodes.len();
    if count == 0 {
        return Err(ModelError::invalid("a TreePredictor has no nodes"));
    }
    budget.take(count)?;
    let value = nodes.field_f64("value")?;
    let feature = nodes.field_i64("feature_idx")?;
    let threshold = nodes.field_f64("num_threshold")?;
    let missing_left = nodes.field_i64("missing_go_to_left")?;
    let left = nodes.field_i64("left")?;
    let right = nodes.field_i64("right")?;
    let is_leaf = nodes.field_i64("is_leaf")?;
    // How many training samples reached each node: the covers explanations weigh by
    // (what `shap.TreeExplainer` reads for these trees).
    let covers = if nodes.has_field("count") {
        Some(nodes.field_f64("count")?)
    } else {
        None
    };
    let is_categorical = if nodes.has_field("is_categorical") {
        nodes.field_i64("is_categorical")?
    } else {
        vec![0; count]
    };
    let mut specs = Vec::with_capacity(count);
    for i in 0..count {
        if is_leaf[i] != 0 {
            specs.push(NodeSpec::Leaf { leaf: value[i] });
            continue;
        }
        if is_categorical[i] != 0 {
            return Err(categorical_refused());
        }
        let node = format!("TreePredictor node {i}");
        let feature = split_feature(feature[i], n_features, &node)?;
        let go_left = missing_left[i] != 0;
        specs.push(NodeSpec::Split {
            feature,
            rule: SplitRule::Leq,
            threshold: threshold[i],
            yes: child_index(left[i], count, &node, "left child")?,
            no: child_index(right[i], count, &node, "right child")?,
            missing_yes: go_left,
            missing_no: !go_left,
            nan_as_zero: false,
            zero_is_missing: false,
        });
    }
    Ok(TreeSpec {
        nodes: specs,
        covers,
    })
}
