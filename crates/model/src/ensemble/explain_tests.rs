//! TreeSHAP checked against Shapley values computed by definition: every subset of the
//! features, each valued by the tree's path-dependent conditional expectation (the
//! paper's algorithm 1, written here independently over the unconverted trees).

use rand::{Rng, SeedableRng};

use super::tests::{random_tree, spec};
use super::*;

/// Covers for a spec tree: random leaves, each split the sum of its children (or, with
/// `consistent` false, any positive number).
fn with_covers(
    mut tree: TreeSpec,
    rng: &mut rand_chacha::ChaCha8Rng,
    consistent: bool,
) -> TreeSpec {
    fn cover(
        nodes: &[NodeSpec],
        i: usize,
        out: &mut [f64],
        rng: &mut rand_chacha::ChaCha8Rng,
        consistent: bool,
    ) -> f64 {
        let c = match nodes[i] {
            NodeSpec::Leaf { .. } => f64::from(rng.random_range(1..100u32)),
            NodeSpec::Split { yes, no, .. } => {
                let sum = cover(nodes, yes, out, rng, consistent)
                    + cover(nodes, no, out, rng, consistent);
                if consistent {
                    sum
                } else {
                    f64::from(rng.random_range(1..200u32))
                }
            }
        };
        out[i] = c;
        c
    }
    let mut covers = vec![0.0; tree.nodes.len()];
    cover(&tree.nodes, 0, &mut covers, rng, consistent);
    tree.covers = Some(covers);
    tree
}

/// E[f(x) | x_S] as the tree estimates it: features in `known` follow the row, the others
/// split the way the covers do.
fn conditional(tree: &TreeSpec, i: usize, row: &[f64], known: u32) -> f64 {
    let covers = tree.covers.as_ref().unwrap();
    match tree.nodes[i] {
        NodeSpec::Leaf { leaf } => leaf,
        NodeSpec::Split {
            feature,
            rule,
            threshold,
            yes,
            no,
            ..
        } => {
            if known & (1 << feature) != 0 {
                let x = row[feature];
                let go_yes = match rule {
                    SplitRule::Leq => x <= threshold,
                    SplitRule::Lt => x < threshold,
                    _ => unreachable!("the random trees use <= and <"),
                };
                conditional(tree, if go_yes { yes } else { no }, row, known)
            } else {
                (covers[yes] * conditional(tree, yes, row, known)
                    + covers[no] * conditional(tree, no, row, known))
                    / covers[i]
            }
        }
    }
}

/// Shapley values by definition, over every subset of the `m` features.
fn shapley(trees: &[TreeSpec], row: &[f64], m: usize, average: bool) -> (Vec<f64>, f64) {
    let value = |known: u32| {
        let s: f64 = trees.iter().map(|t| conditional(t, 0, row, known)).sum();
        if average { s / trees.len() as f64 } else { s }
    };
    let factorial = |n: usize| (1..=n).map(|k| k as f64).product::<f64>();
    let mut phi = vec![0.0; m];
    for (f, phi) in phi.iter_mut().enumerate() {
        for subset in 0..(1u32 << m) {
            if subset & (1 << f) != 0 {
                continue;
            }
            let size = subset.count_ones() as usize;
            let weight = factorial(size) * factorial(m - size - 1) / factorial(m);
            *phi += weight * (value(subset | (1 << f)) - value(subset));
        }
    }
    (phi, value(0))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn contributions_are_the_shapley_values_of_the_trees_expectations() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
    for (round, aggregate) in [Aggregate::Sum, Aggregate::Average]
        .into_iter()
        .cycle()
        .take(40)
        .enumerate()
    {
        let m = 1 + round % 6;
        let consistent = round % 3 != 0;
        let trees: Vec<TreeSpec> = (0..1 + round % 5)
            .map(|_| {
                let depth = rng.random_range(1..9);
                with_covers(random_tree(&mut rng, depth, m), &mut rng, consistent)
            })
            .collect();
        let mut spec = spec(trees.clone(), aggregate);
        spec.n_features = m;
        spec.base_value = 3.5;
        let e = TreeEnsemble::new(&spec).unwrap();
        for _ in 0..10 {
            let row: Vec<f64> = (0..m).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut phi = vec![0.0; m];
            let got = e.explain_row(&row, &mut phi).unwrap();
            let (want, expected) = shapley(&trees, &row, m, aggregate == Aggregate::Average);
            for (g, w) in phi.iter().zip(&want) {
                assert!(close(*g, *w), "round {round}: {phi:?} vs {want:?}");
            }
            assert!(close(got.expected_value, expected + 3.5), "round {round}");
            let sum = got.expected_value + phi.iter().sum::<f64>();
            assert!(
                close(sum, got.prediction),
                "round {round}: {sum} vs {}",
                got.prediction
            );
            assert!(close(got.prediction, e.predict_row(&row)));
        }
    }
}

