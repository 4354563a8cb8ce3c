//! Importer for LightGBM models (MLflow's `lightgbm` flavor): a Booster's text model
//! (`model.lgb`), or the same text inside a pickled or skops `LGBMRegressor`/`Booster`.
//!
//! Numerical splits: `x <= threshold` goes left; per node, `missing_type` None (NaN read as
//! 0), Zero (NaN and zero are missing) or NaN, with `default_left`. Inputs are compared as
//! `f64`, leaves summed in `f64` (as LightGBM does); the objective's transform follows.

use crate::ensemble::{
    Aggregate, EnsembleSpec, InputPrecision, NodeSpec, PostTransform, SplitRule, TreeEnsemble,
    TreeSpec,
};
use crate::error::ModelError;
use crate::imported::{self, ImportedModel};
use crate::python::{Attrs, Id, Objects};

/// Most trees accepted.
const MAX_TREES: usize = 100_000;

const CATEGORICAL_MASK: i64 = 1;
const DEFAULT_LEFT_MASK: i64 = 2;

/// Reads a LightGBM text model.
pub fn import_lightgbm_text(text: &str, estimator: &str) -> Result<ImportedModel, ModelError> {
    import_lightgbm_iterations(text, estimator, None)
}

/// Reads a LightGBM text model, keeping only the first `iterations` trees when given (a
/// pickled Booster keeps every iteration but predicts with its `best_iteration`).
fn import_lightgbm_iterations(
    text: &str,
    estimator: &str,
    iterations: Option<usize>,
) -> Result<ImportedModel, ModelError> {
    let (header, rest) = match text.find("\nTree=") {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => {
            return Err(ModelError::invalid(
                "not a LightGBM text model (no `Tree=` section)",
            ));
        }
    };
    if !header.trim_start().starts_with("tree") {
        return Err(ModelError::invalid(
            "not a LightGBM text model (it does not start with `tree`)",
        ));
    }
    let key = |k: &str| -> Option<&str> {
        header
            .lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
    };
    let num_class: usize = key("num_class")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1);
    let per_iteration: usize = key("num_tree_per_iteration")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1);
    if num_class != 1 || per_iteration != 1 {
        return Err(ModelError::unsupported(format!(
            "a multi-class LightGBM model (num_class {num_class}); only single-output models are served"
        )));
    }
    let max_feature_idx: usize = key("max_feature_idx")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ModelError::invalid("the LightGBM model lacks max_feature_idx"))?;
    let n_features = max_feature_idx + 1;
    if n_features > usize::from(u16::MAX) {
        return Err(ModelError::invalid(format!(
            "the LightGBM model declares {n_features} features"
        )));
    }
    let objective = key("objective").unwrap_or("regression").trim();
    let (post_transform, scale) = transform(objective)?;
    let aggregate = if header.lines().any(|l| l.trim() == "average_output") {
        Aggregate::Average
    } else {
        Aggregate::Sum
    };
    let feature_names = key("feature_names")
        .map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|names| names.len() == n_features);

    let body = rest.split("\nend of trees").next().unwrap_or(rest);
    let mut trees = Vec::new();
    let blocks = body.split("Tree=").filter(|b| !b.trim().is_empty());
    for (index, block) in blocks.take(iterations.unwrap_or(usize::MAX)).enumerate() {
        if trees.len() >= MAX_TREES {
            return Err(ModelError::invalid(format!(
                "the LightGBM model has more than {MAX_TREES} trees"
            )));
        }
        trees.push(convert_tree(block, index, n_features, scale)?);
    }
    if trees.is_empty() {
        return Err(ModelError::invalid("the LightGBM model has no trees"));
    }
    let ensemble = TreeEnsemble::new(&EnsembleSpec {
        n_features,
        preprocess: Vec::new(),
        aggregate,
        base_value: 0.0,
        post_transform,
        input_precision: InputPrecision::F64,
        trees,
    })?;
    Ok(ImportedModel {
        ensemble,
        estimator: format!(
            "{estimator} ({})",
            objective.split_whitespace().next().unwrap_or(objective)
        ),
        feature_names,
        accepts_missing: true,
    })
}

