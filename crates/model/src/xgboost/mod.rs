//! Importer for XGBoost models (MLflow's `xgboost` flavor: `model.ubj`, its default, and
//! `model.json`) into the native evaluator.
//!
//! `gbtree` boosters with numeric splits: `x < split_condition` goes left, a missing value
//! goes where `default_left` says, inputs are compared as `float32` (as XGBoost converts
//! them). The base score is turned into a margin and the objective's transform applied.

mod ubjson;

use serde_json::Value;

use crate::ensemble::{
    Aggregate, EnsembleSpec, InputPrecision, NodeSpec, PostTransform, SplitRule, TreeEnsemble,
    TreeSpec,
};
use crate::error::ModelError;
use crate::imported::ImportedModel;

/// Most trees accepted (a model with more is refused rather than held in memory).
const MAX_TREES: usize = 100_000;

/// The two model encodings XGBoost writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XgboostFormat {
    Json,
    Ubj,
}

impl XgboostFormat {
    /// From MLflow's `model_format` (or the file name's extension).
    pub fn from_name(format: &str) -> Result<Self, ModelError> {
        match format {
            "json" => Ok(XgboostFormat::Json),
            "ubj" => Ok(XgboostFormat::Ubj),
            other => Err(ModelError::unsupported(format!(
                "XGBoost model format {other:?}: the legacy binary format cannot be read; \
                 save the model as .ubj (MLflow's default) or .json"
            ))),
        }
    }
}

/// Reads an XGBoost model; `estimator` is what to call it (MLflow's `model_class`).
pub fn import_xgboost(
    bytes: &[u8],
    format: XgboostFormat,
    estimator: &str,
) -> Result<ImportedModel, ModelError> {
    let doc: Value = match format {
        XgboostFormat::Json => serde_json::from_slice(bytes)
            .map_err(|e| ModelError::invalid(format!("not an XGBoost JSON model: {e}")))?,
        XgboostFormat::Ubj => {
            if bytes.first() != Some(&b'{') {
                return Err(ModelError::unsupported(
                    "not a UBJSON XGBoost model (the legacy binary format cannot be read; \
                     save the model as .ubj or .json)",
                ));
            }
            ubjson::parse(bytes)?
        }
    };
    let learner = get(&doc, "learner")?;
    let params = get(learner, "learner_model_param")?;
    let n_features = usize_param(params, "num_feature")?;
    if n_features == 0 || n_features > usize::from(u16::MAX) {
        return Err(ModelError::invalid(format!(
            "the model declares {n_features} features"
        )));
    }
    let num_class = optional_usize_param(params, "num_class")?.unwrap_or(0);
    let num_target = optional_usize_param(params, "num_target")?.unwrap_or(1);
    if num_class > 1 || num_target > 1 {
        return Err(ModelError::unsupported(format!(
            "a multi-output XGBoost model (num_class {num_class}, num_target {num_target}); \
             only single-output models are served"
        )));
    }
    let objective = get(get(learner, "objective")?, "name")?
        .as_str()
        .ok_or_else(|| ModelError::invalid("XGBoost objective name is not text"))?;
    let base_score = base_score(params)?;
    let (base_value, post_transform) = margin_and_transform(objective, base_score)?;

    let booster = get(learner, "gradient_booster")?;
    let booster_name = get(booster, "name")?.as_str().unwrap_or("");
    if booster_name != "gbtree" {
        return Err(ModelError::unsupported(format!(
            "XGBoost booster {booster_name:?} (only gbtree is served; dart and gblinear are not)"
        )));
    }
    let trees = get(get(booster, "model")?, "trees")?
        .as_array()
        .ok_or_else(|| ModelError::invalid("XGBoost trees are not a list"))?;
    if trees.is_empty() {
        return Err(ModelError::invalid("the XGBoost model has no trees"));
    }
    if trees.len() > MAX_TREES {
        return Err(ModelError::invalid(format!(
            "the XGBoost model has {} trees (at most {MAX_TREES})",
            trees.len()
        )));
    }
    let trees = trees
        .iter()
        .enumerate()
        .map(|(i, t)| convert_tree(t, i, n_features))
        .collect::<Result<Vec<_>, _>>()?;
    let ensemble = TreeEnsemble::new(&EnsembleSpec {
        n_features,
        preprocess: Vec::new(),
        aggregate: Aggregate::Sum,
        base_value,
        post_transform,
        input_precision: InputPrecision::F32,
        trees,
    })?;
    let feature_names = learner
        .get("feature_names")
        .and_then(Value::as_array)
        .filter(|names| names.len() == n_features)
        .and_then(|names| {
            names
                .iter()
                .map(|n| n.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        });
    Ok(ImportedModel {
        ensemble,
        estimator: format!("{estimator} ({objective})"),
        feature_names,
        accepts_missing: true,
    })
}

fn get<'v>(v: &'v Value, key: &str) -> Result<&'v Value, ModelError> {
    v.get(key)
        .ok_or_else(|| ModelError::invalid(format!("the XGBoost model lacks `{key}`")))
}

