use std::collections::HashMap;

use prost::Message;

use super::proto::{AttributeProto, ModelProto, NodeProto, TensorProto, data_type};
use crate::ensemble::{
    Aggregate, EnsembleSpec, InputPrecision, NodeSpec, PostTransform, SplitRule, TreeEnsemble,
    TreeSpec,
};
use crate::error::ModelError;

/// What an ONNX import produced.
#[derive(Debug, Clone)]
pub struct OnnxImport {
    pub ensemble: TreeEnsemble,
    /// The graph input's name (skl2onnx names it `X`).
    pub input_name: String,
}

/// Operators that may sit around the tree ensemble without changing its values.
const PASS_THROUGH_OPS: &[&str] = &["Cast", "Identity"];

/// Parses ONNX model bytes holding a single ONNX-ML `TreeEnsembleRegressor` node.
pub fn import_onnx(bytes: &[u8]) -> Result<OnnxImport, ModelError> {
    super::budget::check_decoded_size(bytes)
        .map_err(|e| ModelError::invalid(format!("not an ONNX model we decode: {e}")))?;
    let model = ModelProto::decode(bytes)
        .map_err(|e| ModelError::invalid(format!("not an ONNX model (protobuf: {e})")))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| ModelError::invalid("the ONNX model has no graph"))?;
    let mut ensembles = graph
        .node
        .iter()
        .filter(|n| n.op_type == "TreeEnsembleRegressor");
    let node = ensembles.next().ok_or_else(|| {
        // Each operator named once, at most ten of them: the names come from the file.
        let mut ops: Vec<&str> = Vec::new();
        for op in graph.node.iter().map(|n| n.op_type.as_str()) {
            if ops.len() == 10 {
                ops.push("…");
                break;
            }
            if !ops.contains(&op) {
                ops.push(op);
            }
        }
        ModelError::unsupported(format!(
            "the ONNX graph has no TreeEnsembleRegressor (operators: {:?})",
            ops
        ))
    })?;
    if ensembles.next().is_some() {
        return Err(ModelError::unsupported(
            "the ONNX graph has more than one TreeEnsembleRegressor",
        ));
    }
    if let Some(other) = graph.node.iter().find(|n| {
        n.op_type != "TreeEnsembleRegressor" && !PASS_THROUGH_OPS.contains(&n.op_type.as_str())
    }) {
        return Err(ModelError::unsupported(format!(
            "the ONNX graph has a {} operator; only a TreeEnsembleRegressor (with Cast/Identity) is served",
            other.op_type
        )));
    }
    let input = graph
        .input
        .iter()
        .find(|i| !graph.initializer.iter().any(|t| t.name == i.name))
        .ok_or_else(|| ModelError::invalid("the ONNX graph has no input"))?;
    let declared_features = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .and_then(|s| s.dim.get(1))
        .and_then(|d| d.dim_value)
        .and_then(|v| usize::try_from(v).ok())
        .filter(|&v| v > 0);
    let spec = ensemble_spec(node, declared_features)?;
    Ok(OnnxImport {
        ensemble: TreeEnsemble::new(&spec)?,
        input_name: input.name.clone(),
    })
}

struct Attributes<'a>(HashMap<&'a str, &'a AttributeProto>);

impl<'a> Attributes<'a> {
    fn new(node: &'a NodeProto) -> Self {
        Attributes(
            node.attribute
                .iter()
                .map(|a| (a.name.as_str(), a))
                .collect(),
        )
    }

    fn ints(&self, name: &str) -> Result<&'a [i64], ModelError> {
        self.0
            .get(name)
            .map(|a| a.ints.as_slice())
            .ok_or_else(|| missing(name))
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, ModelError> {
        let attr = self.0.get(name).ok_or_else(|| missing(name))?;
        attr.strings
            .iter()
            .map(|s| {
                String::from_utf8(s.clone())
                    .map_err(|_| ModelError::invalid(format!("attribute {name} is not UTF-8")))
            })
            .collect()
    }

    fn string(&self, name: &str) -> Result<Option<String>, ModelError> {
        self.0
            .get(name)
            .map(|a| {
                String::from_utf8(a.s.clone())
                    .map_err(|_| ModelError::invalid(format!("attribute {name} is not UTF-8")))
            })
            .transpose()
    }

    /// A float list given either as `name` (ai.onnx.ml v1) or `name_as_tensor` (v3).
    /// Returns the values and whether they came as float32.
    fn reals(&self, name: &str) -> Result<Option<(Vec<f64>, bool)>, ModelError> {
        if let Some(a) = self.0.get(name).filter(|a| !a.floats.is_empty()) {
            return Ok(Some((
                a.floats.iter().map(|&v| f64::from(v)).collect(),
                true,
            )));
        }
        let tensor_name = format!("{name}_as_tensor");
        match self.0.get(tensor_name.as_str()).and_then(|a| a.t.as_ref()) {
            Some(t) => tensor_reals(t, &tensor_name).map(Some),
            None => Ok(None),
        }
    }
}

