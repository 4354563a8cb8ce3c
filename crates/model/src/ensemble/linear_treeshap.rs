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

/// One level of the path: the polynomial `P` down to its node, `1 / f` of the edge into
/// it (merged over the path's edges on the same feature: `zero`, `one`), the subtree's sum
/// of `v·P` and what deeper edges on the same feature took from that sum.
#[derive(Clone, Copy)]
struct Level<const M: usize> {
    product: [f64; M],
    inverse: [f64; M],
    sum: [f64; M],
    excluded: [f64; M],
    zero: f64,
    one: bool,
}

/// The walk's buffers for trees up to a depth: a [`Level`] per level of the path, and per
/// feature the level of its last edge on the path.
pub(super) struct Workspace<const M: usize> {
    levels: Vec<Level<M>>,
    last: Vec<usize>,
    points: [f64; M],
    complements: [f64; M],
    over_complements: [f64; M],
    weights: [f64; M],
}

const NONE: usize = usize::MAX;

impl<const M: usize> Workspace<M> {
    pub fn new(max_depth: usize, n_features: usize) -> Self {
        let (points, weights) = gauss_legendre::<M>();
        let level = Level {
            product: [1.0; M],
            inverse: [1.0; M],
            sum: [0.0; M],
            excluded: [0.0; M],
            zero: 1.0,
            one: true,
        };
        Workspace {
            levels: vec![level; max_depth + 2],
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
        self.levels[0].product = [1.0; M];
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
            let here = &mut self.levels[level];
            for j in 0..M {
                here.sum[j] = v * here.product[j];
            }
            return;
        }
        self.levels[level].sum = [0.0; M];
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
                z *= self.levels[previous].zero;
                o &= self.levels[previous].one;
            }
            if z == 0.0 && !o {
                // No cover goes there and the row does not: every leaf below has P = 0.
                continue;
            }
            {
                let (above, below) = self.levels.split_at_mut(child_level);
                let (parent, next) = (&above[level], &mut below[0]);
                if o {
                    for j in 0..M {
                        let f = z * self.complements[j] + self.points[j];
                        next.inverse[j] = 1.0 / f;
                        next.product[j] = parent.product[j] * f;
                    }
                } else {
                    // f = z·(1 − t): one division for the edge, not one per point.
                    let over_z = 1.0 / z;
                    for j in 0..M {
                        next.inverse[j] = over_z * self.over_complements[j];
                        next.product[j] = parent.product[j] * z * self.complements[j];
                    }
                }
                if previous != NONE {
                    let before = &above[previous].inverse;
                    for (p, b) in next.product.iter_mut().zip(before) {
                        *p *= b;
                    }
                }
                next.excluded = [0.0; M];
                next.zero = z;
                next.one = o;
            }
            self.last[feature] = child_level;
            self.visit(nodes, zero, child, child_level, row, phi);
            self.last[feature] = previous;
            let (above, below) = self.levels.split_at_mut(child_level);
            let done = &below[0];
            let mut integral = 0.0;
            for j in 0..M {
                integral += self.weights[j] * (done.sum[j] - done.excluded[j]) * done.inverse[j];
            }
            phi[feature] += (if o { 1.0 } else { 0.0 } - z) * integral;
            if previous != NONE {
                let taken = &mut above[previous].excluded;
                for (t, d) in taken.iter_mut().zip(&done.sum) {
                    *t += d;
                }
            }
            let sum = &mut above[level].sum;
            for (s, d) in sum.iter_mut().zip(&done.sum) {
                *s += d;
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