/// XGBoost writes its parameters as strings ("4", "[6.6625E-1]").
fn param_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn optional_usize_param(params: &Value, key: &str) -> Result<Option<usize>, ModelError> {
    params
        .get(key)
        .map(|v| {
            param_text(v)
                .and_then(|t| t.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ModelError::invalid(format!("XGBoost parameter `{key}` is not a count"))
                })
        })
        .transpose()
}

fn usize_param(params: &Value, key: &str) -> Result<usize, ModelError> {
    optional_usize_param(params, key)?
        .ok_or_else(|| ModelError::invalid(format!("the XGBoost model lacks `{key}`")))
}

/// `base_score` in the output space: `"0.5"`, or XGBoost 3's vector form `"[5E-1]"`.
fn base_score(params: &Value) -> Result<f64, ModelError> {
    let text = params
        .get("base_score")
        .and_then(param_text)
        .unwrap_or_else(|| "0.5".into());
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    let values: Vec<f64> = inner
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| ModelError::invalid(format!("XGBoost base_score {text:?} is not a number")))?;
    match values.as_slice() {
        [v] if v.is_finite() => Ok(*v),
        _ => Err(ModelError::unsupported(format!(
            "XGBoost base_score {text:?} (one finite value expected)"
        ))),
    }
}

/// The margin the trees add to, and the transform of the summed margin, per objective.
fn margin_and_transform(
    objective: &str,
    base_score: f64,
) -> Result<(f64, PostTransform), ModelError> {
    let log = |b: f64| {
        if b > 0.0 {
            Ok(b.ln())
        } else {
            Err(ModelError::invalid(format!(
                "XGBoost base_score {b} must be positive for {objective}"
            )))
        }
    };
    match objective {
        "reg:squarederror" | "reg:linear" | "reg:absoluteerror" | "reg:pseudohubererror" => {
            Ok((base_score, PostTransform::None))
        }
        "count:poisson" | "reg:tweedie" | "reg:gamma" => Ok((log(base_score)?, PostTransform::Exp)),
        "binary:logistic" | "reg:logistic" => {
            if base_score <= 0.0 || base_score >= 1.0 {
                return Err(ModelError::invalid(format!(
                    "XGBoost base_score {base_score} must lie in (0, 1) for {objective}"
                )));
            }
            Ok((-(1.0 / base_score - 1.0).ln(), PostTransform::Logistic))
        }
        other => Err(ModelError::unsupported(format!(
            "XGBoost objective {other:?} (served: reg:squarederror, reg:absoluteerror, \
             reg:pseudohubererror, count:poisson, reg:tweedie, reg:gamma, binary:logistic)"
        ))),
    }
}

fn numbers(tree: &Value, key: &str, index: usize) -> Result<Vec<f64>, ModelError> {
    tree.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| ModelError::invalid(format!("XGBoost tree {index} lacks `{key}`")))?
        .iter()
        .map(|v| match v {
            Value::Number(n) => n.as_f64(),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            ModelError::invalid(format!("XGBoost tree {index}: `{key}` holds a non-number"))
        })
}

