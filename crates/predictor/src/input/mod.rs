//! Turning request bodies into feature rows, with errors that name the instance and the
//! feature that is wrong. Shared by `/predict` and `/invocations`. The fast reader
//! (`stream.rs`) writes valid bodies straight into the [`Matrix`]; the tree reader here
//! (`serde_json::Value`) answers every other body (`read.rs` chooses).

mod matrix;
mod read;
mod scan;
mod stream;

use serde_json::{Map, Value};

pub use matrix::Matrix;
pub use read::{csv_rows, invocation_rows, invocation_rows_by_tree, predict_rows};

/// What the served model takes: its features in order, and whether a missing value
/// (`null`, Python's `NaN`, an empty CSV field) may be sent for one.
#[derive(Debug, Clone, Copy)]
pub struct Schema<'a> {
    pub features: &'a [String],
    pub accepts_missing: bool,
}

/// Converts `instances` (rows as arrays in feature order, or records keyed by feature
/// name) into validated rows of finite numbers.
pub fn rows_from_instances(
    instances: &[Value],
    schema: &Schema<'_>,
    max_instances: usize,
) -> Result<Vec<Vec<f64>>, String> {
    check_count(instances.len(), max_instances)?;
    instances
        .iter()
        .enumerate()
        .map(|(i, instance)| match instance {
            Value::Array(values) => row_from_array(i, values, schema),
            Value::Object(record) => row_from_record(i, record, schema),
            other => Err(format!(
                "instance {i} is {}; expected an array of {} numbers or an object keyed by feature name",
                kind(other),
                schema.features.len()
            )),
        })
        .collect()
}

/// Rows from MLflow's `dataframe_split` (`columns` optional: feature order assumed).
pub fn rows_from_split(
    columns: Option<&[Value]>,
    data: &[Value],
    schema: &Schema<'_>,
    max_instances: usize,
) -> Result<Vec<Vec<f64>>, String> {
    let Some(columns) = columns else {
        return rows_from_instances(data, schema, max_instances);
    };
    let names: Vec<String> = columns
        .iter()
        .map(|c| match c {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!(
                "column names must be strings, found {}",
                kind(other)
            )),
        })
        .collect::<Result<_, _>>()?;
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    if let Some(twice) = names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(format!(
            "the column {twice:?} appears twice; each feature may be sent once"
        ));
    }
    check_count(data.len(), max_instances)?;
    data.iter()
        .enumerate()
        .map(|(i, row)| {
            let values = row
                .as_array()
                .ok_or_else(|| format!("data row {i} is {}; expected an array", kind(row)))?;
            if values.len() != names.len() {
                return Err(format!(
                    "data row {i} has {} values for {} columns",
                    values.len(),
                    names.len()
                ));
            }
            let record: Map<String, Value> =
                names.iter().cloned().zip(values.iter().cloned()).collect();
            row_from_record(i, &record, schema)
        })
        .collect()
}

/// Rows from a CSV body as `mlflow models serve` takes it (`Content-Type: text/csv`): a
/// header row of feature names, then one row per instance.
pub fn rows_from_csv(
    body: &[u8],
    schema: &Schema<'_>,
    max_instances: usize,
) -> Result<Vec<Vec<f64>>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let columns: Vec<Value> = reader
        .headers()
        .map_err(|e| format!("malformed CSV header: {e}"))?
        .iter()
        .map(|name| Value::String(name.to_owned()))
        .collect();
    if columns.iter().all(|c| c.as_str() == Some("")) {
        return Err("the CSV body needs a header row of feature names".into());
    }
    let mut data = Vec::new();
    for (i, record) in reader.records().enumerate() {
        if data.len() >= max_instances {
            return Err(format!(
                "more than {max_instances} instances; at most {max_instances} per request"
            ));
        }
        let record = record.map_err(|e| format!("malformed CSV at data row {i}: {e}"))?;
        // Numbers as numbers; anything else stays text and is refused by name below.
        let values: Vec<Value> = record
            .iter()
            .map(|field| {
                if field.is_empty() || field == "NaN" {
                    return Value::Null;
                }
                field
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(|| Value::String(field.to_owned()), Value::Number)
            })
            .collect();
        data.push(Value::Array(values));
    }
    rows_from_split(Some(&columns), &data, schema, max_instances)
}

