//! The input example MLflow saves beside a model (`log_model(..., input_example=...)`):
//! its first row, by feature, so a page can offer it as a starting point.
//!
//! MLflow writes `input_example.json` as a pandas DataFrame in `split` orientation
//! (`{"columns": [...], "data": [[...]]}`), or for arrays as `{"inputs": [[...]]}` or a bare
//! list. Records (`[{"feature": value}]`) and columns (`{"feature": [values]}`) are read
//! too. Only numbers are taken; anything else leaves that feature blank.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

/// The file MLflow writes.
pub const INPUT_EXAMPLE_FILE: &str = "input_example.json";
/// The most bytes read of it.
pub const MAX_INPUT_EXAMPLE_BYTES: u64 = 1024 * 1024;

/// The first example row of the model in `dir`, one entry per feature in `features`
/// (`None` where the example has no number for it); `None` when there is no usable
/// example (no file, too large, unreadable, or no feature of it known).
pub fn read_from_dir(dir: &Path, features: &[String]) -> Option<Vec<Option<f64>>> {
    let file = std::fs::File::open(dir.join(INPUT_EXAMPLE_FILE)).ok()?;
    let mut bytes = Vec::new();
    let n = file
        .take(MAX_INPUT_EXAMPLE_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if n as u64 > MAX_INPUT_EXAMPLE_BYTES {
        return None;
    }
    first_row(&serde_json::from_slice(&bytes).ok()?, features)
}

/// The first row of a parsed example, by feature.
pub fn first_row(example: &Value, features: &[String]) -> Option<Vec<Option<f64>>> {
    let row: Vec<Option<f64>> = match example {
        // split: {"columns": [...], "data": [[...], ...]}
        Value::Object(o) if o.contains_key("columns") && o.contains_key("data") => {
            let columns = o.get("columns")?.as_array()?;
            let first = o.get("data")?.as_array()?.first()?.as_array()?;
            let by_name = |name: &String| {
                columns
                    .iter()
                    .position(|c| c.as_str() == Some(name))
                    .and_then(|i| first.get(i))
                    .and_then(Value::as_f64)
            };
            features.iter().map(by_name).collect()
        }
        // {"inputs": ...}: an array, or columns by name.
        Value::Object(o) if o.len() == 1 && o.contains_key("inputs") => {
            return first_row(o.get("inputs")?, features);
        }
        // columns: {"feature": [values]} or {"feature": value}
        Value::Object(o) => features
            .iter()
            .map(|name| match o.get(name)? {
                Value::Array(values) => values.first().and_then(Value::as_f64),
                v => v.as_f64(),
            })
            .collect(),
        Value::Array(rows) => match rows.first()? {
            // records
            Value::Object(record) => features
                .iter()
                .map(|name| record.get(name).and_then(Value::as_f64))
                .collect(),
            // rows of values, in feature order
            Value::Array(values) if values.len() == features.len() => {
                values.iter().map(Value::as_f64).collect()
            }
            // one row
            Value::Number(_) if rows.len() == features.len() => {
                rows.iter().map(Value::as_f64).collect()
            }
            _ => return None,
        },
        _ => return None,
    };
    let row: Vec<Option<f64>> = row
        .into_iter()
        .map(|v| v.filter(|x| x.is_finite()))
        .collect();
    row.iter().any(Option::is_some).then_some(row)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn features() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn every_layout_mlflow_writes_gives_the_first_row_by_name() {
        let f = features();
        let want = Some(vec![Some(1.0), Some(2.0)]);
        let split = json!({"columns": ["b", "a"], "data": [[2, 1], [5, 6]]});
        assert_eq!(first_row(&split, &f), want);
        assert_eq!(first_row(&json!({"inputs": [[1, 2], [3, 4]]}), &f), want);
        assert_eq!(first_row(&json!([[1.0, 2.0]]), &f), want);
        assert_eq!(first_row(&json!([1.0, 2.0]), &f), want);
        assert_eq!(first_row(&json!([{"a": 1, "b": 2}]), &f), want);
        assert_eq!(first_row(&json!({"a": [1, 9], "b": [2, 9]}), &f), want);
    }

    #[test]
    fn what_is_not_a_number_is_left_blank_and_nothing_known_is_no_example() {
        let f = features();
        assert_eq!(
            first_row(&json!({"columns": ["a"], "data": [["x"]]}), &f),
            None
        );
        assert_eq!(
            first_row(&json!([{"a": 1, "b": "text"}]), &f),
            Some(vec![Some(1.0), None])
        );
        assert_eq!(first_row(&json!([[1, 2, 3]]), &f), None);
        assert_eq!(first_row(&json!("text"), &f), None);
        assert_eq!(first_row(&json!({"columns": [], "data": []}), &f), None);
    }

    #[test]
    fn files_are_read_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let f = features();
        assert_eq!(read_from_dir(dir.path(), &f), None);
        std::fs::write(
            dir.path().join(INPUT_EXAMPLE_FILE),
            br#"{"columns":["a","b"],"data":[[1,2]]}"#,
        )
        .unwrap();
        assert_eq!(
            read_from_dir(dir.path(), &f),
            Some(vec![Some(1.0), Some(2.0)])
        );
        let big = format!("[[1, 2{}]]", " ".repeat(MAX_INPUT_EXAMPLE_BYTES as usize));
        std::fs::write(dir.path().join(INPUT_EXAMPLE_FILE), big).unwrap();
        assert_eq!(read_from_dir(dir.path(), &f), None);
    }
}
