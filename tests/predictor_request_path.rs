//! The predictor's request path as a client meets it: bodies in every `Content-Encoding` a
//! client sends, bounded by what they inflate to, against a real predictor process serving
//! a model from disk.

use std::io::Write;

use forecast_e2e::*;
use serde_json::{Value, json};

/// A predictor serving a `forecastctl train` model from disk (the registry is a closed
/// port, so the fallback is what serves).
fn start(dir: &std::path::Path, extra: &[(&'static str, String)]) -> Predictor {
    train(dir, 7).unwrap();
    let mut env = vec![
        (
            "MLFLOW_TRACKING_URI",
            format!("http://127.0.0.1:{}", closed_port()),
        ),
        ("MODEL_FALLBACK_DIR", dir.display().to_string()),
    ];
    env.extend_from_slice(extra);
    Predictor::start(&env).unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn post(
    c: &reqwest::Client,
    url: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut r = c.post(url).header("content-type", content_type);
    if let Some(e) = encoding {
        r = r.header("content-encoding", e);
    }
    let r = r.body(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The process's peak resident set so far (`VmHWM`), KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn serving(c: &reqwest::Client, p: &Predictor) {
    forecast_e2e::cluster::wait_until(
        "the fallback model served",
        std::time::Duration::from_secs(30),
        || async {
            matches!(
                get_json(c, &format!("{}/model/info", p.url)).await,
                Ok((200, _))
            )
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_bodies_score_like_plain_ones_and_bombs_stop_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), &[]);
    let c = http();
    serving(&c, &p).await;
    let rows = json!([archive_row(1), archive_row(2), archive_row(3)]);
    let body = json!({ "instances": rows }).to_string().into_bytes();
    let predict = format!("{}/predict", p.url);
    let invocations = format!("{}/invocations", p.url);
    let (status, plain) = post(&c, &predict, "application/json", None, body.clone()).await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["predictions"].as_array().unwrap().len(), 3);

    // gzip and deflate (zlib, as HTTP defines it) score the same rows the same way.
    for (encoding, wire) in [("gzip", gzip(&body)), ("deflate", zlib(&body))] {
        let (status, answer) = post(
            &c,
            &predict,
            "application/json",
            Some(encoding),
            wire.clone(),
        )
        .await;
        assert_eq!(status, 200, "{encoding}: {answer}");
        assert_eq!(answer["predictions"], plain["predictions"], "{encoding}");
        let (status, answer) =
            post(&c, &invocations, "application/json", Some(encoding), wire).await;
        assert_eq!(status, 200, "{encoding} /invocations: {answer}");
        assert_eq!(answer["predictions"], plain["predictions"], "{encoding}");
    }
    // CSV too.
    let header = model::features::FEATURE_NAMES.join(",");
    let csv_rows: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let csv = format!("{header}\n{}\n", csv_rows.join("\n"));
    let (status, answer) = post(
        &c,
        &invocations,
        "text/csv",
        Some("gzip"),
        gzip(csv.as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["predictions"], plain["predictions"]);

    // A bomb: 64 KiB on the wire (far under the 1 MiB limit), 64 MiB inflated (far over).
    let mut inflated = br#"{"instances": ["#.to_vec();
    inflated.resize(64 << 20, b' ');
    let bomb = gzip(&inflated);
    assert!(bomb.len() < 128 << 10, "{} bytes on the wire", bomb.len());
    let before = peak_rss_kib(p.pid());
    let (status, answer) = post(&c, &predict, "application/json", Some("gzip"), bomb.clone()).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"], "payload_too_large", "{answer}");
    let (status, _) = post(&c, &invocations, "application/json", Some("gzip"), bomb).await;
    assert_eq!(status, 413);
    let after = peak_rss_kib(p.pid());
    // Refused at the limit: at most the limit and a decoder buffer more than before, far
    // from the 64 MiB the body inflates to.
    assert!(
        after < before + 16 * 1024,
        "the peak resident set grew from {before} KiB to {after} KiB refusing the bomb"
    );
    eprintln!("peak RSS {before} KiB before the bomb, {after} KiB after");

    // An encoding the predictor does not decode is named, not read as JSON.
    let (status, answer) = post(&c, &predict, "application/json", Some("br"), body.clone()).await;
    assert_eq!(status, 415, "{answer}");
    assert_eq!(answer["error"], "unsupported_media_type");
    assert!(
        answer["message"].as_str().unwrap().contains("\"br\""),
        "{answer}"
    );
    // Corrupt gzip is a bad request, and the predictor keeps serving.
    let (status, answer) = post(
        &c,
        &predict,
        "application/json",
        Some("gzip"),
        b"not gzip at all".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("gzip"),
        "{answer}"
    );
    let (status, answer) = post(&c, &predict, "application/json", None, body).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_rows_are_refused_naming_the_row_and_the_feature() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), &[]);
    let c = http();
    serving(&c, &p).await;
    let names = model::features::FEATURE_NAMES;
    let good = |day: u32| archive_row(day).to_string();
    let record_twice = format!(
        r#"{{"{}": 1, "{}": 2, "{}": 3, "{}": 0, "{}": 0, "{}": 900, "{}": 880, "{}": 870, "{}": 5}}"#,
        names[0], names[1], names[2], names[3], names[4], names[5], names[6], names[7], names[0]
    );
    let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    let long_number = "9".repeat(1_000_000);
    let cases: Vec<(&str, String, String)> = vec![
        (
            "a key twice in a record",
            format!(r#"{{"instances": [{}, {record_twice}]}}"#, good(1)),
            format!(r#"instance 1, feature "{}""#, names[0]),
        ),
        (
            "nesting deeper than JSON readers go",
            format!(
                r#"{{"instances": [{}, [1, 2, {deep}, 0, 0, 900, 880, 870]]}}"#,
                good(1)
            ),
            format!(r#"instance 1, feature "{}""#, names[2]),
        ),
        (
            "a number of a million digits",
            format!(r#"{{"instances": [[1, 2, 3, 0, 0, {long_number}, 880, 870]]}}"#),
            format!(r#"instance 0, feature "{}""#, names[5]),
        ),
        (
            "a string where a number belongs",
            r#"{"instances": [[1, 2, 3, 0, 0, "900", 880, 870]]}"#.to_string(),
            format!(r#"instance 0, feature "{}": expected a number"#, names[5]),
        ),
        (
            "a row of the wrong length",
            format!(r#"{{"instances": [{}, {}, [1, 2, 3]]}}"#, good(1), good(2)),
            "instance 2 has 3 values".to_string(),
        ),
    ];
    for (what, body, says) in cases {
        for route in ["predict", "invocations"] {
            let url = format!("{}/{route}", p.url);
            let (status, answer) = post(
                &c,
                &url,
                "application/json",
                None,
                body.clone().into_bytes(),
            )
            .await;
            assert_eq!(status, 400, "{what} on /{route}: {answer}");
            assert_eq!(answer["error"], "invalid_input", "{what}: {answer}");
            let message = answer["message"].as_str().unwrap_or_default();
            assert!(message.contains(&says), "{what} on /{route}: {message}");
        }
    }
    // Nothing of it stuck: the next body scores.
    let body = json!({ "instances": [archive_row(1)] })
        .to_string()
        .into_bytes();
    let (status, answer) = post(
        &c,
        &format!("{}/predict", p.url),
        "application/json",
        None,
        body,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}
