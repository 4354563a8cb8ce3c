//! What happens to a row before the trees (preprocessing steps) and to a score after
//! them (post-transforms).

use super::*;

pub(super) fn apply_post_transform(transform: PostTransform, score: f64) -> f64 {
    match transform {
        PostTransform::None => score,
        PostTransform::Logistic => 1.0 / (1.0 + (-score).exp()),
        // A single-output softmax is always 1 (and 0 for SOFTMAX_ZERO of a zero score).
        PostTransform::Softmax => 1.0,
        PostTransform::SoftmaxZero => {
            if score == 0.0 {
                0.0
            } else {
                1.0
            }
        }
        PostTransform::Probit => std::f64::consts::SQRT_2 * erf_inv(2.0 * score - 1.0),
        PostTransform::Exp => score.exp(),
    }
}

/// Inverse error function (Giles' single-precision approximation, as ONNX runtimes use).
pub(super) fn erf_inv(x: f64) -> f64 {
    let x = x.clamp(-1.0, 1.0);
    let w = -((1.0 - x) * (1.0 + x)).ln();
    let p = if w < 5.0 {
        let w = w - 2.5;
        let mut p = 2.810_226_36e-08;
        for c in [
            3.432_739_39e-07,
            -3.523_387_7e-06,
            -4.391_506_54e-06,
            0.000_218_580_87,
            -0.001_253_725_03,
            -0.004_177_681_64,
            0.246_640_727,
            1.501_409_41,
        ] {
            p = c + p * w;
        }
        p
    } else {
        let w = w.sqrt() - 3.0;
        let mut p = -0.000_200_214_257;
        for c in [
            0.000_100_950_558,
            0.001_349_343_22,
            -0.003_673_428_44,
            0.005_739_507_73,
            -0.007_622_461_3,
            0.009_438_870_47,
            1.001_674_06,
            2.832_976_82,
        ] {
            p = c + p * w;
        }
        p
    };
    p * x
}

pub(super) fn check_preprocess(step: &Preprocess, n_features: usize) -> Result<(), ModelError> {
    let (name, lens) = match step {
        Preprocess::Impute { values, .. } => ("imputer", vec![values.len()]),
        Preprocess::Standardize { mean, scale } => ("scaler", vec![mean.len(), scale.len()]),
    };
    if lens.iter().any(|&l| l != n_features) {
        return Err(ModelError::invalid(format!(
            "the {name} step has {lens:?} values for a model of {n_features} features"
        )));
    }
    let finite = match step {
        Preprocess::Impute { values, .. } => values.iter().all(|v| v.is_finite()),
        Preprocess::Standardize { mean, scale } => {
            mean.iter().all(|v| v.is_finite()) && scale.iter().all(|v| v.is_finite() && *v != 0.0)
        }
    };
    if !finite {
        return Err(ModelError::invalid(format!(
            "the {name} step has a non-finite (or zero scale) value"
        )));
    }
    Ok(())
}

pub(super) fn apply_preprocess(step: &Preprocess, row: &mut [f64]) {
    match step {
        Preprocess::Impute {
            missing_value,
            values,
        } => {
            for (x, v) in row.iter_mut().zip(values) {
                let missing = match missing_value {
                    None => x.is_nan(),
                    Some(m) => *x == *m,
                };
                if missing {
                    *x = *v;
                }
            }
        }
        Preprocess::Standardize { mean, scale } => {
            for ((x, m), s) in row.iter_mut().zip(mean).zip(scale) {
                *x = (*x - m) / s;
            }
        }
    }
}
