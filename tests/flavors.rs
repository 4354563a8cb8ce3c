//! Serving the models teams already have: scikit-learn (skops, cloudpickle, pickle,
//! joblib), XGBoost (ubj, json) and LightGBM (text, skops), each logged by MLflow's own
//! `log_model` into the real MLflow server, served by a real predictor process, and
//! compared with the library's own predictions; hostile and broken versions refused while
//! the served model keeps serving; MLflow's scoring client and the old service's clients
//! unchanged.

use std::path::PathBuf;
use std::sync::OnceLock;

use forecast_e2e::*;
use serde_json::{Value, json};

const TOKEN: &str = "flavors-admin-token";

/// What `tests/python/log_flavors.py` logged (once per test binary).
struct Logged {
    name: String,
    report_path: PathBuf,
    report: Value,
    _work: tempfile::TempDir,
}

fn logged() -> &'static Logged {
    static LOGGED: OnceLock<Logged> = OnceLock::new();
    LOGGED.get_or_init(|| {
        let name = unique_name("flavors");
        let (work, report) = python_report("log_flavors.py", &name, &["--work", "{dir}/models"]);
        let report_path = work.path().join("report.json");
        Logged {
            name,
            report_path,
            report,
            _work: work,
        }
    })
}

fn case(label_prefix: &str) -> &'static Value {
    logged().report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"].as_str().unwrap().starts_with(label_prefix))
        .unwrap_or_else(|| panic!("no logged case {label_prefix:?}"))
}

fn start_on(version: &str) -> Predictor {
    Predictor::start(&[
        ("MLFLOW_TRACKING_URI", tracking_uri()),
        ("MODEL_NAME", logged().name.clone()),
        ("MODEL_VERSION", version.to_owned()),
        ("PREDICTOR_ADMIN_TOKEN", TOKEN.into()),
        ("PREDICTOR_MAX_BODY_BYTES", (4 * 1024 * 1024).to_string()),
    ])
    .unwrap()
}

async fn reload(c: &reqwest::Client, p: &Predictor, version: &str) -> (u16, Value) {
    post_json(
        c,
        &format!("{}/reload-model", p.url),
        &json!({"version": version, "allow_schema_change": true}),
        Some(TOKEN),
    )
    .await
    .unwrap()
}

