//! The predictor's `/ui` page in a real headless Chromium (WebDriver): what a person sees
//! and does — the served model's and the shadow's cards, one row predicted from a form
//! prefilled with the model's input example, a batch pasted or uploaded and plotted, a
//! forecast drawn with its band — checked against what the API answers for the same input,
//! errors shown as the API gives them, on a phone-width screen and at 1280 px.

use forecast_e2e::browser::Browser;
use forecast_e2e::forecasters::forecasters;
use forecast_e2e::*;
use serde_json::{Value, json};

const TOKEN: &str = "ui-admin-token";

fn features() -> Vec<String> {
    forecasters().report["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect()
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(ours: f64, theirs: f64) -> bool {
    (ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0)
}

/// The forest, with the boosted model loaded as its shadow.
async fn forest_with_shadow() -> Predictor {
    let logged = forecasters();
    let p = logged.serve("forest", &[("PREDICTOR_ADMIN_TOKEN", TOKEN.into())]);
    let answer = http()
        .post(format!("{}/shadow-model", p.url))
        .bearer_auth(TOKEN)
        .json(&json!({"version": logged.version("boosting")}))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
    p
}

fn csv_of(rows: &[Vec<f64>]) -> String {
    let mut csv = features().join(",");
    for row in rows {
        csv.push('\n');
        let cells: Vec<String> = row.iter().map(f64::to_string).collect();
        csv.push_str(&cells.join(","));
    }
    csv.push('\n');
    csv
}

fn batch_rows() -> Vec<Vec<f64>> {
    forecasters().report["batch_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(numbers)
        .collect()
}

async fn data_value(element: &fantoccini::elements::Element) -> f64 {
    let text = element
        .attr("data-value")
        .await
        .unwrap()
        .expect("a data-value");
    text.parse()
        .unwrap_or_else(|_| panic!("data-value {text:?}"))
}

async fn column(browser: &Browser, css: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for cell in browser.all(css).await {
        out.push(data_value(&cell).await);
    }
    out
}

/// What `/predict` answers for one record.
async fn predict_answer(p: &Predictor, record: &Value) -> (u16, Value) {
    post_json(
        &http(),
        &format!("{}/predict", p.url),
        &json!({"instances": [record]}),
        None,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn the_page_shows_the_model_and_its_shadow_and_predicts_a_row_as_predict_does() {
    let logged = forecasters();
    let p = forest_with_shadow().await;
    let browser = Browser::start(1280, 900).await;
    browser.open(&format!("{}/ui", p.url)).await;
    assert_eq!(
        browser.text("#model-version").await,
        logged.version("forest")
    );
    assert_eq!(
        browser.text("#shadow-version").await,
        logged.version("boosting")
    );
    assert!(
        browser
            .text("#model-card")
            .await
            .contains("RandomForestRegressor")
    );
    // The stylesheet loaded under the page's policy.
    assert_eq!(
        browser
            .eval("return getComputedStyle(document.querySelector('main')).maxWidth;")
            .await,
        "1200px"
    );

    // The form starts from the model's input example.
    let example = numbers(&logged.report["example_row"]);
    let mut record = serde_json::Map::new();
    for (i, (name, x)) in features().iter().zip(&example).enumerate() {
        let shown = browser
            .find(&format!("#x{i}"))
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default();
        assert_eq!(shown.parse::<f64>().ok(), Some(*x), "{name}: {shown:?}");
        record.insert(name.clone(), json!(x));
    }
    let record = Value::Object(record);
    let strong = browser
        .click_then("#predict button[type=submit]", "#prediction strong")
        .await;
    let (status, answer) = predict_answer(&p, &record).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        data_value(&strong).await,
        answer["predictions"][0].as_f64().unwrap()
    );
    assert!(close(
        data_value(&strong).await,
        logged.report["example_predictions"]["forest"]
            .as_f64()
            .unwrap()
    ));
    let shadow = browser.find("#shadow-prediction strong").await;
    assert!(close(
        data_value(&shadow).await,
        logged.report["example_predictions"]["boosting"]
            .as_f64()
            .unwrap()
    ));

    // A value that is not a number: the page shows /predict's own error, and still the form.
    browser.fill("#x5", "abc").await;
    browser
        .click_then("#predict button[type=submit]", "#predict .error")
        .await;
    let mut bad = record.clone();
    bad["lag_1"] = json!("abc");
    let (status, answer) = predict_answer(&p, &bad).await;
    assert_eq!(status, 400);
    assert_eq!(
        browser.text("#predict .error .message").await,
        answer["message"].as_str().unwrap()
    );
    assert_eq!(browser.text("#predict .error code").await, "invalid_input");
    assert_eq!(
        browser
            .find("#x5")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("abc"),
        "what was typed is kept"
    );
    // A feature left empty is a missing feature, as /predict says.
    browser.fill("#x5", &example[5].to_string()).await;
    browser.fill("#x6", "").await;
    browser
        .click_then("#predict button[type=submit]", "#predict .error")
        .await;
    let mut missing = record.clone();
    missing.as_object_mut().unwrap().remove("lag_7");
    let (_, answer) = predict_answer(&p, &missing).await;
    assert_eq!(
        browser.text("#predict .error .message").await,
        answer["message"].as_str().unwrap()
    );
}

#[tokio::test]
async fn a_batch_pasted_or_uploaded_is_predicted_plotted_and_downloadable() {
    let logged = forecasters();
    let p = forest_with_shadow().await;
    let browser = Browser::start(1280, 900).await;
    browser.open(&format!("{}/ui", p.url)).await;
    let rows = batch_rows();
    let csv = csv_of(&rows);
    browser.fill("#csv", &csv).await;
    browser
        .click_then(
            "#batch button[type=submit]:not([formaction])",
            "#batch-table",
        )
        .await;
    let served = column(&browser, "#batch-table tbody tr td:nth-child(2)").await;
    let shadow = column(&browser, "#batch-table tbody tr td:nth-child(3)").await;
    let answer = http()
        .post(format!("{}/invocations", p.url))
        .header("Content-Type", "text/csv")
        .body(csv.clone())
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(served, numbers(&answer["predictions"]));
    let theirs = numbers(&logged.report["batch_predictions"]["boosting"]);
    assert_eq!(shadow.len(), theirs.len());
    assert!(
        shadow.iter().zip(&theirs).all(|(a, b)| close(*a, *b)),
        "{shadow:?} {theirs:?}"
    );
    // Both series plotted, a marker per row.
    for series in ["polyline.champion", "polyline.shadow"] {
        let points = browser
            .attr(&format!("#batch-result {series}"), "data-points")
            .await;
        assert_eq!(points.as_deref(), Some("5"), "{series}");
    }
    assert_eq!(browser.all("#batch-result svg circle").await.len(), 10);
    browser.screenshot("ui-batch").await;

    // A file uploaded wins over the text box.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("three.csv");
    std::fs::write(&file, csv_of(&rows[..3])).unwrap();
    browser
        .find("#file")
        .await
        .send_keys(&file.to_string_lossy())
        .await
        .unwrap();
    browser
        .click_then(
            "#batch button[type=submit]:not([formaction])",
            "#batch-table",
        )
        .await;
    assert_eq!(browser.all("#batch-table tbody tr").await.len(), 3);
    assert_eq!(
        column(&browser, "#batch-table tbody tr td:nth-child(2)").await,
        served[..3]
    );

    // A header without a feature: the page says what /invocations says.
    let bad = csv.replacen("lag_7", "lag_8", 1);
    browser.open(&format!("{}/ui", p.url)).await;
    browser.fill("#csv", &bad).await;
    browser
        .click_then(
            "#batch button[type=submit]:not([formaction])",
            "#batch .error",
        )
        .await;
    let answer = http()
        .post(format!("{}/invocations", p.url))
        .header("Content-Type", "text/csv")
        .body(bad)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        browser.text("#batch .error .message").await,
        answer["message"].as_str().unwrap()
    );
}

/// A multipart body with the batch form's `csv` field and an empty `file`.
fn batch_form_body(csv: &str) -> (String, Vec<u8>) {
    let boundary = "forecast-ui-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csv\"\r\n\r\n{csv}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n\r\n--{boundary}--\r\n"
    );
    (
        format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    )
}

#[tokio::test]
async fn the_download_is_the_rows_with_their_predictions_and_a_huge_form_is_refused() {
    let logged = forecasters();
    let p = forest_with_shadow().await;
    let rows = batch_rows();
    let (content_type, body) = batch_form_body(&csv_of(&rows));
    let answer = http()
        .post(format!("{}/ui/batch.csv", p.url))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let headers = answer.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let text = answer.text().await.unwrap();
    let mut lines = text.lines();
    let mut header = features();
    header.extend(["prediction".to_owned(), "shadow_prediction".to_owned()]);
    assert_eq!(lines.next(), Some(header.join(",").as_str()));
    let forest = numbers(&logged.report["batch_predictions"]["forest"]);
    let mut n = 0;
    for (line, (row, expected)) in lines.zip(rows.iter().zip(&forest)) {
        let cells: Vec<f64> = line.split(',').map(|c| c.parse().unwrap()).collect();
        assert_eq!(&cells[..8], &row[..], "the row's features");
        assert!(close(cells[8], *expected), "{line}");
        n += 1;
    }
    assert_eq!(n, 5);

    // Past the body limit (1 MiB): the page says so, with the API's status and code.
    let huge = format!("{}{}", csv_of(&rows), "1,".repeat(600_000));
    let (content_type, body) = batch_form_body(&huge);
    let answer = http()
        .post(format!("{}/ui/batch", p.url))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 413);
    let page = answer.text().await.unwrap();
    assert!(
        page.contains("payload_too_large") && page.contains("1048576 bytes"),
        "{page}"
    );
}

#[tokio::test]
async fn a_forecast_is_drawn_with_its_band_and_its_errors_are_the_api_s() {
    let logged = forecasters();
    let p = logged.serve("forest", &[]);
    let browser = Browser::start(1280, 900).await;
    browser.open(&format!("{}/ui", p.url)).await;
    let history = logged.report["history"].as_array().unwrap().clone();
    let csv_history = |days: &[Value]| {
        let mut csv = String::from("date,gigabytes\n");
        for d in days {
            csv.push_str(&format!(
                "{},{}\n",
                d["date"].as_str().unwrap(),
                d["gigabytes"]
            ));
        }
        csv
    };
    browser.fill("#history", &csv_history(&history)).await;
    browser.fill("#horizon", "30").await;
    browser
        .click_then("#forecast button[type=submit]", "#forecast-table")
        .await;
    let (status, answer) = post_json(
        &http(),
        &format!("{}/forecast", p.url),
        &json!({"history": history, "horizon": 30}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    let days = answer["forecasts"].as_array().unwrap();
    for (k, field) in [(2, "forecast"), (3, "p10"), (4, "p90")] {
        let shown = column(
            &browser,
            &format!("#forecast-table tbody tr td:nth-child({k})"),
        )
        .await;
        let api: Vec<f64> = days.iter().map(|d| d[field].as_f64().unwrap()).collect();
        assert_eq!(shown, api, "{field}");
    }
    let dates: Vec<String> = {
        let mut out = Vec::new();
        for cell in browser.all("#forecast-table tbody tr td:first-child").await {
            out.push(cell.text().await.unwrap());
        }
        out
    };
    assert_eq!(dates[0], days[0]["date"].as_str().unwrap());
    assert_eq!(dates.len(), 30);
    // History (60 days), the forecast (30) and its band (30) in one chart.
    let attr = |css: &'static str| browser.attr(css, "data-points");
    assert_eq!(
        attr("#forecast-result polyline.history").await.as_deref(),
        Some("60")
    );
    assert_eq!(
        attr("#forecast-result polyline.forecast").await.as_deref(),
        Some("30")
    );
    assert_eq!(
        attr("#forecast-result polygon.band").await.as_deref(),
        Some("30")
    );
    // The README's picture (docs/ui.png) is a copy of this one.
    browser
        .eval("document.querySelector('#forecast').scrollIntoView(); return true;")
        .await;
    browser.screenshot("ui-forecast").await;

    // A gap in the history: the page shows /forecast's message for it.
    let mut gap = history.clone();
    gap.remove(20);
    browser.fill("#history", &csv_history(&gap)).await;
    browser
        .click_then("#forecast button[type=submit]", "#forecast .error")
        .await;
    let (status, answer) = post_json(
        &http(),
        &format!("{}/forecast", p.url),
        &json!({"history": gap, "horizon": 30}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 400);
    assert_eq!(
        browser.text("#forecast .error .message").await,
        answer["message"].as_str().unwrap()
    );
    // A model with other features says why it cannot forecast, and offers no form.
    let other = logged.serve("other", &[]);
    browser.open(&format!("{}/ui", other.url)).await;
    let why = browser.text("#forecast-unavailable").await;
    assert!(why.contains("lacks day_of_week"), "{why}");
    assert!(browser.all("#history").await.is_empty());
}

#[tokio::test]
async fn the_page_reads_on_a_phone_and_at_1280_px_with_every_field_labelled() {
    let p = forest_with_shadow().await;
    for (width, height) in [(390, 844), (1280, 900)] {
        let browser = Browser::start(width, height).await;
        browser.open(&format!("{}/ui", p.url)).await;
        browser.fill("#csv", &csv_of(&batch_rows())).await;
        browser
            .click_then(
                "#batch button[type=submit]:not([formaction])",
                "#batch-table",
            )
            .await;
        let inner = browser.eval("return window.innerWidth;").await;
        assert!(inner.as_u64().unwrap() <= u64::from(width), "{inner}");
        let overflow = browser
            .eval("return document.documentElement.scrollWidth - window.innerWidth;")
            .await;
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{width} px: the page is {overflow} px wider than the screen"
        );
        let unlabelled = browser
            .eval(
                "return [...document.querySelectorAll('input, textarea')]
                    .filter(e => !document.querySelector(`label[for=\"${e.id}\"]`))
                    .map(e => e.name);",
            )
            .await;
        assert_eq!(unlabelled, json!([]), "{width} px");
        browser.screenshot(&format!("ui-{width}px")).await;
        // Series are named in text, not by colour alone.
        let legend = browser.text("#batch-result .legend").await;
        assert!(
            legend.contains("(served)") && legend.contains("(shadow)"),
            "{legend}"
        );
    }
}

#[tokio::test]
async fn the_page_has_a_strict_policy_loads_nothing_from_elsewhere_and_can_be_turned_off() {
    let logged = forecasters();
    let p = logged.serve("forest", &[]);
    let answer = http().get(format!("{}/ui", p.url)).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-security-policy"],
        "default-src 'self'"
    );
    let page = answer.text().await.unwrap();
    assert!(!page.contains("<script"), "no script");
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "nothing from elsewhere"
    );
    let css = http()
        .get(format!("{}/ui/style.css", p.url))
        .send()
        .await
        .unwrap();
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );

    let off = logged.serve("forest", &[("PREDICTOR_UI", "false".into())]);
    let answer = http().get(format!("{}/ui", off.url)).send().await.unwrap();
    assert_eq!(answer.status(), 404);
    let (status, _) = post_json(
        &http(),
        &format!("{}/predict", off.url),
        &json!({"instances": [logged.report["example_row"]]}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "the API still serves");

    // No model yet: the page says so with the API's code, not a blank.
    let none = Predictor::start(&[
        ("MLFLOW_TRACKING_URI", tracking_uri()),
        ("MODEL_NAME", unique_name("no-such-model")),
    ])
    .unwrap();
    let answer = http().get(format!("{}/ui", none.url)).send().await.unwrap();
    assert_eq!(answer.status(), 503);
    assert!(answer.text().await.unwrap().contains("no_model"));
}