/// Rows from a column-oriented `{"feature": [v0, v1, ...], ...}` (MLflow `inputs`).
pub fn rows_from_columns(
    columns: &Map<String, Value>,
    schema: &Schema<'_>,
    max_instances: usize,
) -> Result<Vec<Vec<f64>>, String> {
    let features = schema.features;
    check_names(columns.keys(), features, "input")?;
    let mut len = None;
    for (name, values) in columns {
        let n = values
            .as_array()
            .ok_or_else(|| {
                format!(
                    "input column {name:?} is {}; expected an array",
                    kind(values)
                )
            })?
            .len();
        if *len.get_or_insert(n) != n {
            return Err("input columns have different lengths".into());
        }
    }
    let len = len.unwrap_or(0);
    check_count(len, max_instances)?;
    (0..len)
        .map(|i| {
            features
                .iter()
                .map(|f| {
                    let v = &columns[f.as_str()][i];
                    number(i, f, v, schema.accepts_missing)
                })
                .collect()
        })
        .collect()
}

fn check_count(n: usize, max: usize) -> Result<(), String> {
    if n == 0 {
        Err("no instances: send at least one".into())
    } else if n > max {
        Err(format!("{n} instances; at most {max} per request"))
    } else {
        Ok(())
    }
}

fn row_from_array(i: usize, values: &[Value], schema: &Schema<'_>) -> Result<Vec<f64>, String> {
    let features = schema.features;
    if values.len() != features.len() {
        return Err(format!(
            "instance {i} has {} values; the model takes {} features ({})",
            values.len(),
            features.len(),
            features.join(", ")
        ));
    }
    values
        .iter()
        .zip(features)
        .map(|(v, f)| number(i, f, v, schema.accepts_missing))
        .collect()
}

fn row_from_record(
    i: usize,
    record: &Map<String, Value>,
    schema: &Schema<'_>,
) -> Result<Vec<f64>, String> {
    let features = schema.features;
    check_names(record.keys(), features, &format!("instance {i}"))?;
    features
        .iter()
        .map(|f| number(i, f, &record[f.as_str()], schema.accepts_missing))
        .collect()
}

fn check_names<'a>(
    names: impl Iterator<Item = &'a String> + Clone,
    features: &[String],
    what: &str,
) -> Result<(), String> {
    if let Some(unknown) = names.clone().find(|n| !features.contains(n)) {
        return Err(format!(
            "{what} has unknown feature {unknown:?}; the model takes: {}",
            features.join(", ")
        ));
    }
    let given: Vec<&String> = names.collect();
    if let Some(missing) = features.iter().find(|f| !given.contains(f)) {
        return Err(format!("{what} lacks feature {missing:?}"));
    }
    Ok(())
}