/// Reads the Booster's text out of a pickled or skops `LGBMRegressor` or `Booster`.
pub fn import_lightgbm_object(objects: &Objects, root: Id) -> Result<ImportedModel, ModelError> {
    let attrs = Attrs::of(objects, root)?;
    let (booster, estimator) = match attrs.short_class() {
        "LGBMRegressor" => (
            Attrs::of(objects, attrs.require("_Booster")?)?,
            "LGBMRegressor",
        ),
        "Booster" => (attrs, "Booster"),
        other => {
            return Err(ModelError::unsupported(format!(
                "LightGBM estimator {other} (served: LGBMRegressor and Booster)"
            )));
        }
    };
    let text = booster.str("_handle")?;
    // As LightGBM's predict: with early stopping, only the best iteration's trees count.
    let best = booster
        .get("best_iteration")
        .and_then(|b| objects.as_i64(b))
        .and_then(|b| usize::try_from(b).ok())
        .filter(|&b| b > 0);
    import_lightgbm_iterations(text, estimator, best)
}

/// The output transform of an objective line (`binary sigmoid:1`, `tweedie ...`), and a
/// factor applied to every leaf (the sigmoid's slope, folded into the scores).
fn transform(objective: &str) -> Result<(PostTransform, f64), ModelError> {
    let mut words = objective.split_whitespace();
    let name = words.next().unwrap_or("regression");
    let options: Vec<&str> = words.collect();
    match name {
        "regression" | "regression_l2" | "l2" | "mean_squared_error" | "mse"
            if options.contains(&"sqrt") =>
        {
            Err(ModelError::unsupported("LightGBM regression with reg_sqrt"))
        }
        "regression" | "regression_l2" | "l2" | "mean_squared_error" | "mse" | "regression_l1"
        | "l1" | "huber" | "fair" | "quantile" | "mape" => Ok((PostTransform::None, 1.0)),
        "poisson" | "gamma" | "tweedie" => Ok((PostTransform::Exp, 1.0)),
        "binary" | "cross_entropy" | "xentropy" => {
            let sigmoid = options
                .iter()
                .find_map(|o| o.strip_prefix("sigmoid:"))
                .map(|s| s.parse::<f64>())
                .transpose()
                .map_err(|_| {
                    ModelError::invalid(format!("bad sigmoid in LightGBM objective {objective:?}"))
                })?
                .unwrap_or(1.0);
            if !sigmoid.is_finite() || sigmoid <= 0.0 {
                return Err(ModelError::invalid(format!(
                    "bad sigmoid in LightGBM objective {objective:?}"
                )));
            }
            Ok((PostTransform::Logistic, sigmoid))
        }
        other => Err(ModelError::unsupported(format!(
            "LightGBM objective {other:?} (served: regression objectives, poisson, gamma, tweedie, binary)"
        ))),
    }
}

