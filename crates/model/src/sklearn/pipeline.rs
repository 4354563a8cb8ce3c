//! `Pipeline`: `SimpleImputer` and `StandardScaler` steps become the ensemble's per-feature
//! preprocessing; the last step is one of the served regressors.

use super::{NodeBudget, final_estimator, n_features};
use crate::ensemble::{EnsembleSpec, Preprocess, TreeEnsemble};
use crate::error::ModelError;
use crate::imported::ImportedModel;
use crate::python::{Attrs, Obj};

pub(super) fn import(attrs: &Attrs<'_>, budget: &NodeBudget) -> Result<ImportedModel, ModelError> {
    let objects = attrs.objects;
    let steps = objects
        .items(attrs.require("steps")?)
        .ok_or_else(|| ModelError::invalid("Pipeline.steps is not a list"))?;
    let (last, earlier) = steps
        .split_last()
        .ok_or_else(|| ModelError::invalid("the Pipeline has no steps"))?;
    let step_estimator = |step| {
        objects
            .items(step)
            .and_then(|pair| pair.get(1).copied())
            .ok_or_else(|| ModelError::invalid("a Pipeline step is not a (name, estimator) pair"))
    };
    let final_attrs = Attrs::of(objects, step_estimator(*last)?)?;
    let mut imported = final_estimator(&final_attrs, budget)?;
    imported.feature_names = imported
        .feature_names
        .or_else(|| final_attrs.feature_names_in());
    let mut preprocess = Vec::new();
    let mut names = vec![];
    let mut first_imputes_nan = false;
    for (position, &step) in earlier.iter().enumerate() {
        let estimator = step_estimator(step)?;
        // `"passthrough"` and `None` steps do nothing.
        if matches!(objects.get(estimator), Obj::None)
            || objects.as_str(estimator) == Some("passthrough")
        {
            continue;
        }
        let step = Attrs::of(objects, estimator)?;
        if imported.feature_names.is_none() && position == 0 {
            imported.feature_names = step.feature_names_in();
        }
        let n = n_features(&step)?;
        if n != imported.ensemble.n_features() {
            return Err(ModelError::invalid(format!(
                "Pipeline step {} takes {n} features but the model takes {}",
                step.short_class(),
                imported.ensemble.n_features()
            )));
        }
        match step.short_class() {
            "SimpleImputer" => {
                let (p, imputes_nan) = imputer(&step)?;
                first_imputes_nan |= position == 0 && imputes_nan;
                preprocess.push(p);
            }
            "StandardScaler" => preprocess.push(scaler(&step, n)?),
            _ => {
                return Err(ModelError::unsupported(format!(
                    "Pipeline step {} (served before the regressor: SimpleImputer, StandardScaler)",
                    step.class
                )));
            }
        }
        names.push(step.short_class().to_owned());
    }
    names.push(imported.estimator.clone());
    let mut spec: EnsembleSpec = imported.ensemble.to_spec();
    preprocess.append(&mut spec.preprocess);
    spec.preprocess = preprocess;
    imported.ensemble = TreeEnsemble::new(&spec)?;
    imported.estimator = format!("Pipeline({})", names.join(", "));
    imported.accepts_missing |= first_imputes_nan;
    Ok(imported)
}

/// Returns the step and whether it replaces NaN.
fn imputer(step: &Attrs<'_>) -> Result<(Preprocess, bool), ModelError> {
    let objects = step.objects;
    if step.get("add_indicator").and_then(|a| objects.as_bool(a)) == Some(true) {
        return Err(ModelError::unsupported(
            "SimpleImputer with add_indicator=True",
        ));
    }
    let missing = step.require("missing_values")?;
    let missing_value = match objects.get(missing) {
        Obj::None => None,
        _ => match objects.as_f64(missing) {
            Some(v) if v.is_nan() => None,
            Some(v) => Some(v),
            None => {
                return Err(ModelError::unsupported(format!(
                    "SimpleImputer with missing_values={}",
                    objects.describe(missing)
                )));
            }
        },
    };
    let values = step.array("statistics_")?.to_f64()?;
    if values.iter().any(|v| v.is_nan()) {
        return Err(ModelError::unsupported(
            "SimpleImputer that drops features it never saw (a statistic is NaN)",
        ));
    }
    Ok((
        Preprocess::Impute {
            missing_value,
            values,
        },
        missing_value.is_none(),
    ))
}

fn scaler(step: &Attrs<'_>, n: usize) -> Result<Preprocess, ModelError> {
    let objects = step.objects;
    let vector = |name: &str, default: f64| -> Result<Vec<f64>, ModelError> {
        match step.get(name) {
            Some(id) if !objects.is_none(id) => step.array(name)?.to_f64(),
            _ => Ok(vec![default; n]),
        }
    };
    Ok(Preprocess::Standardize {
        mean: vector("mean_", 0.0)?,
        scale: vector("scale_", 1.0)?,
    })
}
