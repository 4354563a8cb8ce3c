//! The fast reader against the tree reader: whatever the fast reader reads, the tree reader
//! reads to the same bits; what it does not, the tree reader answers.

use super::*;
use crate::input::stream::{Route, read_csv, read_json};

fn names() -> Vec<String> {
    ["a", "b", "c"].iter().map(|s| s.to_string()).collect()
}

fn schema(names: &[String], accepts_missing: bool) -> Schema<'_> {
    Schema {
        features: names,
        accepts_missing,
    }
}

/// The tree reader alone, as the routes answered before the fast reader.
fn tree(
    route: Route,
    body: &[u8],
    schema: &Schema<'_>,
    max: usize,
) -> Result<Vec<Vec<f64>>, String> {
    let value = parse_json(body).map_err(|e| e.to_string())?;
    match route {
        Route::Predict => {
            let request: api::predictor::PredictRequest =
                serde_json::from_value(value).map_err(|e| format!("malformed JSON: {e}"))?;
            rows_from_instances(&request.instances, schema, max)
        }
        Route::Invocations => rows_from_body(&value, schema, max),
    }
}

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// The invariant: a body the fast reader reads, the tree reader reads to the same bits.
fn agree(route: Route, body: &[u8], schema: &Schema<'_>, max: usize) -> bool {
    let fast = read_json(body, route, schema, max);
    let slow = tree(route, body, schema, max);
    if let Ok(m) = &fast {
        let rows = slow.unwrap_or_else(|e| {
            panic!(
                "fast read {:?} but the tree reader says {e}",
                String::from_utf8_lossy(body)
            )
        });
        let flat: Vec<f64> = rows.concat();
        assert_eq!(
            bits(m.values()),
            bits(&flat),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    fast.is_ok()
}

const READ_FAST: &[(&str, &str)] = &[
    ("p", r#"{"instances": [[1, 2.5, -3e2], [0.1, 0, -0]]}"#),
    (
        "p",
        r#" { "instances" : [ { "c": 3, "a": 1, "b": 2 } , [4,5,6] ] } "#,
    ),
    ("i", r#"{"inputs": [[1, 2, 3]]}"#),
    (
        "i",
        r#"{"inputs": {"b": [2, 5], "a": [1, 4], "c": [3, 6]}}"#,
    ),
    ("i", r#"{"dataframe_records": [{"a": 1, "b": 2, "c": 3}]}"#),
    (
        "i",
        r#"{"dataframe_split": {"columns": ["c", "a", "b"], "index": [0], "data": [[3, 1, 2]]}}"#,
    ),
    ("i", r#"{"dataframe_split": {"data": [[1, 2, 3]]}}"#),
    (
        "i",
        r#"{"params": {"x": [1, "y", null, {"z": NaN}]}, "instances": [[1, 2, 3]]}"#,
    ),
    ("i", r#"{"instances": [[1, 2, 3]], "params": null}"#),
    (
        "i",
        r#"{"instances": [[123456789012345678901234567890, 0.30000000000000004, 1e-320]]}"#,
    ),
];

const TREE_ANSWERS: &[(&str, &str)] = &[
    ("p", r#"{"instances": [[1, 2, 3]], "params": {}}"#),
    ("p", r#"{"instances": [[1, 2]]}"#),
    ("p", r#"{"instances": [[1, 2, 3, 4]]}"#),
    ("p", r#"{"instances": [{"a": 1, "b": 2, "a": 3, "c": 4}]}"#),
    ("p", r#"{"instances": [{"a": 1, "b": 2}]}"#),
    ("p", r#"{"instances": [{"a": 1, "b": 2, "c": 3, "d": 4}]}"#),
    ("p", r#"{"instances": [[1, "2", 3]]}"#),
    ("p", r#"{"instances": [[1, null, 3]]}"#),
    ("p", r#"{"instances": [[1, NaN, 3]]}"#),
    ("p", r#"{"instances": [[1, Infinity, 3]]}"#),
    ("p", r#"{"instances": [[1, 1e999, 3]]}"#),
    ("p", r#"{"instances": [[1, [2], 3]]}"#),
    ("p", r#"{"instances": []}"#),
    ("p", r#"{"instances": [[1, 2, 3]]} trailing"#),
    (
        "p",
        r#"{"instances": [[1, 2, 3]], "instances": [[1, 2, 3]]}"#,
    ),
    ("p", r#"{"instances": [{"a\u0062": 1}]}"#),
    ("i", r#"{"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]}"#),
    ("i", r#"{"inputs": {"a": [1], "b": [2, 3], "c": [4]}}"#),
    (
        "i",
        r#"{"dataframe_split": {"data": [[3, 1, 2]], "columns": ["c", "a", "b"]}}"#,
    ),
    (
        "i",
        r#"{"dataframe_split": {"columns": ["a", "b", "a"], "data": [[1, 2, 3]]}}"#,
    ),
    (
        "i",
        r#"{"dataframe_split": {"columns": ["a", "b", "c"], "data": [{"a": 1}]}}"#,
    ),
    ("i", r#"{"params": {"x": "\q"}, "instances": [[1, 2, 3]]}"#),
    ("i", r#"{"dataframe_columns": []}"#),
    ("i", "[]"),
    ("i", ""),
];

fn route(code: &str) -> Route {
    if code == "p" {
        Route::Predict
    } else {
        Route::Invocations
    }
}

#[test]
fn valid_bodies_are_read_fast_and_to_the_same_bits() {
    let n = names();
    for (code, body) in READ_FAST {
        assert!(
            agree(route(code), body.as_bytes(), &schema(&n, false), 10),
            "missed: {body}"
        );
    }
    // Missing values where the model takes them.
    let body = br#"{"instances": [[1, null, NaN], {"a": NaN, "b": 2, "c": null}]}"#;
    assert!(agree(Route::Predict, body, &schema(&n, true), 10));
    let m = read_json(body, Route::Predict, &schema(&n, true), 10).unwrap();
    assert!(m.row(0)[1].is_nan() && m.row(1)[2].is_nan());
}

#[test]
fn everything_else_is_left_to_the_tree_reader() {
    let n = names();
    for (code, body) in TREE_ANSWERS {
        assert!(
            !agree(route(code), body.as_bytes(), &schema(&n, false), 10),
            "read fast: {body}"
        );
    }
    let too_many = format!(r#"{{"instances": [{}]}}"#, ["[1, 2, 3]"; 11].join(","));
    assert!(!agree(
        Route::Predict,
        too_many.as_bytes(),
        &schema(&n, false),
        10
    ));
}

#[test]
fn malformed_json_in_a_row_names_the_row_and_the_feature() {
    let n = names();
    let s = schema(&n, false);
    let cases = [
        (
            r#"{"instances": [{"a": 1, "b": 2, "a": 3, "c": 4}]}"#.to_string(),
            r#"instance 0, feature "a""#,
        ),
        (
            format!(r#"{{"instances": [[1, 2, {}]]}}"#, "9".repeat(400)),
            r#"instance 0, feature "c""#,
        ),
        (
            format!(
                r#"{{"instances": [[1, {}5{}, 3]]}}"#,
                "[".repeat(200),
                "]".repeat(200)
            ),
            r#"instance 0, feature "b""#,
        ),
    ];
    for (body, says) in cases {
        let err = predict_rows(body.as_bytes(), &s, 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{err}");
        assert!(err.contains("malformed JSON"), "{err}");
    }
    // Messages the tree reader gives with the row already named stay as they were.
    let err = predict_rows(br#"{"instances": [[1, 2, 3], [4, [[[[5]]]], 6]]}"#, &s, 10)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(r#"instance 1, feature "b": expected a number, found an array"#),
        "{err}"
    );
    let err = predict_rows(br#"{"instances": [[1, "x", 3]]}"#, &s, 10)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(r#"instance 0, feature "b": expected a number"#),
        "{err}"
    );
    let err = predict_rows(br#"{"instances": [[1, 2]]}"#, &s, 10)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("instance 0 has 2 values"), "{err}");
}

#[test]
fn mutated_bodies_never_read_fast_to_something_else() {
    // A small deterministic fuzz: bytes of valid bodies deleted, doubled and replaced by
    // JSON's own punctuation and tokens.
    let n = names();
    let pieces: [&[u8]; 12] = [
        b"[", b"]", b"{", b"}", b",", b":", b"\"", b"-", b"NaN", b"1e5", b"\"a\"", b" ",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut read_fast = 0;
    for round in 0..20_000 {
        let (code, body) = READ_FAST[round % READ_FAST.len()];
        let mut body = body.as_bytes().to_vec();
        for _ in 0..1 + next() % 3 {
            let at = (next() as usize) % body.len();
            match next() % 3 {
                0 => {
                    body.remove(at);
                }
                1 => body.insert(at, body[at]),
                _ => {
                    let piece = pieces[(next() as usize) % pieces.len()];
                    body.splice(at..at + 1, piece.iter().copied());
                }
            }
            if body.is_empty() {
                break;
            }
        }
        for accepts_missing in [false, true] {
            if agree(route(code), &body, &schema(&n, accepts_missing), 10) {
                read_fast += 1;
            }
        }
    }
    // Some mutations keep a body valid (a doubled space or digit): those were compared.
    assert!(read_fast > 1_000, "{read_fast}");
}

#[test]
fn csv_is_read_fast_when_valid_and_otherwise_by_the_tree_reader() {
    let n = names();
    let s = schema(&n, true);
    let body = b"c, a ,b\n3,1,2\n 6 , 4,NaN\n9,7,\n";
    let m = read_csv(body, &s, 10).unwrap();
    let rows = rows_from_csv(body, &s, 10).unwrap();
    assert_eq!(bits(&m.values()[..5]), bits(&rows.concat()[..5]));
    assert!(m.row(1)[1].is_nan() && m.row(2)[1].is_nan());
    for bad in [
        &b"a,b\n1,2\n"[..],
        b"a,b,c\n1,2\n",
        b"a,b,c,a\n1,2,3,4\n",
        b"a,b,c\n1,x,3\n",
        b"a,b,c\n1,inf,3\n",
        b"a,b,c\n",
        b"",
    ] {
        assert!(
            read_csv(bad, &s, 10).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let strict = schema(&n, false);
    assert!(read_csv(b"a,b,c\n1,,3\n", &strict, 10).is_err());
    let err = csv_rows(b"a,b,c\n1,,3\n", &strict, 10)
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not accept missing values"), "{err}");
}
