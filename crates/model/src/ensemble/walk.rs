//! Walking the trees: one step from a split (a rule and missing-value flags, or one plain
//! rule compiled in), a row through every tree a few trees at a time, and blocks of rows
//! through one tree at a time.

use super::{
    LEAF, MISSING_NO, MISSING_YES, NAN_AS_ZERO, Node, ROW_BLOCK, SplitRule, TreeEnsemble,
    ZERO_IS_MISSING, ZERO_THRESHOLD,
};

pub(super) const LEQ: u8 = SplitRule::Leq as u8;
pub(super) const LT: u8 = SplitRule::Lt as u8;

/// How a walk takes one step from split `i`.
pub(super) trait Step {
    fn next(i: usize, node: &Node, row: &[f64]) -> usize;
}

/// Every rule and every missing-value flag.
pub(super) struct General;

impl Step for General {
    #[inline(always)]
    fn next(i: usize, node: &Node, row: &[f64]) -> usize {
        let mut x = row[usize::from(node.feature)];
        if node.flags != 0 {
            if node.flags & NAN_AS_ZERO != 0 && x.is_nan() {
                x = 0.0;
            }
            let missing =
                x.is_nan() || (node.flags & ZERO_IS_MISSING != 0 && x.abs() <= ZERO_THRESHOLD);
            if missing && node.flags & (MISSING_YES | MISSING_NO) != 0 {
                return if node.flags & MISSING_YES != 0 {
                    i + 1
                } else {
                    node.no as usize
                };
            }
        }
        let t = node.value;
        let yes = match node.rule {
            0 => x <= t,
            1 => x < t,
            2 => x >= t,
            3 => x > t,
            4 => x == t,
            _ => x != t,
        };
        // Which way a split goes is data: a branch here mispredicts about half the time.
        std::hint::select_unpredictable(yes, i + 1, node.no as usize)
    }
}

/// One rule for every split, rows without missing values: flags cannot apply.
pub(super) struct Plain<const RULE: u8>;

impl<const RULE: u8> Step for Plain<RULE> {
    #[inline(always)]
    fn next(i: usize, node: &Node, row: &[f64]) -> usize {
        let x = row[usize::from(node.feature)];
        let yes = if RULE == LEQ {
            x <= node.value
        } else {
            x < node.value
        };
        std::hint::select_unpredictable(yes, i + 1, node.no as usize)
    }
}

/// Trees walked together for one row.
const TREE_LANES: usize = 8;

impl TreeEnsemble {
    /// Predicts `rows` into `out` (one value per row); rows must each have
    /// `n_features()` values (checked in debug builds).
    ///
    /// Rows are taken in blocks of [`ROW_BLOCK`]: each tree walks the whole block with the
    /// rows' paths interleaved (independent loads overlap), while the tree stays in cache.
    pub fn predict_into(&self, rows: &[Vec<f64>], out: &mut [f64]) {
        debug_assert_eq!(rows.len(), out.len());
        self.predict_rows_into(rows.len(), |i| &rows[i][..self.n_features], out);
    }

    /// Predicts the rows of a row-major matrix (`values.len()` a multiple of
    /// `n_features()`, one row after another) into `out`, one value per row.
    pub fn predict_matrix_into(&self, values: &[f64], out: &mut [f64]) {
        let n = self.n_features.max(1);
        debug_assert_eq!(values.len(), out.len() * self.n_features);
        self.predict_rows_into(out.len(), |i| &values[i * n..i * n + self.n_features], out);
    }

    /// The batch walk over `count` rows, each read with `row`.
    fn predict_rows_into<'r>(
        &self,
        count: usize,
        row: impl Fn(usize) -> &'r [f64],
        out: &mut [f64],
    ) {
        let n = self.n_features;
        let mut block = vec![0.0f64; ROW_BLOCK * n];
        for (b, out) in out[..count].chunks_mut(ROW_BLOCK).enumerate() {
            let first = b * ROW_BLOCK;
            // A short last block is padded with its last row (those answers are dropped).
            for (r, dst) in block.chunks_exact_mut(n).enumerate() {
                dst.copy_from_slice(row(first + r.min(out.len() - 1)));
                self.prepare(dst);
            }
            let acc = match self.plain_rule(&block) {
                Some(LEQ) => self.walk_block::<Plain<LEQ>>(&block),
                Some(LT) => self.walk_block::<Plain<LT>>(&block),
                _ => self.walk_block::<General>(&block),
            };
            for (o, a) in out.iter_mut().zip(acc) {
                *o = self.finish(a);
            }
        }
    }

    /// The rule to walk with, ignoring missing-value flags, when `rows` hold no NaN and the
    /// splits share one plain rule; otherwise `None` (the general walk).
    fn plain_rule(&self, rows: &[f64]) -> Option<u8> {
        let rule = self.uniform_rule.filter(|&r| r == LEQ || r == LT)?;
        (!self.zero_is_missing && !rows.iter().any(|x| x.is_nan())).then_some(rule)
    }

    /// Every tree over a full block of prepared rows (row-major, [`ROW_BLOCK`] rows).
    fn walk_block<S: Step>(&self, block: &[f64]) -> [f64; ROW_BLOCK] {
        let n = self.n_features;
        let rows: [&[f64]; ROW_BLOCK] = std::array::from_fn(|r| &block[r * n..(r + 1) * n]);
        let mut acc = [self.aggregate.identity(); ROW_BLOCK];
        for &root in &self.roots {
            let mut at = [root as usize; ROW_BLOCK];
            loop {
                let mut moved = false;
                for (i, row) in at.iter_mut().zip(&rows) {
                    let node = &self.nodes[*i];
                    if node.rule != LEAF {
                        *i = S::next(*i, node, row);
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
            for (a, &i) in acc.iter_mut().zip(&at) {
                *a = self.aggregate.combine(*a, self.nodes[i].value);
            }
        }
        acc
    }

    /// One row through every tree.
    pub(super) fn score(&self, row: &[f64]) -> f64 {
        match self.plain_rule(row) {
            Some(LEQ) => self.score_with::<Plain<LEQ>>(row),
            Some(LT) => self.score_with::<Plain<LT>>(row),
            _ => self.score_with::<General>(row),
        }
    }

    /// One row through every tree, [`TREE_LANES`] trees walked at once so their
    /// independent node loads overlap.
    fn score_with<S: Step>(&self, row: &[f64]) -> f64 {
        let mut acc = self.aggregate.identity();
        let mut groups = self.roots.chunks_exact(TREE_LANES);
        for group in &mut groups {
            let mut at = [0usize; TREE_LANES];
            for (a, &r) in at.iter_mut().zip(group) {
                *a = r as usize;
            }
            loop {
                let mut moved = false;
                for i in at.iter_mut() {
                    let node = &self.nodes[*i];
                    if node.rule != LEAF {
                        *i = S::next(*i, node, row);
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
            for &i in &at {
                acc = self.aggregate.combine(acc, self.nodes[i].value);
            }
        }
        for &root in groups.remainder() {
            let mut i = root as usize;
            loop {
                let node = &self.nodes[i];
                if node.rule == LEAF {
                    acc = self.aggregate.combine(acc, node.value);
                    break;
                }
                i = S::next(i, node, row);
            }
        }
        self.finish(acc)
    }
}