fn number(i: usize, feature: &str, v: &Value, accepts_missing: bool) -> Result<f64, String> {
    match v {
        Value::Null if accepts_missing => Ok(f64::NAN),
        Value::Null => Err(format!(
            "instance {i}, feature {feature:?}: missing (null or NaN), but this model does not \
             accept missing values"
        )),
        Value::String(s) if matches!(s.as_str(), "Infinity" | "-Infinity") => Err(format!(
            "instance {i}, feature {feature:?}: {s} is not a finite number"
        )),
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.is_finite() => Ok(x),
            _ => Err(format!(
                "instance {i}, feature {feature:?}: {n} is not a finite number"
            )),
        },
        other => Err(format!(
            "instance {i}, feature {feature:?}: expected a number, found {}",
            kind(other)
        )),
    }
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {:?}", s.chars().take(40).collect::<String>()),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NAMES: &[&str] = &["a", "b"];

    fn names() -> Vec<String> {
        NAMES.iter().map(|s| s.to_string()).collect()
    }

    fn strict(names: &[String]) -> Schema<'_> {
        Schema {
            features: names,
            accepts_missing: false,
        }
    }

    #[test]
    fn arrays_and_records_give_rows_in_feature_order() {
        let rows = rows_from_instances(
            &[json!([1, 2.5]), json!({"b": 4, "a": 3})],
            &strict(&names()),
            10,
        )
        .unwrap();
        assert_eq!(rows, vec![vec![1.0, 2.5], vec![3.0, 4.0]]);
    }

    #[test]
    fn each_kind_of_bad_instance_names_what_is_wrong() {
        let n = names();
        let f = strict(&n);
        let e = rows_from_instances(&[json!([1])], &f, 10).unwrap_err();
        assert!(
            e.contains("has 1 values") && e.contains("2 features"),
            "{e}"
        );
        let e = rows_from_instances(&[json!({"a": 1, "c": 2})], &f, 10).unwrap_err();
        assert!(e.contains("unknown feature \"c\""), "{e}");
        let e = rows_from_instances(&[json!({"a": 1})], &f, 10).unwrap_err();
        assert!(e.contains("lacks feature \"b\""), "{e}");
        let e = rows_from_instances(&[json!([1, "x"])], &f, 10).unwrap_err();
        assert!(e.contains("feature \"b\"") && e.contains("string"), "{e}");
        let e = rows_from_instances(&[json!([1, null])], &f, 10).unwrap_err();
        assert!(e.contains("null"), "{e}");
        let e = rows_from_instances(&[], &f, 10).unwrap_err();
        assert!(e.contains("no instances"), "{e}");
        let e = rows_from_instances(&vec![json!([1, 2]); 3], &f, 2).unwrap_err();
        assert!(e.contains("at most 2"), "{e}");
        let e = rows_from_instances(&[json!("1,2")], &f, 10).unwrap_err();
        assert!(e.contains("instance 0"), "{e}");
    }

    #[test]
    fn split_and_column_formats_map_names_to_features() {
        let n = names();
        let f = strict(&n);
        let cols = [json!("b"), json!("a")];
        let rows = rows_from_split(Some(&cols), &[json!([2, 1])], &f, 10).unwrap();
        assert_eq!(rows, vec![vec![1.0, 2.0]]);
        let map = json!({"a": [1, 3], "b": [2, 4]});
        let rows = rows_from_columns(map.as_object().unwrap(), &f, 10).unwrap();
        assert_eq!(rows, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
        let bad = json!({"a": [1], "b": [2, 4]});
        assert!(rows_from_columns(bad.as_object().unwrap(), &f, 10).is_err());
        let twice = [json!("a"), json!("b"), json!("a")];
        let err = rows_from_split(Some(&twice), &[json!([1, 2, 3])], &f, 10).unwrap_err();
        assert!(err.contains(r#"the column "a" appears twice"#), "{err}");
        let csv = rows_from_csv(b"a,b,a\n1,2,3\n", &f, 10).unwrap_err();
        assert!(csv.contains("appears twice"), "{csv}");
    }

    #[test]
    fn missing_values_are_nan_only_for_models_that_take_them() {
        let n = names();
        let lenient = Schema {
            features: &n,
            accepts_missing: true,
        };
        let rows = rows_from_instances(
            &[json!([null, 1]), json!({"a": 2, "b": null})],
            &lenient,
            10,
        )
        .unwrap();
        assert!(rows[0][0].is_nan() && rows[1][1].is_nan());
        let e = rows_from_instances(&[json!([null, 1])], &strict(&n), 10).unwrap_err();
        assert!(e.contains("does not accept missing values"), "{e}");
        let rows = rows_from_csv(b"a,b\n,2\nNaN,3\n", &lenient, 10).unwrap();
        assert!(rows[0][0].is_nan() && rows[1][0].is_nan());
        let e = rows_from_instances(&[json!(["Infinity", 1])], &lenient, 10).unwrap_err();
        assert!(e.contains("not a finite number"), "{e}");
    }
}
