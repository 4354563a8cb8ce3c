//! The globals a pickle (or a skops file) may name. Nothing is ever called, but a model
//! that needs anything else is not one this predictor can serve, and a payload such as
//! `os.system` is refused by name before anything else is read.

/// joblib's inline-array marker.
pub const JOBLIB_ARRAY_WRAPPER: &str = "joblib.numpy_pickle.NumpyArrayWrapper";

/// The scikit-learn estimators (and their parts) the importer converts.
pub const SKLEARN_CLASSES: &[&str] = &[
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._forest.ExtraTreesRegressor",
    "sklearn.ensemble._gb.GradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.dummy.DummyRegressor",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.impute._base.SimpleImputer",
    "lightgbm.sklearn.LGBMRegressor",
    "lightgbm.basic.Booster",
];

/// Loss and link objects gradient-boosting estimators keep (data only).
const LOSS_MODULES: &[&str] = &[
    "sklearn._loss.loss",
    "sklearn._loss.link",
    "sklearn._loss._loss",
];

/// numpy reconstruction helpers and the random-state objects estimators keep.
const NUMPY_GLOBALS: &[&str] = &[
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.core.numeric._frombuffer",
    "numpy._core.numeric._frombuffer",
    "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pickle.__generator_ctor",
    "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random.mtrand.RandomState",
    "numpy.random._generator.Generator",
    "numpy.random._mt19937.MT19937",
    "numpy.random._pcg64.PCG64",
    "numpy.random.bit_generator.SeedSequence",
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
];

/// Builtins that only rebuild plain data.
const BUILTIN_GLOBALS: &[&str] = &[
    "copyreg._reconstructor",
    "copy_reg._reconstructor",
    "builtins.object",
    "__builtin__.object",
    "builtins.set",
    "builtins.frozenset",
    "builtins.str",
    "builtins.int",
    "builtins.float",
    "builtins.bool",
    "_codecs.encode",
    "collections.OrderedDict",
    "collections.defaultdict",
    JOBLIB_ARRAY_WRAPPER,
];

/// Whether `module.name` may appear in a model file.
pub fn is_allowed(module: &str, name: &str) -> bool {
    let full = format!("{module}.{name}");
    SKLEARN_CLASSES.contains(&full.as_str())
        || NUMPY_GLOBALS.contains(&full.as_str())
        || BUILTIN_GLOBALS.contains(&full.as_str())
        || (LOSS_MODULES.contains(&module) && is_loss_name(name))
}

/// Why a refused global usually appears, when that helps the reader of the error.
pub fn refusal_hint(module: &str, name: &str) -> &'static str {
    match (module, name) {
        ("sklearn.compose._column_transformer", "ColumnTransformer")
        | ("sklearn.preprocessing._encoders", "OrdinalEncoder") => {
            "; a HistGradientBoostingRegressor keeps one for categorical features, which are \
             not served (only numeric features)"
        }
        _ => "",
    }
}

/// Loss classes (`HalfSquaredError`, `CyHalfSquaredError`, their Cython unpicklers) and
/// links (`IdentityLink`, `LogLink`, `Interval`): names only, no dunder tricks.
fn is_loss_name(name: &str) -> bool {
    let base = name.strip_prefix("__pyx_unpickle_").unwrap_or(name);
    !base.is_empty()
        && !base.starts_with('_')
        && base.chars().all(|c| c.is_ascii_alphanumeric())
        && (base.ends_with("Loss")
            || base.ends_with("Error")
            || base.ends_with("Link")
            || base == "Interval")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimator_parts_are_allowed_and_side_effects_are_not() {
        assert!(is_allowed("sklearn.tree._tree", "Tree"));
        assert!(is_allowed("numpy._core.multiarray", "_reconstruct"));
        assert!(is_allowed("sklearn._loss.loss", "HalfSquaredError"));
        assert!(is_allowed(
            "sklearn._loss._loss",
            "__pyx_unpickle_CyHalfSquaredError"
        ));
        assert!(is_allowed("sklearn._loss.link", "IdentityLink"));
        for (module, name) in [
            ("posix", "system"),
            ("os", "system"),
            ("builtins", "eval"),
            ("builtins", "getattr"),
            ("subprocess", "Popen"),
            ("sklearn._loss.loss", "__init__"),
            ("sklearn._loss.loss", "_Evil"),
            ("sklearn.linear_model._base", "LinearRegression"),
            ("numpy", "load"),
        ] {
            assert!(!is_allowed(module, name), "{module}.{name}");
        }
    }
}
