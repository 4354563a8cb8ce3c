//! A request's rows as the evaluator takes them: row-major, one row of `n_features`
//! values after another, in the served model's feature order.

/// Rows of feature values, row-major.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Matrix {
    values: Vec<f64>,
    n_features: usize,
}

impl Matrix {
    /// `values` holds whole rows of `n_features` values (checked in debug builds).
    pub fn new(values: Vec<f64>, n_features: usize) -> Matrix {
        debug_assert!(n_features == 0 || values.len().is_multiple_of(n_features));
        Matrix { values, n_features }
    }

    /// Rows of `n_features` values each, flattened.
    pub fn from_rows(rows: Vec<Vec<f64>>, n_features: usize) -> Matrix {
        let mut values = Vec::with_capacity(rows.len() * n_features);
        for row in rows {
            debug_assert_eq!(row.len(), n_features);
            values.extend_from_slice(&row);
        }
        Matrix::new(values, n_features)
    }

    pub fn rows(&self) -> usize {
        self.values.len().checked_div(self.n_features).unwrap_or(0)
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Every value, row after row.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.n_features..(i + 1) * self.n_features]
    }

    /// The rows one by one.
    pub fn iter_rows(&self) -> impl Iterator<Item = &[f64]> {
        self.values.chunks_exact(self.n_features.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_slices_of_one_buffer() {
        let m = Matrix::from_rows(vec![vec![1.0, 2.0], vec![3.0, 4.0]], 2);
        assert_eq!(m.rows(), 2);
        assert_eq!(m.n_features(), 2);
        assert_eq!(m.row(1), &[3.0, 4.0]);
        assert_eq!(m.values(), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m.iter_rows().count(), 2);
        assert_eq!(Matrix::new(vec![], 0).rows(), 0);
    }
}