fn missing(name: &str) -> ModelError {
    ModelError::invalid(format!("TreeEnsembleRegressor has no {name} attribute"))
}

fn tensor_reals(t: &TensorProto, name: &str) -> Result<(Vec<f64>, bool), ModelError> {
    match t.data_type {
        data_type::FLOAT => {
            if !t.float_data.is_empty() {
                Ok((t.float_data.iter().map(|&v| f64::from(v)).collect(), true))
            } else {
                let values = t
                    .raw_data
                    .chunks_exact(4)
                    .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .collect();
                Ok((values, true))
            }
        }
        data_type::DOUBLE => {
            if !t.double_data.is_empty() {
                Ok((t.double_data.clone(), false))
            } else {
                let values = t
                    .raw_data
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect();
                Ok((values, false))
            }
        }
        other => Err(ModelError::unsupported(format!(
            "{name} has tensor data type {other}; expected float or double"
        ))),
    }
}

fn parse_rule(mode: &str) -> Result<Option<SplitRule>, ModelError> {
    Ok(Some(match mode {
        "BRANCH_LEQ" => SplitRule::Leq,
        "BRANCH_LT" => SplitRule::Lt,
        "BRANCH_GTE" => SplitRule::Gte,
        "BRANCH_GT" => SplitRule::Gt,
        "BRANCH_EQ" => SplitRule::Eq,
        "BRANCH_NEQ" => SplitRule::Neq,
        "LEAF" => return Ok(None),
        other => {
            return Err(ModelError::unsupported(format!(
                "nodes_modes value {other:?} is not an ONNX-ML branch mode"
            )));
        }
    }))
}

fn index(value: i64, what: &str) -> Result<usize, ModelError> {
    usize::try_from(value).map_err(|_| ModelError::invalid(format!("{what} {value} is negative")))
}