#[test]
fn a_feature_split_on_twice_along_a_path_is_counted_once() {
    // x0 <= 0 ? (x0 <= -0.5 ? 1 : 2) : 10, covers 4 = (1 + 1) + 2.
    let tree = TreeSpec {
        nodes: vec![
            split(0, 0.0, 1, 4),
            split(0, -0.5, 2, 3),
            NodeSpec::Leaf { leaf: 1.0 },
            NodeSpec::Leaf { leaf: 2.0 },
            NodeSpec::Leaf { leaf: 10.0 },
        ],
        covers: Some(vec![4.0, 2.0, 1.0, 1.0, 2.0]),
    };
    let mut s = spec(vec![tree], Aggregate::Sum);
    s.n_features = 2;
    let e = TreeEnsemble::new(&s).unwrap();
    let mut phi = [0.0; 2];
    let got = e.explain_row(&[-1.0, 7.0], &mut phi).unwrap();
    // Expected (1 + 2 + 2·10) / 4 = 5.75; the row gets 1: all of it is x0's doing.
    assert_eq!(got.expected_value, 5.75);
    assert_eq!(got.prediction, 1.0);
    assert!(close(phi[0], -4.75), "{phi:?}");
    assert_eq!(phi[1], 0.0);
}

fn split(feature: usize, threshold: f64, yes: usize, no: usize) -> NodeSpec {
    NodeSpec::Split {
        feature,
        rule: SplitRule::Leq,
        threshold,
        yes,
        no,
        missing_yes: false,
        missing_no: false,
        nan_as_zero: false,
        zero_is_missing: false,
    }
}

#[test]
fn models_that_cannot_be_explained_say_why() {
    let leaf_tree = |covers: Option<Vec<f64>>| TreeSpec {
        nodes: vec![
            split(0, 0.0, 1, 2),
            NodeSpec::Leaf { leaf: 1.0 },
            NodeSpec::Leaf { leaf: 2.0 },
        ],
        covers,
    };
    let why = |spec: &EnsembleSpec| {
        let e = TreeEnsemble::new(spec).unwrap();
        let mut phi = vec![0.0; spec.n_features];
        let err = e
            .explain_row(&vec![0.0; spec.n_features], &mut phi)
            .unwrap_err();
        assert_eq!(
            Some(err.to_string()).is_some(),
            e.explanations_unavailable().is_some()
        );
        e.explanations_unavailable().unwrap()
    };
    let mut no_covers = spec(vec![leaf_tree(None)], Aggregate::Sum);
    no_covers.n_features = 1;
    assert!(why(&no_covers).contains("no node covers"));
    // One tree without covers is enough.
    let mut mixed = spec(
        vec![leaf_tree(Some(vec![2.0, 1.0, 1.0])), leaf_tree(None)],
        Aggregate::Sum,
    );
    mixed.n_features = 1;
    assert!(why(&mixed).contains("no node covers"));
    let mut max = spec(vec![leaf_tree(Some(vec![2.0, 1.0, 1.0]))], Aggregate::Max);
    max.n_features = 1;
    assert!(why(&max).contains("min or max"));
    let mut logistic = spec(vec![leaf_tree(Some(vec![2.0, 1.0, 1.0]))], Aggregate::Sum);
    logistic.n_features = 1;
    logistic.post_transform = PostTransform::Logistic;
    assert!(why(&logistic).contains("Logistic"));
    let mut zero = spec(vec![leaf_tree(Some(vec![0.0, 0.0, 0.0]))], Aggregate::Sum);
    zero.n_features = 1;
    assert!(why(&zero).contains("cover is 0"));
    // A chain deeper than the limit (built without recursion: it is never walked).
    let depth = MAX_EXPLAIN_DEPTH + 1;
    let mut nodes = Vec::new();
    for level in 0..depth {
        nodes.push(split(0, level as f64, 2 * level + 2, 2 * level + 1));
        nodes.push(NodeSpec::Leaf { leaf: level as f64 });
    }
    nodes.push(NodeSpec::Leaf { leaf: -1.0 });
    let covers = Some(vec![1.0; nodes.len()]);
    let mut deep = spec(vec![TreeSpec { nodes, covers }], Aggregate::Sum);
    deep.n_features = 1;
    assert!(why(&deep).contains("levels deep"), "{}", why(&deep));
}