async fn model_info(c: &reqwest::Client, p: &Predictor) -> Value {
    let (status, info) = get_json(c, &format!("{}/model/info", p.url)).await.unwrap();
    assert_eq!(status, 200, "{info}");
    info
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, found {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Largest relative difference (relative to the library's value).
fn worst_relative(got: &[f64], expected: &[f64]) -> f64 {
    assert_eq!(got.len(), expected.len());
    got.iter()
        .zip(expected)
        .map(|(g, e)| (g - e).abs() / e.abs().max(1e-12))
        .fold(0.0, f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_logged_flavor_is_served_natively_and_matches_its_library() {
    let report = &logged().report;
    let cases = report["cases"].as_array().unwrap();
    let predictor = start_on(cases[0]["version"].as_str().unwrap());
    let c = http();
    for case in cases {
        let label = case["label"].as_str().unwrap();
        let version = case["version"].as_str().unwrap();
        let (status, body) = reload(&c, &predictor, version).await;
        assert_eq!(status, 200, "{label}: {body}");
        assert_eq!(body["status"], "success", "{label}: {body}");

        let info = model_info(&c, &predictor).await;
        assert_eq!(info["model_version"], version, "{label}");
        assert_eq!(info["flavor"], case["flavor"], "{label}");
        assert_eq!(info["estimator"], case["estimator"], "{label}");
        assert_eq!(info["n_trees"], case["n_trees"], "{label}");
        assert_eq!(info["feature_names"], case["feature_names"], "{label}");
        let with_missing = case["rows"] == "missing";
        assert_eq!(info["accepts_missing"], with_missing, "{label}");

        let rows = &report["rows"][case["rows"].as_str().unwrap()];
        let (status, body) = post_json(
            &c,
            &format!("{}/predict", predictor.url),
            &json!({ "instances": rows }),
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{label}: {body}");
        let expected = numbers(&case["expected"]);
        let worst = worst_relative(&numbers(&body["predictions"]), &expected);
        let tolerance = case["tolerance"].as_f64().unwrap();
        assert!(
            worst <= tolerance,
            "{label}: largest relative difference from the library is {worst} (allowed {tolerance})"
        );

        // The same rows as MLflow's `dataframe_split`, columns by name.
        let (status, body) = post_json(
            &c,
            &format!("{}/invocations", predictor.url),
            &json!({"dataframe_split": {"columns": case["feature_names"], "data": rows}}),
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{label}: {body}");
        let worst = worst_relative(&numbers(&body["predictions"]), &expected);
        assert!(worst <= tolerance, "{label} via /invocations: {worst}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_without_missing_value_support_refuses_nan_by_name() {
    let gbr = case("sklearn cloudpickle GradientBoostingRegressor");
    let predictor = start_on(gbr["version"].as_str().unwrap());
    let c = http();
    let mut row = logged().report["rows"]["finite"][0].clone();
    row[2] = Value::Null;
    let (status, body) = post_json(
        &c,
        &format!("{}/predict", predictor.url),
        &json!({ "instances": [row] }),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("month") && message.contains("does not accept missing values"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_broken_versions_are_refused_and_the_served_model_keeps_serving() {
    let report = &logged().report;
    let good = case("sklearn skops HistGradientBoostingRegressor");
    let good_version = good["version"].as_str().unwrap();
    let mut predictor = start_on(good_version);
    let c = http();
    let rows = &report["rows"]["missing"];
    let expected = numbers(&good["expected"]);
    for refused in report["refused"].as_array().unwrap() {
        let label = refused["label"].as_str().unwrap();
        let (status, body) = reload(&c, &predictor, refused["version"].as_str().unwrap()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (422, Some("invalid_model")),
            "{label}: {body}"
        );
        let message = body["message"].as_str().unwrap();
        let wanted = refused["contains"].as_str().unwrap();
        assert!(
            message.contains(wanted),
            "{label}: {message:?} should name {wanted:?}"
        );

        assert!(predictor.is_running(), "{label}: the predictor died");
        assert_eq!(
            model_info(&c, &predictor).await["model_version"],
            good_version,
            "{label}"
        );
        let (status, body) = post_json(
            &c,
            &format!("{}/predict", predictor.url),
            &json!({ "instances": rows }),
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{label}: {body}");
        assert!(worst_relative(&numbers(&body["predictions"]), &expected) <= 1e-6);
    }
    let marker = report["hostile_marker"].as_str().unwrap();
    assert!(
        !std::path::Path::new(marker).exists(),
        "the hostile pickle's payload ran: {marker} exists"
    );
    let (status, metrics) = (
        200,
        get_text(&format!("{}/metrics", predictor.url))
            .await
            .unwrap(),
    );
    assert_eq!(status, 200);
    let failed = report["refused"].as_array().unwrap().len();
    assert!(
        metrics.contains(&format!(
            "predictor_reloads_total{{result=\"failure\"}} {failed}"
        )),
        "every refused reload is counted:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_scoring_client_works_against_the_predictor_unchanged() {
    let hgb = case("sklearn skops HistGradientBoostingRegressor");
    let predictor = start_on(hgb["version"].as_str().unwrap());
    let port = predictor.url.rsplit(':').next().unwrap().to_owned();
    let out = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/python/scoring_client.py"
        ))
        .args(["--port", &port, "--report"])
        .arg(&logged().report_path)
        .args(["--case", hgb["label"].as_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "MLflow's ScoringServerClient failed against the predictor:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results["version"], env!("CARGO_PKG_VERSION"));
    for call in ["dataframe", "dataframe with params", "numpy array"] {
        assert!(results[call].as_f64().unwrap() <= 1e-6, "{call}: {results}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_services_four_calls_pass_as_its_clients_make_them() {
    let report = &logged().report;
    let legacy = case("sklearn pickle RandomForestRegressor (Production");
    let production = report["production_version"].as_str().unwrap();
    assert_eq!(legacy["version"], production);
    // The old service's configuration: a model name and a stage.
    let predictor = Predictor::start(&[
        ("MLFLOW_TRACKING_URI", tracking_uri()),
        ("MODEL_NAME", logged().name.clone()),
        ("MODEL_STAGE", "Production".into()),
    ])
    .unwrap();
    let c = http();

    let (status, health) = get_json(&c, &format!("{}/health", predictor.url))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["model_loaded"], true);

    let info = model_info(&c, &predictor).await;
    assert_eq!(info["model_name"], logged().name.as_str());
    assert_eq!(info["model_version"], production);
    assert_eq!(info["flavor"], "sklearn");

    let rows = &report["rows"]["missing"];
    let (status, body) = post_json(
        &c,
        &format!("{}/predict", predictor.url),
        &json!({ "instances": rows }),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        worst_relative(
            &numbers(&body["predictions"]),
            &numbers(&legacy["expected"])
        ) <= 1e-6
    );
    assert_eq!(body["model_version"], production);

    let (status, body) = post_raw(&c, &format!("{}/reload-model", predictor.url), "", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success");
    assert!(
        body["message"].as_str().unwrap().contains(production),
        "{body}"
    );

    // MODEL_STAGE holding only digits selects that version, as the old service did.
    let hgb = case("sklearn skops HistGradientBoostingRegressor");
    let by_number = Predictor::start(&[
        ("MLFLOW_TRACKING_URI", tracking_uri()),
        ("MODEL_NAME", logged().name.clone()),
        ("MODEL_STAGE", hgb["version"].as_str().unwrap().to_owned()),
    ])
    .unwrap();
    let info = model_info(&c, &by_number).await;
    assert_eq!(info["model_version"], hgb["version"]);
    assert_eq!(
        info["selector"],
        format!("version:{}", hgb["version"].as_str().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_services_joblib_disk_model_serves_as_the_fallback() {
    let report = &logged().report;
    let legacy = case("sklearn pickle RandomForestRegressor (Production");
    let predictor = Predictor::start(&[
        (
            "MODEL_FALLBACK_DIR",
            report["fallback_dir"].as_str().unwrap().to_owned(),
        ),
        ("MODEL_NAME", "archive-forecast-rf".into()),
    ])
    .unwrap();
    let c = http();
    let info = model_info(&c, &predictor).await;
    assert_eq!(info["origin"], "fallback");
    assert_eq!(info["flavor"], "sklearn");
    assert_eq!(info["estimator"], "RandomForestRegressor");
    assert_eq!(info["feature_names"], legacy["feature_names"]);
    assert!(
        info["source"].as_str().unwrap().ends_with("model.joblib"),
        "{info}"
    );
    let (status, body) = post_json(
        &c,
        &format!("{}/predict", predictor.url),
        &json!({ "instances": report["rows"]["missing"] }),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        worst_relative(
            &numbers(&body["predictions"]),
            &numbers(&legacy["expected"])
        ) <= 1e-6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecastctl_inspect_shows_a_version_as_the_predictor_would_serve_it() {
    let lgbm = case("lightgbm skops LGBMRegressor");
    let version = lgbm["version"].as_str().unwrap();
    let row = "1.5,-2,,1,0.25,3";
    let out = forecastctl(&[
        "inspect",
        "--name",
        &logged().name,
        "--version",
        version,
        "--row",
        row,
        "--output",
        "json",
    ])
    .unwrap();
    let inspected: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspected["flavor"], "lightgbm");
    assert_eq!(inspected["estimator"], lgbm["estimator"]);
    assert_eq!(inspected["n_trees"], lgbm["n_trees"]);
    assert_eq!(inspected["feature_names"], lgbm["feature_names"]);

    // The predictor serving that version predicts the same for the same row.
    let predictor = start_on(version);
    let c = http();
    let (status, body) = post_json(
        &c,
        &format!("{}/predict", predictor.url),
        &json!({ "instances": [[1.5, -2, null, 1, 0.25, 3]] }),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["predictions"][0], inspected["prediction"]);

    // A refused version fails with the reason, before any alias moves.
    let hostile = &logged().report["refused"][0];
    let out = forecastctl_output(&[
        "inspect",
        "--name",
        &logged().name,
        "--version",
        hostile["version"].as_str().unwrap(),
    ])
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("posix.system"), "{stderr}");
}

/// Runs `cmd` to its end; its exit code, its stderr, and the peak resident memory of that
/// one process (KiB), from `wait4`'s rusage (which reaps it, so std's `wait` is not used).
#[allow(clippy::zombie_processes)]
fn run_measuring_peak_rss(cmd: &mut std::process::Command) -> (i32, String, u64) {
    use std::io::Read;
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, whose pid std gave us and has not reaped.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    (
        code,
        reader.join().unwrap_or_default(),
        usage.ru_maxrss as u64,
    )
}

/// An MLflow model directory whose one flavor file is `bytes`.
fn hostile_model_dir(flavor: &str, bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mlmodel = match flavor {
        "onnx" => "flavors:\n  onnx:\n    data: model.onnx\n",
        "skops" => {
            "flavors:\n  sklearn:\n    pickled_model: model.skops\n    serialization_format: skops\n    sklearn_version: 1.5.0\n"
        }
        "xgboost" => {
            "flavors:\n  xgboost:\n    data: model.ubj\n    model_format: ubj\n    xgb_version: 2.1.0\n    model_class: xgboost.sklearn.XGBRegressor\n"
        }
        _ => {
            "flavors:\n  sklearn:\n    pickled_model: model.pkl\n    serialization_format: pickle\n    sklearn_version: 1.5.0\n"
        }
    };
    std::fs::write(dir.path().join("MLmodel"), mlmodel).expect("MLmodel");
    let file = match flavor {
        "onnx" => "model.onnx",
        "skops" => "model.skops",
        "xgboost" => "model.ubj",
        _ => "model.pkl",
    };
    std::fs::write(dir.path().join(file), bytes).expect("model file");
    dir
}

/// The most a refusal of these files may cost, documented in the README: 64 MiB peak
/// resident memory for the whole `forecastctl inspect` process.
const REFUSAL_PEAK_RSS_KIB: u64 = 64 * 1024;

#[test]
fn model_files_that_inflate_are_refused_within_a_bound_on_memory() {
    // 64 KiB of sibling UBJSON containers of zero-size elements, each claiming the rest of
    // the file: several GB decoded before the element budget (OOM in a 256Mi pod).
    // The document is an object, as an XGBoost model is: {"a": [ [$Z#L n, ... ]}.
    let siblings = 64 * 1024 / 13;
    let mut ubj = b"{i\x01a[".to_vec();
    let len = ubj.len() + siblings * 13 + 2;
    for _ in 0..siblings {
        let remaining = len - (ubj.len() + 13);
        ubj.extend_from_slice(b"[$Z#L");
        ubj.extend_from_slice(&(remaining as i64).to_be_bytes());
    }
    ubj.extend_from_slice(b"]}");
    // 4 MB of pickle opcodes "push None, pop": two bytes per arena object.
    let mut pickle = vec![0x80, 2];
    pickle.extend(b"N0".repeat(2_000_000));
    pickle.extend(b"N.");
    // 4 MB of empty ONNX nodes (graph field 1, length 0): ~150 bytes decoded per two.
    let nodes = b"\x0a\x00".repeat(2_000_000);
    let mut onnx = vec![0x3a];
    let mut len = nodes.len();
    while len >= 0x80 {
        onnx.push((len as u8) | 0x80);
        len >>= 7;
    }
    onnx.push(len as u8);
    onnx.extend_from_slice(&nodes);
    // A skops zip whose schema.json inflates to 64 MiB of zeros (64 KiB on disk), refused at
    // a MODEL_MAX_BYTES of 8 MiB while it inflates (it was read to a fixed 512 MiB).
    let skops = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.skops");
        let script = "import sys, zipfile\n\
            with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n\
            \x20   z.writestr('schema.json', b'0' * (64 << 20))\n";
        let out = std::process::Command::new(python())
            .args(["-c", script])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(&path).unwrap()
    };
    for (flavor, bytes, says) in [
        ("skops", skops, "model size limit"),
        ("xgboost", ubj, "more values than the file's"),
        ("sklearn", pickle, "more than its size allows"),
        ("onnx", onnx, "refused before decoding"),
    ] {
        let dir = hostile_model_dir(flavor, &bytes);
        let (code, stderr, peak_kib) = run_measuring_peak_rss(
            std::process::Command::new(bin("forecastctl"))
                .args(["inspect", "--model-dir"])
                .arg(dir.path())
                .env("MODEL_MAX_BYTES", (8 << 20).to_string()),
        );
        assert!(
            peak_kib < REFUSAL_PEAK_RSS_KIB,
            "{flavor}: refusing a {} byte file peaked at {peak_kib} KiB",
            bytes.len()
        );
        assert_eq!(code, 1, "{flavor}: {stderr}");
        assert!(stderr.contains(says), "{flavor}: {stderr}");
        eprintln!(
            "{flavor}: {} byte file refused at a peak of {peak_kib} KiB",
            bytes.len()
        );
    }
}
