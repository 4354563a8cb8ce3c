//! The trees of an averaging forest one by one: each tree's own prediction, whose spread
//! is the forest's disagreement about a row (a random forest's prediction band).

use super::{Aggregate, General, LEAF, PostTransform, Step, TreeEnsemble};

impl TreeEnsemble {
    /// Whether the prediction is the plain mean of the trees' predictions (a random
    /// forest, extra trees, LightGBM's `rf` boosting): only then is each tree's output a
    /// prediction of its own.
    pub fn averages_trees(&self) -> bool {
        self.aggregate == Aggregate::Average && self.post_transform == PostTransform::None
    }

    /// Every tree's own prediction for `row` (`n_features()` values), in tree order, when
    /// the ensemble [averages its trees](Self::averages_trees); their mean is
    /// [`predict_row`](Self::predict_row)'s answer.
    pub fn tree_predictions(&self, row: &[f64]) -> Option<Vec<f64>> {
        if !self.averages_trees() || row.len() != self.n_features {
            return None;
        }
        let mut prepared = row.to_vec();
        self.prepare(&mut prepared);
        Some(
            self.roots
                .iter()
                .map(|&root| {
                    let mut i = root as usize;
                    while self.nodes[i].rule != LEAF {
                        i = General::next(i, &self.nodes[i], &prepared);
                    }
                    self.nodes[i].value + self.base_value
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::ensemble::{
        Aggregate, EnsembleSpec, InputPrecision, NodeSpec, PostTransform, SplitRule, TreeSpec,
    };

    use super::*;

    /// `x0 <= t ? low : high`.
    fn stump(t: f64, low: f64, high: f64) -> TreeSpec {
        TreeSpec::new(vec![
            NodeSpec::Split {
                feature: 0,
                rule: SplitRule::Leq,
                threshold: t,
                yes: 1,
                no: 2,
                missing_yes: true,
                missing_no: false,
                nan_as_zero: false,
                zero_is_missing: false,
            },
            NodeSpec::Leaf { leaf: low },
            NodeSpec::Leaf { leaf: high },
        ])
    }

    fn forest(aggregate: Aggregate, post_transform: PostTransform) -> TreeEnsemble {
        TreeEnsemble::new(&EnsembleSpec {
            n_features: 1,
            preprocess: Vec::new(),
            aggregate,
            base_value: 0.5,
            post_transform,
            input_precision: InputPrecision::F64,
            trees: vec![
                stump(1.0, 1.0, 2.0),
                stump(2.0, 10.0, 20.0),
                stump(3.0, 4.0, 8.0),
            ],
        })
        .unwrap()
    }

    #[test]
    fn each_tree_answers_its_own_leaf_and_their_mean_is_the_prediction() {
        let f = forest(Aggregate::Average, PostTransform::None);
        assert!(f.averages_trees());
        let trees = f.tree_predictions(&[2.5]).unwrap();
        assert_eq!(trees, vec![2.5, 20.5, 4.5]);
        let mean = trees.iter().sum::<f64>() / 3.0;
        assert!((mean - f.predict_row(&[2.5])).abs() < 1e-12);
        // Missing values go the way the trees send them.
        assert_eq!(
            f.tree_predictions(&[f64::NAN]).unwrap(),
            vec![1.5, 10.5, 4.5]
        );
    }

    #[test]
    fn sums_transforms_and_wrong_rows_have_no_tree_predictions() {
        for (aggregate, transform) in [
            (Aggregate::Sum, PostTransform::None),
            (Aggregate::Max, PostTransform::None),
            (Aggregate::Average, PostTransform::Exp),
        ] {
            let f = forest(aggregate, transform);
            assert!(!f.averages_trees(), "{aggregate:?} {transform:?}");
            assert_eq!(f.tree_predictions(&[1.0]), None);
        }
        let f = forest(Aggregate::Average, PostTransform::None);
        assert_eq!(f.tree_predictions(&[1.0, 2.0]), None);
    }
}
