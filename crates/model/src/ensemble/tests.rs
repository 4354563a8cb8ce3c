use super::transform::erf_inv;
use super::*;

fn stump(feature: usize, threshold: f64, yes: f64, no: f64) -> TreeSpec {
    TreeSpec {
        covers: None,
        nodes: vec![
            NodeSpec::Split {
                feature,
                rule: SplitRule::Leq,
                threshold,
                yes: 1,
                no: 2,
                missing_yes: false,
                missing_no: false,
                nan_as_zero: false,
                zero_is_missing: false,
            },
            NodeSpec::Leaf { leaf: yes },
            NodeSpec::Leaf { leaf: no },
        ],
    }
}

pub(super) fn spec(trees: Vec<TreeSpec>, aggregate: Aggregate) -> EnsembleSpec {
    EnsembleSpec {
        n_features: 2,
        preprocess: Vec::new(),
        aggregate,
        base_value: 0.0,
        post_transform: PostTransform::None,
        input_precision: InputPrecision::F64,
        trees,
    }
}

#[test]
fn averages_the_leaves_each_tree_routes_to() {
    let e = TreeEnsemble::new(&spec(
        vec![stump(0, 1.0, 10.0, 20.0), stump(1, 5.0, 1.0, 3.0)],
        Aggregate::Average,
    ))
    .unwrap();
    assert_eq!(e.predict_row(&[0.5, 9.0]), (10.0 + 3.0) / 2.0);
    assert_eq!(e.predict_row(&[1.0, 5.0]), (10.0 + 1.0) / 2.0);
    assert_eq!(e.predict_row(&[2.0, 0.0]), (20.0 + 1.0) / 2.0);
}

#[test]
fn no_child_laid_out_after_a_deep_yes_subtree_is_found() {
    // root: x0 <= 0 ? (x1 <= 0 ? 1 : 2) : 3, with nodes listed out of pre-order.
    let tree = TreeSpec {
        covers: None,
        nodes: vec![
            NodeSpec::Split {
                feature: 0,
                rule: SplitRule::Leq,
                threshold: 0.0,
                yes: 2,
                no: 1,
                missing_yes: false,
                missing_no: false,
                nan_as_zero: false,
                zero_is_missing: false,
            },
            NodeSpec::Leaf { leaf: 3.0 },
            NodeSpec::Split {
                feature: 1,
                rule: SplitRule::Leq,
                threshold: 0.0,
                yes: 3,
                no: 4,
                missing_yes: false,
                missing_no: false,
                nan_as_zero: false,
                zero_is_missing: false,
            },
            NodeSpec::Leaf { leaf: 1.0 },
            NodeSpec::Leaf { leaf: 2.0 },
        ],
    };
    let e = TreeEnsemble::new(&spec(vec![tree], Aggregate::Sum)).unwrap();
    assert_eq!(e.predict_row(&[-1.0, -1.0]), 1.0);
    assert_eq!(e.predict_row(&[-1.0, 1.0]), 2.0);
    assert_eq!(e.predict_row(&[1.0, -1.0]), 3.0);
    // The round trip through the file form predicts the same.
    let again = TreeEnsemble::new(&e.to_spec()).unwrap();
    for row in [[-1.0, -1.0], [-1.0, 1.0], [1.0, 0.0]] {
        assert_eq!(again.predict_row(&row), e.predict_row(&row));
    }
}

#[test]
fn nan_goes_to_the_missing_branch_only_when_marked() {
    let mut marked = stump(0, 1.0, 10.0, 20.0);
    if let NodeSpec::Split { missing_yes, .. } = &mut marked.nodes[0] {
        *missing_yes = true;
    }
    let unmarked =
        TreeEnsemble::new(&spec(vec![stump(0, 1.0, 10.0, 20.0)], Aggregate::Sum)).unwrap();
    let marked = TreeEnsemble::new(&spec(vec![marked], Aggregate::Sum)).unwrap();
    assert_eq!(unmarked.predict_row(&[f64::NAN, 0.0]), 20.0);
    assert_eq!(marked.predict_row(&[f64::NAN, 0.0]), 10.0);
}

#[test]
fn every_split_rule_compares_as_named() {
    let cases = [
        (SplitRule::Leq, [1.0, 1.0, 0.0]),
        (SplitRule::Lt, [1.0, 0.0, 0.0]),
        (SplitRule::Gte, [0.0, 1.0, 1.0]),
        (SplitRule::Gt, [0.0, 0.0, 1.0]),
        (SplitRule::Eq, [0.0, 1.0, 0.0]),
        (SplitRule::Neq, [1.0, 0.0, 1.0]),
    ];
    for (rule, expected) in cases {
        let tree = TreeSpec {
            covers: None,
            nodes: vec![
                NodeSpec::Split {
                    feature: 0,
                    rule,
                    threshold: 5.0,
                    yes: 1,
                    no: 2,
                    missing_yes: false,
                    missing_no: false,
                    nan_as_zero: false,
                    zero_is_missing: false,
                },
                NodeSpec::Leaf { leaf: 1.0 },
                NodeSpec::Leaf { leaf: 0.0 },
            ],
        };
        let e = TreeEnsemble::new(&spec(vec![tree], Aggregate::Sum)).unwrap();
        let got = [4.0, 5.0, 6.0].map(|x| e.predict_row(&[x, 0.0]));
        assert_eq!(got, expected, "{rule:?}");
    }
}