fn ensemble_spec(
    node: &NodeProto,
    declared_features: Option<usize>,
) -> Result<EnsembleSpec, ModelError> {
    let attrs = Attributes::new(node);
    let n_targets = attrs.0.get("n_targets").map(|a| a.i).unwrap_or(1);
    if n_targets != 1 {
        return Err(ModelError::unsupported(format!(
            "the regressor has {n_targets} targets; only single-target regressors are served"
        )));
    }
    let tree_ids = attrs.ints("nodes_treeids")?;
    let node_ids = attrs.ints("nodes_nodeids")?;
    let feature_ids = attrs.ints("nodes_featureids")?;
    let modes = attrs.strings("nodes_modes")?;
    let true_ids = attrs.ints("nodes_truenodeids")?;
    let false_ids = attrs.ints("nodes_falsenodeids")?;
    let (values, values_f32) = attrs
        .reals("nodes_values")?
        .ok_or_else(|| missing("nodes_values"))?;
    let missing_true = attrs
        .0
        .get("nodes_missing_value_tracks_true")
        .map(|a| a.ints.as_slice())
        .unwrap_or(&[]);
    let n = node_ids.len();
    for (name, len) in [
        ("nodes_treeids", tree_ids.len()),
        ("nodes_featureids", feature_ids.len()),
        ("nodes_modes", modes.len()),
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_falsenodeids", false_ids.len()),
        ("nodes_values", values.len()),
    ] {
        if len != n {
            return Err(ModelError::invalid(format!(
                "{name} has {len} entries but nodes_nodeids has {n}"
            )));
        }
    }
    if !missing_true.is_empty() && missing_true.len() != n {
        return Err(ModelError::invalid(
            "nodes_missing_value_tracks_true does not match the node count",
        ));
    }

    // Leaf weights, summed per (tree, node) for target 0.
    let t_tree = attrs.ints("target_treeids")?;
    let t_node = attrs.ints("target_nodeids")?;
    let t_ids = attrs.ints("target_ids")?;
    let (t_weights, _) = attrs
        .reals("target_weights")?
        .ok_or_else(|| missing("target_weights"))?;
    if t_node.len() != t_tree.len()
        || t_ids.len() != t_tree.len()
        || t_weights.len() != t_tree.len()
    {
        return Err(ModelError::invalid(
            "target_treeids, target_nodeids, target_ids and target_weights differ in length",
        ));
    }
    let mut leaf_weight: HashMap<(i64, i64), f64> = HashMap::new();
    for i in 0..t_tree.len() {
        if t_ids[i] != 0 {
            return Err(ModelError::invalid(format!(
                "target id {} out of range",
                t_ids[i]
            )));
        }
        *leaf_weight.entry((t_tree[i], t_node[i])).or_insert(0.0) += t_weights[i];
    }

    // Group nodes by tree, keeping trees in order of first appearance.
    let mut tree_order: Vec<i64> = Vec::new();
    let mut tree_nodes: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, &t) in tree_ids.iter().enumerate() {
        tree_nodes
            .entry(t)
            .or_insert_with(|| {
                tree_order.push(t);
                Vec::new()
            })
            .push(i);
    }

    let max_feature = feature_ids.iter().copied().max().unwrap_or(0);
    let n_features = match declared_features {
        Some(d) => d,
        None => index(max_feature, "feature id")? + 1,
    };

    let mut trees = Vec::with_capacity(tree_order.len());
    for tree_id in &tree_order {
        let members = &tree_nodes[tree_id];
        // ONNX node ids are local to a tree; map them to positions, root first.
        let position: HashMap<i64, usize> = members
            .iter()
            .enumerate()
            .map(|(pos, &i)| (node_ids[i], pos))
            .collect();
        if position.len() != members.len() {
            return Err(ModelError::invalid(format!(
                "tree {tree_id} repeats a node id"
            )));
        }
        let mut children = std::collections::HashSet::with_capacity(members.len());
        for &j in members {
            if parse_rule(&modes[j])?.is_some() {
                children.insert(true_ids[j]);
                children.insert(false_ids[j]);
            }
        }
        let root_id = members
            .iter()
            .map(|&i| node_ids[i])
            .find(|id| !children.contains(id))
            .ok_or_else(|| ModelError::invalid(format!("tree {tree_id} has no root")))?;
        let mut order: Vec<usize> = Vec::with_capacity(members.len());
        order.push(position[&root_id]);
        order.extend((0..members.len()).filter(|&p| p != position[&root_id]));
        let slot: HashMap<usize, usize> = order.iter().enumerate().map(|(s, &p)| (p, s)).collect();
        let child = |id: i64| -> Result<usize, ModelError> {
            position.get(&id).map(|p| slot[p]).ok_or_else(|| {
                ModelError::invalid(format!("tree {tree_id} refers to missing node {id}"))
            })
        };
        let mut nodes = Vec::with_capacity(members.len());
        for &p in &order {
            let i = members[p];
            match parse_rule(&modes[i])? {
                None => {
                    let leaf = leaf_weight
                        .get(&(*tree_id, node_ids[i]))
                        .copied()
                        .unwrap_or(0.0);
                    nodes.push(NodeSpec::Leaf { leaf });
                }
                Some(rule) => nodes.push(NodeSpec::Split {
                    feature: index(feature_ids[i], "feature id")?,
                    rule,
                    threshold: values[i],
                    yes: child(true_ids[i])?,
                    no: child(false_ids[i])?,
                    missing_yes: missing_true.get(i).copied().unwrap_or(0) != 0,
                    missing_no: false,
                    nan_as_zero: false,
                    zero_is_missing: false,
                }),
            }
        }
        trees.push(TreeSpec::new(nodes));
    }

    let aggregate = match attrs.string("aggregate_function")?.as_deref() {
        None | Some("SUM") => Aggregate::Sum,
        Some("AVERAGE") => Aggregate::Average,
        Some("MIN") => Aggregate::Min,
        Some("MAX") => Aggregate::Max,
        Some(other) => {
            return Err(ModelError::unsupported(format!(
                "aggregate_function {other}"
            )));
        }
    };
    let post_transform = match attrs.string("post_transform")?.as_deref() {
        None | Some("NONE") => PostTransform::None,
        Some("LOGISTIC") => PostTransform::Logistic,
        Some("SOFTMAX") => PostTransform::Softmax,
        Some("SOFTMAX_ZERO") => PostTransform::SoftmaxZero,
        Some("PROBIT") => PostTransform::Probit,
        Some(other) => {
            return Err(ModelError::unsupported(format!("post_transform {other}")));
        }
    };
    let base_value = match attrs.reals("base_values")? {
        None => 0.0,
        Some((v, _)) if v.is_empty() => 0.0,
        Some((v, _)) if v.len() == 1 => v[0],
        Some((v, _)) => {
            return Err(ModelError::invalid(format!(
                "base_values has {} entries for a single target",
                v.len()
            )));
        }
    };
    Ok(EnsembleSpec {
        n_features,
        preprocess: Vec::new(),
        aggregate,
        base_value,
        post_transform,
        input_precision: if values_f32 {
            InputPrecision::F32
        } else {
            InputPrecision::F64
        },
        trees,
    })
}

#[cfg(test)]
#[path = "tree_ensemble_regressor_tests.rs"]
mod tests;