fn convert_tree(tree: &Value, index: usize, n_features: usize) -> Result<TreeSpec, ModelError> {
    let left = numbers(tree, "left_children", index)?;
    let right = numbers(tree, "right_children", index)?;
    let feature = numbers(tree, "split_indices", index)?;
    let condition = numbers(tree, "split_conditions", index)?;
    let default_left = numbers(tree, "default_left", index)?;
    // The hessian sum of the training rows at each node (XGBoost's "cover"): what
    // explanations weigh by, as XGBoost's own and shap's TreeSHAP do.
    let covers = match tree.get("sum_hessian") {
        Some(_) => Some(numbers(tree, "sum_hessian", index)?),
        None => None,
    };
    let split_type = match tree.get("split_type") {
        Some(_) => numbers(tree, "split_type", index)?,
        None => Vec::new(),
    };
    let count = left.len();
    if count == 0
        || [
            right.len(),
            feature.len(),
            condition.len(),
            default_left.len(),
        ]
        .iter()
        .any(|&l| l != count)
    {
        return Err(ModelError::invalid(format!(
            "XGBoost tree {index}: its node arrays disagree in length"
        )));
    }
    if split_type.iter().any(|&t| t != 0.0) {
        return Err(ModelError::unsupported(
            "XGBoost categorical splits (only numeric splits are served)",
        ));
    }
    let child = |v: f64, i: usize| {
        (v >= 0.0 && v.fract() == 0.0 && (v as usize) < count)
            .then_some(v as usize)
            .ok_or_else(|| {
                ModelError::invalid(format!(
                    "XGBoost tree {index}, node {i}: child {v} is out of range ({count} nodes)"
                ))
            })
    };
    let mut nodes = Vec::with_capacity(count);
    for i in 0..count {
        if left[i] == -1.0 {
            nodes.push(NodeSpec::Leaf {
                // Leaves are float32 in XGBoost.
                leaf: f64::from(condition[i] as f32),
            });
            continue;
        }
        let f = feature[i];
        if !(f >= 0.0 && f.fract() == 0.0 && (f as usize) < n_features) {
            return Err(ModelError::invalid(format!(
                "XGBoost tree {index}, node {i} splits on feature {f}, but the model has {n_features}"
            )));
        }
        let go_left = default_left[i] != 0.0;
        nodes.push(NodeSpec::Split {
            feature: f as usize,
            rule: SplitRule::Lt,
            threshold: f64::from(condition[i] as f32),
            yes: child(left[i], i)?,
            no: child(right[i], i)?,
            missing_yes: go_left,
            missing_no: !go_left,
            nan_as_zero: false,
            zero_is_missing: false,
        });
    }
    Ok(TreeSpec { nodes, covers })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(objective: &str, base_score: &str, booster: &str) -> Value {
        serde_json::json!({"learner": {
            "learner_model_param": {"base_score": base_score, "num_feature": "2", "num_class": "0", "num_target": "1"},
            "objective": {"name": objective},
            "feature_names": ["a", "b"],
            "gradient_booster": {"name": booster, "model": {"trees": [{
                "left_children": [1, -1, -1], "right_children": [2, -1, -1],
                "split_indices": [1, 0, 0], "split_conditions": [0.5, -1.0, 2.0],
                "default_left": [1, 0, 0], "split_type": [0, 0, 0]
            }]}}
        }})
    }

    fn import(doc: &Value) -> Result<ImportedModel, ModelError> {
        import_xgboost(
            &serde_json::to_vec(doc).unwrap(),
            XgboostFormat::Json,
            "Booster",
        )
    }

    #[test]
    fn splits_are_strict_and_missing_values_take_the_default_direction() {
        let m = import(&model("reg:squarederror", "[1E0]", "gbtree")).unwrap();
        assert_eq!(
            m.feature_names.as_deref(),
            Some(&["a".to_string(), "b".to_string()][..])
        );
        assert_eq!(m.ensemble.predict_row(&[0.0, 0.4]), 0.0);
        assert_eq!(
            m.ensemble.predict_row(&[0.0, 0.5]),
            3.0,
            "0.5 < 0.5 is false: right"
        );
        assert_eq!(
            m.ensemble.predict_row(&[0.0, f64::NAN]),
            0.0,
            "default left"
        );
    }

    #[test]
    fn objectives_transform_the_margin() {
        let m = import(&model("binary:logistic", "0.5", "gbtree")).unwrap();
        let p = m.ensemble.predict_row(&[0.0, 1.0]);
        assert!((p - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-12, "{p}");
        let m = import(&model("count:poisson", "2.0", "gbtree")).unwrap();
        let p = m.ensemble.predict_row(&[0.0, 1.0]);
        assert!((p - (2.0f64.ln() + 2.0).exp()).abs() < 1e-9, "{p}");
    }

    #[test]
    fn dart_multi_output_and_unknown_objectives_are_refused_by_name() {
        let e = import(&model("reg:squarederror", "0.5", "dart"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("dart"), "{e}");
        let e = import(&model("multi:softprob", "0.5", "gbtree"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("multi:softprob"), "{e}");
        let mut doc = model("reg:squarederror", "0.5", "gbtree");
        doc["learner"]["learner_model_param"]["num_target"] = "3".into();
        let e = import(&doc).unwrap_err().to_string();
        assert!(e.contains("multi-output"), "{e}");
        let e = XgboostFormat::from_name("xgb").unwrap_err().to_string();
        assert!(e.contains("legacy"), "{e}");
        let e = import_xgboost(b"binf\x00\x00", XgboostFormat::Ubj, "Booster")
            .unwrap_err()
            .to_string();
        assert!(e.contains("legacy"), "{e}");
    }

    #[test]
    fn out_of_range_children_and_features_are_invalid() {
        let mut doc = model("reg:squarederror", "0.5", "gbtree");
        doc["learner"]["gradient_booster"]["model"]["trees"][0]["right_children"][0] = 9.into();
        assert!(
            import(&doc)
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        let mut doc = model("reg:squarederror", "0.5", "gbtree");
        doc["learner"]["gradient_booster"]["model"]["trees"][0]["split_indices"][0] = 7.into();
        assert!(import(&doc).unwrap_err().to_string().contains("feature 7"));
    }
}
