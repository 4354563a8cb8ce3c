//! Exact path-dependent TreeSHAP in one pass per tree with work linear in the depth at
//! each node (the reformulation of Yu, Bifet, Read and Xu, "Linear TreeShap", NeurIPS
//! 2022), giving the same values as `shap.TreeExplainer`'s algorithm in less time.
//!
//! For one leaf with value `v` whose path has the unique features `F`, each with `z_j`
//! (the share of the cover that follows the path's edges on `j`) and `o_j` (1 when the row
//! follows them all, else 0), the Shapley value of feature `i` is
//!
//! ```text
//! v · (o_i − z_i) · ∫₀¹ P(t) / f_i(t) dt,   f_j(t) = z_j·(1 − t) + o_j·t,   P = Π_{j∈F} f_j
//! ```
//!
//! (the Shapley weights `s!(d−s−1)!/d!` are the Beta integrals `∫ t^s (1−t)^(d−s−1)`).
//! The integrand is a polynomial of degree below the tree's depth, so a Gauss–Legendre rule
//! of `M ≥ depth / 2` points integrates it exactly, and every polynomial is kept as its
//! values at those points: multiplying and dividing by a factor are pointwise. One walk
//! carries `P` down the tree and sums `v·P` of the leaves back up; the edge on feature `i`
//! closest to a leaf owns that leaf's share of `φ_i`, so the sums of the subtrees below a
//! deeper edge on the same feature are taken out of its ancestor's (`excluded`).

use super::{General, LEAF, Node, Step};

/// `M`-point Gauss–Legendre rule on `[0, 1]`: the points and their weights (exact for
/// polynomials of degree up to `2M − 1`).
pub(super) fn gauss_legendre<const M: usize>() -> ([f64; M], [f64; M]) {
    let (mut points, mut weights) = ([0.0; M], [0.0; M]);
    let n = M as f64;
    for i in 0..M {
        // Newton's method on the Legendre polynomial P_M from Tricomi's first guess.
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n + 0.5)).cos();
        let mut derivative = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, x);
            for k in 1..M {
                let k = k as f64;
                let p2 = ((2.0 * k + 1.0) * x * p1 - k * p0) / (k + 1.0);
                p0 = p1;
                p1 = p2;
            }
            derivative = n * (x * p1 - p0) / (x * x - 1.0);
            let step = p1 / derivative;
            x -= step;
            if step.abs() <= 1e-16 {
                break;
            }
        }
        points[i] = (1.0 - x) / 2.0;
        weights[i] = 1.0 / ((1.0 - x * x) * derivative * derivative);
    }
    (points, weights)
}

/// The walk's buffers for trees up to a depth: per level of the path, the polynomial `P`
/// down to it, `1 / f` of its edge's feature, the subtree's sum of `v·P` and what deeper
/// edges on the same feature took from it; per feature, the level of its last edge.
pub(super) struct Workspace<const M: usize> {
    product: Vec<[f64; M]>,
    inverse: Vec<[f64; M]>,
    sum: Vec<[f64; M]>,
    excluded: Vec<[f64; M]>,
    zero: Vec<f64>,
    one: Vec<bool>,
    previous: Vec<usize>,
    last: Vec<usize>,
    points: [f64; M],
    complements: [f64; M],
    over_complements: [f64; M],
    weights: [f64; M],
}

const NONE: usize = usize::MAX;

impl<const M: usize> Workspace<M> {
    pub fn new(max_depth: usize, n_features: usize) -> Self {
        let levels = max_depth + 2;
        let (points, weights) = gauss_legendre::<M>();
        Workspace {
            product: vec![[0.0; M]; levels],
            inverse: vec![[0.0; M]; levels],
            sum: vec![[0.0; M]; levels],
            excluded: vec![[0.0; M]; levels],
            zero: vec![0.0; levels],
            one: vec![false; levels],
            previous: vec![NONE; levels],
            last: vec![NONE; n_features],
            complements: points.map(|t| 1.0 - t),
            over_complements: points.map(|t| 1.0 / (1.0 - t)),
            points,
            weights,
        }
    }

    /// Adds the tree rooted at `root`'s contributions for `row` to `phi`. `zero[n]` is node
    /// `n`'s cover over its parent's.
    pub fn walk_tree(
        &mut self,
        nodes: &[Node],
        zero: &[f64],
        root: usize,
        row: &[f64],
        phi: &mut [f64],
    ) {
        self.product[0] = [1.0; M];
        self.visit(nodes, zero, root, 0, row, phi);
    }