#[test]
fn bad_covers_are_refused_with_the_node() {
    let tree = TreeSpec {
        nodes: vec![
            split(0, 0.0, 1, 2),
            NodeSpec::Leaf { leaf: 1.0 },
            NodeSpec::Leaf { leaf: 2.0 },
        ],
        covers: Some(vec![2.0, f64::NAN, 1.0]),
    };
    let mut s = spec(vec![tree.clone()], Aggregate::Sum);
    s.n_features = 1;
    let err = TreeEnsemble::new(&s).unwrap_err().to_string();
    assert!(err.contains("node 1 has cover NaN"), "{err}");
    let mut short = tree;
    short.covers = Some(vec![1.0]);
    s.trees = vec![short];
    let err = TreeEnsemble::new(&s).unwrap_err().to_string();
    assert!(err.contains("3 nodes but 1 covers"), "{err}");
}

#[test]
fn covers_survive_the_round_trip_through_the_spec() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let trees: Vec<TreeSpec> = (0..3)
        .map(|_| with_covers(random_tree(&mut rng, 5, 3), &mut rng, true))
        .collect();
    let mut s = spec(trees, Aggregate::Average);
    s.n_features = 3;
    let e = TreeEnsemble::new(&s).unwrap();
    let again = TreeEnsemble::new(&e.to_spec()).unwrap();
    let row = [0.3, -0.2, 0.9];
    let (mut a, mut b) = ([0.0; 3], [0.0; 3]);
    assert_eq!(
        e.explain_row(&row, &mut a).unwrap(),
        again.explain_row(&row, &mut b).unwrap()
    );
    assert_eq!(a, b);
}

/// A tree `depth` levels deep without `2^depth` nodes: a spine of splits, each with a small
/// random subtree beside it.
fn deep_tree(rng: &mut rand_chacha::ChaCha8Rng, depth: u32, n_features: usize) -> TreeSpec {
    fn build(
        rng: &mut rand_chacha::ChaCha8Rng,
        depth: u32,
        n_features: usize,
        nodes: &mut Vec<NodeSpec>,
    ) -> usize {
        let here = nodes.len();
        if depth == 0 {
            nodes.push(NodeSpec::Leaf {
                leaf: rng.random_range(-10.0..10.0),
            });
            return here;
        }
        nodes.push(NodeSpec::Leaf { leaf: 0.0 });
        let side_depth = rng.random_range(0..3);
        let side = random_tree(rng, side_depth, n_features);
        let offset = nodes.len();
        let mut side = side.nodes;
        for node in &mut side {
            if let NodeSpec::Split { yes, no, .. } = node {
                *yes += offset;
                *no += offset;
            }
        }
        nodes.extend(side);
        let spine = build(rng, depth - 1, n_features, nodes);
        let (yes, no) = if rng.random_bool(0.5) {
            (spine, offset)
        } else {
            (offset, spine)
        };
        nodes[here] = split(
            rng.random_range(0..n_features),
            rng.random_range(-1.0..1.0),
            yes,
            no,
        );
        here
    }
    let mut nodes = Vec::new();
    build(rng, depth, n_features, &mut nodes);
    TreeSpec::new(nodes)
}

#[test]
fn deep_trees_get_the_papers_values() {
    // Depths across every size of the walk's workspace (4 to 128 points), features
    // repeated along the paths, leaves no training data reached, missing values: the
    // linear walk against the paper's algorithm.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(37);
    for (round, depth) in [3, 8, 9, 12, 13, 16, 17, 30, 33, 64, 65, 100, 129, 250]
        .into_iter()
        .enumerate()
    {
        let m = 2 + round * 3 % 29;
        let trees: Vec<TreeSpec> = (0..3)
            .map(|_| {
                // Covers that add up, as every library's do: with covers that do not, the
                // paper's algorithm loses digits the test would blame on the linear walk
                // (which the Shapley-value test above checks on them).
                let mut tree = with_covers(deep_tree(&mut rng, depth, m), &mut rng, true);
                let covers = tree.covers.as_mut().unwrap();
                for (i, node) in tree.nodes.iter().enumerate() {
                    if matches!(node, NodeSpec::Leaf { .. }) && rng.random_bool(0.15) {
                        covers[i] = 0.0;
                    }
                }
                tree
            })
            .collect();
        let aggregate = [Aggregate::Sum, Aggregate::Average][round % 2];
        let mut spec = spec(trees, aggregate);
        spec.n_features = m;
        let e = TreeEnsemble::new(&spec).unwrap();
        assert_eq!(e.explanations_unavailable(), None, "round {round}");
        let mut explainer = e.explainer().unwrap();
        for _ in 0..5 {
            let row: Vec<f64> = (0..m)
                .map(|_| match rng.random_bool(0.1) {
                    true => f64::NAN,
                    false => rng.random_range(-1.0..1.0),
                })
                .collect();
            let mut phi = vec![0.0; m];
            explainer.explain_row(&row, &mut phi).unwrap();
            let want = super::explain_reference::explain(&e, &row);
            for (g, w) in phi.iter().zip(&want) {
                assert!(
                    close(*g, *w),
                    "round {round} depth {depth}: {phi:?} vs {want:?}"
                );
            }
        }
    }
}