fn convert_tree(
    block: &str,
    index: usize,
    n_features: usize,
    scale: f64,
) -> Result<TreeSpec, ModelError> {
    let field = |k: &str| -> Option<&str> {
        block
            .lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
    };
    let ints = |k: &str| -> Result<Vec<i64>, ModelError> {
        field(k)
            .unwrap_or("")
            .split_whitespace()
            .map(|t| t.parse::<i64>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                ModelError::invalid(format!("LightGBM tree {index}: `{k}` holds a non-integer"))
            })
    };
    let floats = |k: &str| -> Result<Vec<f64>, ModelError> {
        field(k)
            .unwrap_or("")
            .split_whitespace()
            .map(|t| t.parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                ModelError::invalid(format!("LightGBM tree {index}: `{k}` holds a non-number"))
            })
    };
    if field("is_linear").map(str::trim) == Some("1") {
        return Err(ModelError::unsupported(
            "LightGBM linear trees (linear_tree=True)",
        ));
    }
    if field("num_cat")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        > 0
    {
        return Err(ModelError::unsupported(
            "LightGBM categorical splits (only numerical splits are served)",
        ));
    }
    let num_leaves: usize = field("num_leaves")
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n >= 1)
        .ok_or_else(|| ModelError::invalid(format!("LightGBM tree {index} lacks num_leaves")))?;
    let leaf_value = floats("leaf_value")?;
    if leaf_value.len() != num_leaves {
        return Err(ModelError::invalid(format!(
            "LightGBM tree {index}: {} leaf values for {num_leaves} leaves",
            leaf_value.len()
        )));
    }
    if num_leaves == 1 {
        // A tree that found no split: its one leaf is its expected value whatever its cover.
        return Ok(TreeSpec {
            covers: Some(vec![1.0]),
            nodes: vec![NodeSpec::Leaf {
                leaf: leaf_value[0] * scale,
            }],
        });
    }
    let internal = num_leaves - 1;
    let split_feature = ints("split_feature")?;
    let threshold = floats("threshold")?;
    let decision_type = ints("decision_type")?;
    let left = ints("left_child")?;
    let right = ints("right_child")?;
    if [
        split_feature.len(),
        threshold.len(),
        decision_type.len(),
        left.len(),
        right.len(),
    ]
    .iter()
    .any(|&l| l != internal)
    {
        return Err(ModelError::invalid(format!(
            "LightGBM tree {index}: its node arrays disagree with num_leaves {num_leaves}"
        )));
    }
    // Internal nodes first, then leaves; a negative child `c` is leaf `!c`.
    let child = |c: i64, i: usize| -> Result<usize, ModelError> {
        let target = if c >= 0 {
            usize::try_from(c).ok().filter(|&c| c < internal)
        } else {
            usize::try_from(!c)
                .ok()
                .filter(|&l| l < num_leaves)
                .map(|l| internal + l)
        };
        target.ok_or_else(|| {
            ModelError::invalid(format!(
                "LightGBM tree {index}, node {i}: child {c} is out of range"
            ))
        })
    };
    let mut nodes = Vec::with_capacity(internal + num_leaves);
    for i in 0..internal {
        let decision = decision_type[i];
        if decision & CATEGORICAL_MASK != 0 {
            return Err(ModelError::unsupported(
                "LightGBM categorical splits (only numerical splits are served)",
            ));
        }
        let feature = imported::split_feature(
            split_feature[i],
            n_features,
            &format!("LightGBM tree {index}, node {i}"),
        )?;
        let default_left = decision & DEFAULT_LEFT_MASK != 0;
        let (nan_as_zero, zero_is_missing, routed) = match (decision >> 2) & 3 {
            0 => (true, false, false),
            1 => (true, true, true),
            2 => (false, false, true),
            other => {
                return Err(ModelError::invalid(format!(
                    "LightGBM tree {index}, node {i}: unknown missing type {other}"
                )));
            }
        };
        nodes.push(NodeSpec::Split {
            feature,
            rule: SplitRule::Leq,
            threshold: threshold[i],
            yes: child(left[i], i)?,
            no: child(right[i], i)?,
            missing_yes: routed && default_left,
            missing_no: routed && !default_left,
            nan_as_zero,
            zero_is_missing,
        });
    }
    nodes.extend(
        leaf_value
            .iter()
            .map(|v| NodeSpec::Leaf { leaf: v * scale }),
    );
    // How many training rows reached each node, internal nodes then leaves (what
    // LightGBM's own and shap's TreeSHAP weigh by); a model saved without them has none.
    let covers = match (field("internal_count"), field("leaf_count")) {
        (Some(_), Some(_)) => {
            let mut counts = floats("internal_count")?;
            counts.extend(floats("leaf_count")?);
            Some(counts)
        }
        _ => None,
    };
    Ok(TreeSpec { nodes, covers })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(objective: &str, decision_type: i64, extra: &str) -> String {
        format!(
            "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx=1\n\
             objective={objective}\nfeature_names=a b\n\nTree=0\nnum_leaves=2\nnum_cat=0\nsplit_feature=1\n\
             threshold=0.5\ndecision_type={decision_type}\nleft_child=-1\nright_child=-2\nleaf_value=1 3\n\
             {extra}shrinkage=1\n\n\nend of trees\n"
        )
    }

    #[test]
    fn each_missing_type_routes_nan_and_zero_as_lightgbm_does() {
        // None: NaN is 0, compared as a number (0 <= 0.5: left).
        let none = import_lightgbm_text(&model("regression", 0, ""), "Booster").unwrap();
        assert_eq!(none.ensemble.predict_row(&[0.0, f64::NAN]), 1.0);
        assert_eq!(none.ensemble.predict_row(&[0.0, 0.7]), 3.0);
        // Zero, default right: NaN and 0 go right.
        let zero = import_lightgbm_text(&model("regression", 1 << 2, ""), "Booster").unwrap();
        assert_eq!(zero.ensemble.predict_row(&[0.0, f64::NAN]), 3.0);
        assert_eq!(zero.ensemble.predict_row(&[0.0, 0.0]), 3.0);
        assert_eq!(zero.ensemble.predict_row(&[0.0, 0.1]), 1.0);
        // NaN, default left: only NaN is missing.
        let nan = import_lightgbm_text(&model("regression", (2 << 2) | 2, ""), "Booster").unwrap();
        assert_eq!(nan.ensemble.predict_row(&[0.0, f64::NAN]), 1.0);
        assert_eq!(nan.ensemble.predict_row(&[0.0, 0.9]), 3.0);
        assert_eq!(
            nan.feature_names.as_deref(),
            Some(&["a".to_string(), "b".to_string()][..])
        );
    }

    #[test]
    fn objectives_transform_and_unsupported_trees_are_refused() {
        let b = import_lightgbm_text(&model("binary sigmoid:2", 0, ""), "Booster").unwrap();
        let p = b.ensemble.predict_row(&[0.0, 0.0]);
        assert!((p - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-12, "{p}");
        let p = import_lightgbm_text(&model("poisson", 0, ""), "Booster")
            .unwrap()
            .ensemble
            .predict_row(&[0.0, 1.0]);
        assert!((p - 3.0f64.exp()).abs() < 1e-9);
        let e =
            import_lightgbm_text(&model("regression", 0, "is_linear=1\n"), "Booster").unwrap_err();
        assert!(e.to_string().contains("linear"), "{e}");
        let e = import_lightgbm_text(&model("regression", 1, ""), "Booster").unwrap_err();
        assert!(e.to_string().contains("categorical"), "{e}");
        let e =
            import_lightgbm_text(&model("multiclass num_class:3", 0, ""), "Booster").unwrap_err();
        assert!(e.to_string().contains("multiclass"), "{e}");
        let bad = model("regression", 0, "").replace("right_child=-2", "right_child=-9");
        assert!(
            import_lightgbm_text(&bad, "Booster")
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        assert!(import_lightgbm_text("garbage", "Booster").is_err());
    }

    #[test]
    fn only_the_best_iterations_count_when_early_stopping_chose_them() {
        let one = model("regression", 0, "");
        let two = one.replace(
            "\n\n\nend of trees",
            "\n\nTree=1\nnum_leaves=1\nnum_cat=0\nleaf_value=100\nshrinkage=1\n\n\nend of trees",
        );
        let all = import_lightgbm_iterations(&two, "Booster", None).unwrap();
        assert_eq!(all.ensemble.n_trees(), 2);
        assert_eq!(all.ensemble.predict_row(&[0.0, 0.0]), 101.0);
        let best = import_lightgbm_iterations(&two, "Booster", Some(1)).unwrap();
        assert_eq!(best.ensemble.n_trees(), 1);
        assert_eq!(best.ensemble.predict_row(&[0.0, 0.0]), 1.0);
    }
}