#[test]
fn min_max_base_value_and_logistic_are_applied() {
    let trees = vec![stump(0, 1.0, 1.0, 2.0), stump(0, 1.0, 3.0, 4.0)];
    let min = TreeEnsemble::new(&spec(trees.clone(), Aggregate::Min)).unwrap();
    let max = TreeEnsemble::new(&spec(trees.clone(), Aggregate::Max)).unwrap();
    assert_eq!(min.predict_row(&[0.0, 0.0]), 1.0);
    assert_eq!(max.predict_row(&[0.0, 0.0]), 3.0);
    let mut s = spec(trees, Aggregate::Sum);
    s.base_value = -4.0;
    s.post_transform = PostTransform::Logistic;
    let logistic = TreeEnsemble::new(&s).unwrap();
    assert!((logistic.predict_row(&[0.0, 0.0]) - 0.5).abs() < 1e-12);
    assert!((erf_inv(0.5) - 0.476_936_276).abs() < 1e-6);
}

#[test]
fn malformed_trees_are_rejected_with_a_reason() {
    let out_of_range = stump(7, 1.0, 0.0, 0.0);
    let err = TreeEnsemble::new(&spec(vec![out_of_range], Aggregate::Sum)).unwrap_err();
    assert!(err.to_string().contains("feature 7"), "{err}");

    let mut cycle = stump(0, 1.0, 0.0, 0.0);
    if let NodeSpec::Split { no, .. } = &mut cycle.nodes[0] {
        *no = 0;
    }
    let err = TreeEnsemble::new(&spec(vec![cycle], Aggregate::Sum)).unwrap_err();
    assert!(err.to_string().contains("reached twice"), "{err}");

    let mut dangling = stump(0, 1.0, 0.0, 0.0);
    if let NodeSpec::Split { yes, .. } = &mut dangling.nodes[0] {
        *yes = 9;
    }
    let err = TreeEnsemble::new(&spec(vec![dangling], Aggregate::Sum)).unwrap_err();
    assert!(err.to_string().contains("node 9"), "{err}");

    let err = TreeEnsemble::new(&spec(vec![], Aggregate::Sum)).unwrap_err();
    assert!(err.to_string().contains("no trees"), "{err}");
}

/// A random full tree of `depth` over `n_features`, with every missing-value mode.
pub(super) fn random_tree(
    rng: &mut rand_chacha::ChaCha8Rng,
    depth: u32,
    n_features: usize,
) -> TreeSpec {
    use rand::Rng;
    let mut nodes = Vec::new();
    fn build(
        rng: &mut rand_chacha::ChaCha8Rng,
        depth: u32,
        n_features: usize,
        nodes: &mut Vec<NodeSpec>,
    ) -> usize {
        let here = nodes.len();
        if depth == 0 || rng.random_bool(0.1) {
            nodes.push(NodeSpec::Leaf {
                leaf: rng.random_range(-10.0..10.0),
            });
            return here;
        }
        nodes.push(NodeSpec::Leaf { leaf: 0.0 });
        let no = build(rng, depth - 1, n_features, nodes);
        let yes = build(rng, depth - 1, n_features, nodes);
        let mode = rng.random_range(0..4);
        nodes[here] = NodeSpec::Split {
            feature: rng.random_range(0..n_features),
            rule: [SplitRule::Leq, SplitRule::Lt][rng.random_range(0..2)],
            threshold: rng.random_range(-1.0..1.0),
            yes,
            no,
            missing_yes: mode == 1,
            missing_no: mode == 2,
            nan_as_zero: mode == 3,
            zero_is_missing: mode == 3 && rng.random_bool(0.5),
        };
        here
    }
    build(rng, depth, n_features, &mut nodes);
    TreeSpec::new(nodes)
}

#[test]
fn the_batch_path_predicts_exactly_what_one_row_at_a_time_does() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for aggregate in [
        Aggregate::Sum,
        Aggregate::Average,
        Aggregate::Min,
        Aggregate::Max,
    ] {
        let trees = (0..37).map(|_| random_tree(&mut rng, 7, 5)).collect();
        let mut spec = spec(trees, aggregate);
        spec.n_features = 5;
        spec.input_precision = InputPrecision::F32;
        spec.preprocess = vec![Preprocess::Standardize {
            mean: vec![0.1; 5],
            scale: vec![2.0; 5],
        }];
        let e = TreeEnsemble::new(&spec).unwrap();
        let rows: Vec<Vec<f64>> = (0..50)
            .map(|_| {
                (0..5)
                    .map(|_| match rng.random_range(0..10) {
                        0 => f64::NAN,
                        1 => 0.0,
                        _ => rng.random_range(-2.0..2.0),
                    })
                    .collect()
            })
            .collect();
        let mut batch = vec![0.0; rows.len()];
        e.predict_into(&rows, &mut batch);
        let flat: Vec<f64> = rows.concat();
        let mut from_matrix = vec![0.0; rows.len()];
        e.predict_matrix_into(&flat, &mut from_matrix);
        for ((row, b), m) in rows.iter().zip(&batch).zip(&from_matrix) {
            assert_eq!(
                e.predict_row(row).to_bits(),
                b.to_bits(),
                "{aggregate:?} {row:?}"
            );
            assert_eq!(b.to_bits(), m.to_bits(), "{aggregate:?} {row:?}");
        }
    }
}
