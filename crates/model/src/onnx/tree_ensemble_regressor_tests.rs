use super::*;
use crate::onnx::proto::*;

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: 7,
        ..Default::default()
    }
}
fn floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        floats: v.to_vec(),
        r#type: 6,
        ..Default::default()
    }
}
fn strings(name: &str, v: &[&str]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        r#type: 8,
        ..Default::default()
    }
}
fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: v.as_bytes().to_vec(),
        r#type: 3,
        ..Default::default()
    }
}

/// Two stumps on feature 1 (x <= 0.5 ? 1 : 3) and (x < 2 ? 10 : 20), averaged, +100.
fn two_stump_model(as_tensor: bool) -> Vec<u8> {
    let mut attribute = vec![
        ints("nodes_treeids", &[0, 0, 0, 1, 1, 1]),
        ints("nodes_nodeids", &[0, 1, 2, 0, 1, 2]),
        ints("nodes_featureids", &[1, 0, 0, 1, 0, 0]),
        strings(
            "nodes_modes",
            &["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_LT", "LEAF", "LEAF"],
        ),
        ints("nodes_truenodeids", &[1, 0, 0, 1, 0, 0]),
        ints("nodes_falsenodeids", &[2, 0, 0, 2, 0, 0]),
        ints("target_treeids", &[0, 0, 1, 1]),
        ints("target_nodeids", &[1, 2, 1, 2]),
        ints("target_ids", &[0, 0, 0, 0]),
        ints("n_targets", &[]),
        string("aggregate_function", "AVERAGE"),
        string("post_transform", "NONE"),
    ];
    if let Some(a) = attribute.iter_mut().find(|a| a.name == "n_targets") {
        a.i = 1;
        a.r#type = 2;
    }
    if as_tensor {
        attribute.push(AttributeProto {
            name: "nodes_values_as_tensor".into(),
            t: Some(TensorProto {
                dims: vec![6],
                data_type: data_type::DOUBLE,
                double_data: vec![0.5, 0.0, 0.0, 2.0, 0.0, 0.0],
                ..Default::default()
            }),
            r#type: 4,
            ..Default::default()
        });
        attribute.push(AttributeProto {
            name: "target_weights_as_tensor".into(),
            t: Some(TensorProto {
                dims: vec![4],
                data_type: data_type::DOUBLE,
                raw_data: [1.0f64, 3.0, 10.0, 20.0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                ..Default::default()
            }),
            r#type: 4,
            ..Default::default()
        });
        attribute.push(AttributeProto {
            name: "base_values_as_tensor".into(),
            t: Some(TensorProto {
                dims: vec![1],
                data_type: data_type::DOUBLE,
                double_data: vec![100.0],
                ..Default::default()
            }),
            r#type: 4,
            ..Default::default()
        });
    } else {
        attribute.push(floats("nodes_values", &[0.5, 0.0, 0.0, 2.0, 0.0, 0.0]));
        attribute.push(floats("target_weights", &[1.0, 3.0, 10.0, 20.0]));
        attribute.push(floats("base_values", &[100.0]));
    }
    let model = ModelProto {
        ir_version: 8,
        producer_name: "test".into(),
        graph: Some(GraphProto {
            name: "g".into(),
            node: vec![NodeProto {
                input: vec!["X".into()],
                output: vec!["variable".into()],
                op_type: "TreeEnsembleRegressor".into(),
                domain: "ai.onnx.ml".into(),
                attribute,
                ..Default::default()
            }],
            input: vec![ValueInfoProto {
                name: "X".into(),
                r#type: Some(TypeProto {
                    tensor_type: Some(TypeProtoTensor {
                        elem_type: 1,
                        shape: Some(TensorShapeProto {
                            dim: vec![
                                Dimension {
                                    dim_value: None,
                                    dim_param: Some("N".into()),
                                },
                                Dimension {
                                    dim_value: Some(3),
                                    dim_param: None,
                                },
                            ],
                        }),
                    }),
                }),
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

#[test]
fn imports_v1_attributes_and_evaluates_like_onnx() {
    let imported = import_onnx(&two_stump_model(false)).unwrap();
    assert_eq!(imported.input_name, "X");
    let e = imported.ensemble;
    assert_eq!(e.n_features(), 3);
    assert_eq!(e.n_trees(), 2);
    assert_eq!(e.predict_row(&[0.0, 0.5, 0.0]), 100.0 + (1.0 + 10.0) / 2.0);
    assert_eq!(e.predict_row(&[0.0, 1.0, 0.0]), 100.0 + (3.0 + 10.0) / 2.0);
    assert_eq!(e.predict_row(&[0.0, 2.0, 0.0]), 100.0 + (3.0 + 20.0) / 2.0);
}

#[test]
fn imports_v3_tensor_attributes() {
    let e = import_onnx(&two_stump_model(true)).unwrap().ensemble;
    assert_eq!(e.predict_row(&[0.0, 0.5, 0.0]), 100.0 + (1.0 + 10.0) / 2.0);
    assert_eq!(e.predict_row(&[0.0, 2.0, 0.0]), 100.0 + (3.0 + 20.0) / 2.0);
}

#[test]
fn garbage_bytes_are_an_error_not_a_panic() {
    let err = import_onnx(b"definitely not protobuf \xff\xff\xff").unwrap_err();
    assert!(err.to_string().contains("ONNX"), "{err}");
    let err = import_onnx(&[]).unwrap_err();
    assert!(err.to_string().contains("no graph"), "{err}");
}