    /// Node `n` at `level` of the path, its `product` set by the caller: fills its `sum`.
    /// The buffers are worked on in place, so a frame of this recursion (one per level, at
    /// most [`super::MAX_EXPLAIN_DEPTH`]) holds no arrays.
    fn visit(
        &mut self,
        nodes: &[Node],
        zero: &[f64],
        n: usize,
        level: usize,
        row: &[f64],
        phi: &mut [f64],
    ) {
        let node = &nodes[n];
        if node.rule == LEAF {
            let v = node.value;
            let (product, sum) = (&self.product[level], &mut self.sum[level]);
            for j in 0..M {
                sum[j] = v * product[j];
            }
            return;
        }
        self.sum[level] = [0.0; M];
        let hot = General::next(n, node, row);
        let cold = if hot == n + 1 {
            node.no as usize
        } else {
            n + 1
        };
        let feature = usize::from(node.feature);
        let previous = self.last[feature];
        let child_level = level + 1;
        for (child, follows) in [(hot, true), (cold, false)] {
            let (mut z, mut o) = (zero[child], follows);
            if previous != NONE {
                z *= self.zero[previous];
                o &= self.one[previous];
            }
            if z == 0.0 && !o {
                // No cover goes there and the row does not: every leaf below has P = 0.
                continue;
            }
            let one = if o { 1.0 } else { 0.0 };
            {
                let (above, below) = self.product.split_at_mut(child_level);
                let (parent, product) = (&above[level], &mut below[0]);
                let inverse = &mut self.inverse[child_level];
                if o {
                    for j in 0..M {
                        let f = z * self.complements[j] + self.points[j];
                        inverse[j] = 1.0 / f;
                        product[j] = parent[j] * f;
                    }
                } else {
                    // f = z·(1 − t): one division for the edge, not one per point.
                    let over_z = 1.0 / z;
                    for j in 0..M {
                        inverse[j] = over_z * self.over_complements[j];
                        product[j] = parent[j] * z * self.complements[j];
                    }
                }
                if previous != NONE {
                    let before = &self.inverse[previous];
                    for j in 0..M {
                        product[j] *= before[j];
                    }
                }
            }
            self.excluded[child_level] = [0.0; M];
            self.zero[child_level] = z;
            self.one[child_level] = o;
            self.previous[child_level] = previous;
            self.last[feature] = child_level;
            self.visit(nodes, zero, child, child_level, row, phi);
            self.last[feature] = previous;
            let (below, excluded, inverse) = (
                &self.sum[child_level],
                &self.excluded[child_level],
                &self.inverse[child_level],
            );
            let mut integral = 0.0;
            for j in 0..M {
                integral += self.weights[j] * (below[j] - excluded[j]) * inverse[j];
            }
            phi[feature] += (one - z) * integral;
            let (above, rest) = self.sum.split_at_mut(child_level);
            let below = &rest[0];
            if previous != NONE {
                let taken = &mut self.excluded[previous];
                for j in 0..M {
                    taken[j] += below[j];
                }
            }
            for j in 0..M {
                above[level][j] += below[j];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integral<const M: usize>(f: impl Fn(f64) -> f64) -> f64 {
        let (t, w) = gauss_legendre::<M>();
        t.iter().zip(&w).map(|(t, w)| w * f(*t)).sum()
    }

    #[test]
    fn the_rule_integrates_polynomials_up_to_its_degree_exactly() {
        // ∫₀¹ t^k dt = 1 / (k + 1) for every k ≤ 2M − 1.
        for k in 0..=7 {
            let got = integral::<4>(|t| t.powi(k));
            assert!((got - 1.0 / f64::from(k + 1)).abs() < 1e-15, "t^{k}: {got}");
        }
        for k in 0..=255 {
            let got = integral::<128>(|t| t.powi(k));
            assert!((got - 1.0 / f64::from(k + 1)).abs() < 1e-13, "t^{k}: {got}");
        }
        assert!((integral::<1>(|t| 3.0 * t) - 1.5).abs() < 1e-15);
        // A Beta integral, as a Shapley weight: 2!·1!/4! = 1/12.
        let got = integral::<2>(|t| t * t * (1.0 - t));
        assert!((got - 1.0 / 12.0).abs() < 1e-15, "{got}");
    }

    #[test]
    fn points_lie_inside_the_interval_and_weights_sum_to_one() {
        let (t, w) = gauss_legendre::<8>();
        assert!(t.iter().all(|&t| t > 0.0 && t < 1.0), "{t:?}");
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        let mut sorted = t;
        sorted.sort_by(f64::total_cmp);
        assert!(sorted.windows(2).all(|p| p[0] < p[1]), "distinct: {t:?}");
    }
}
