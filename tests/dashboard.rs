//! `forecastctl dashboard` in a real headless Chromium, against the cluster the tests run
//! on (the real control plane under `cargo xtask test`, kube-sim otherwise), with the
//! operator rolling real predictor pods: the fleet page lists the ForecastModel, the model
//! page shows its pods, conditions, traffic and events, and when a data scientist moves the
//! alias the open page follows the rollout by itself (no reload) to the new version and
//! draws it on the timeline. With credentials that may not use the pod proxy, the page says
//! so and shows the rest.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use forecast_e2e::browser::Browser;
use forecast_e2e::cluster::{
    TestCluster, kubectl_as, predict_through_service, service_account_kubeconfig, wait_until,
};
use forecast_e2e::fleet::{Setup, Traffic, daily_serving_v1, move_champion, ready_on};
use forecast_e2e::*;
use serde_json::json;

/// A running `forecastctl dashboard`; killed on drop.
struct Dashboard {
    child: Child,
    url: String,
}

impl Dashboard {
    async fn start(kubeconfig: &std::path::Path, namespace: &str) -> Self {
        let port = free_port();
        let child = Command::new(bin("forecastctl"))
            .args(["dashboard", "--namespace", namespace, "--port"])
            .arg(port.to_string())
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("forecastctl dashboard");
        let url = format!("http://127.0.0.1:{port}");
        wait_until("the dashboard answers", Duration::from_secs(60), || async {
            http()
                .get(format!("{url}/"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        Dashboard { child, url }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the text of `css` satisfies `ok` (the page updates itself).
async fn wait_for_text(browser: &Browser, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let ok = &ok;
    wait_until(css, Duration::from_secs(120), || async move {
        browser.texts(css).await.iter().any(|t| ok(t))
    })
    .await;
    browser
        .texts(css)
        .await
        .into_iter()
        .find(|t| ok(t))
        .unwrap_or_default()
}

#[tokio::test]
async fn the_dashboard_follows_a_rollout_live_and_shows_pods_traffic_and_events() {
    let setup = daily_serving_v1("dash", 61, 2, json!({}), &[]).await;
    let cluster = &setup.cluster;
    let ns = &cluster.namespace;
    // Some traffic for the per-version figures.
    for day in 0..5 {
        predict_through_service(&cluster.client, ns, "daily", &json!([archive_row(day)]))
            .await
            .expect("a prediction through the Service");
    }
    let dashboard = Dashboard::start(&cluster.kubeconfig, ns).await;
    let browser = Browser::start(1280, 900).await;

    // The fleet page: the model, its versions, its pods per version.
    browser.open(&format!("{}/", dashboard.url)).await;
    let row = format!("tr[data-model=\"{ns}/daily\"]");
    assert_eq!(browser.text(&format!("{row} td.served")).await, setup.v1);
    assert_eq!(
        browser
            .text(&format!("{row} td:nth-child(2)"))
            .await
            .split_whitespace()
            .next(),
        Some("True"),
        "Ready"
    );
    browser
        .click_then(&format!("{row} a"), "#served-version")
        .await;

    // The model page.
    assert_eq!(browser.text("#served-version").await, setup.v1);
    assert_eq!(
        browser.texts("#pods td.version").await,
        vec![setup.v1.clone(); 2],
        "what each pod itself serves"
    );
    let requests = browser
        .text(&format!(
            "#traffic tr[data-version=\"{}\"] td.requests",
            setup.v1
        ))
        .await;
    assert!(
        requests.parse::<u64>().unwrap() >= 5,
        "the pods' own counters, through the pod proxy: {requests}"
    );
    assert!(
        browser
            .text("#conditions tr[data-type=\"Ready\"] td.status")
            .await
            == "True"
    );
    assert_eq!(browser.text("#phase").await, "Idle");

    // A data scientist moves the alias; the open page follows without a reload.
    browser
        .eval("document.documentElement.dataset.opened = 'yes'; return true;")
        .await;
    let v2 = train_and_register(&setup.model, 62, &[]).unwrap();
    move_champion(&setup.model, &v2);
    ready_on(cluster, "daily", &v2, 2).await;
    wait_for_text(&browser, "#served-version", |t| t == v2).await;
    wait_for_text(&browser, "#history tbody tr", |t| {
        t.contains(&format!("{} → {v2} Succeeded", setup.v1))
    })
    .await;
    assert_eq!(
        browser
            .eval("return document.documentElement.dataset.opened || null;")
            .await,
        json!("yes"),
        "the page was updated in place, not reloaded"
    );
    wait_for_text(&browser, "#timeline", |t| {
        t.contains(&format!("→ {v2} Succeeded"))
    })
    .await;
    wait_for_text(&browser, "#events", |t| t.contains("RolloutSucceeded")).await;
    wait_for_text(&browser, "#pods", |t| t.matches(&v2).count() >= 2).await;
    // The README's picture (docs/dashboard.png) is a copy of this one.
    browser
        .eval("document.querySelector('#rollout').scrollIntoView(); return true;")
        .await;
    browser.screenshot("dashboard-model").await;

    // The fleet page says the same.
    browser.open(&format!("{}/", dashboard.url)).await;
    assert_eq!(browser.text(&format!("{row} td.served")).await, v2);
    assert!(
        browser
            .text(&format!("{row} td.last"))
            .await
            .contains("Succeeded")
    );
    browser.screenshot("dashboard-fleet").await;
    // The page is the caller's: bound to loopback, strict policy.
    let answer = http()
        .get(format!("{}/", dashboard.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.headers()["content-security-policy"],
        "default-src 'self'"
    );
    let missing = http()
        .get(format!("{}/models/{ns}/nope", dashboard.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    drop(browser);
    drop(dashboard);
    setup.cluster.stop().await;
}

#[tokio::test]
async fn without_the_pod_proxy_the_page_says_so_and_shows_the_rest() {
    if !cluster::real_cluster() {
        eprintln!("kube-sim does not enforce RBAC: this runs on the real control plane");
        return;
    }
    let setup = daily_serving_v1("dash-rbac", 63, 1, json!({}), &[]).await;
    let cluster: &TestCluster = &setup.cluster;
    let ns = &cluster.namespace;
    // A viewer: ForecastModels, pods and events, read-only; no pods/proxy.
    let rbac = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: viewer, namespace: {ns}}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: viewer, namespace: {ns}}}\n\
         rules:\n- apiGroups: [forecast.dev]\n  resources: [forecastmodels]\n  verbs: [get, list, watch]\n\
         - apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [get, list, watch]\n\
         - apiGroups: [events.k8s.io]\n  resources: [events]\n  verbs: [get, list, watch]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: viewer, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: viewer}}\n\
         subjects:\n- {{kind: ServiceAccount, name: viewer, namespace: {ns}}}\n"
    );
    kubectl_as(
        &cluster.kubeconfig,
        &["apply", "--server-side", "--field-manager=e2e", "-f", "-"],
        Some(&rbac),
    );
    let dir = tempfile::tempdir().unwrap();
    let viewer = service_account_kubeconfig(&cluster.kubeconfig, ns, "viewer", dir.path());
    let dashboard = Dashboard::start(&viewer, ns).await;
    let browser = Browser::start(390, 844).await;
    browser
        .open(&format!("{}/models/{ns}/daily", dashboard.url))
        .await;
    let note = browser.text("#traffic-note").await;
    assert!(
        note.contains("pod proxy") && note.contains("forbidden"),
        "{note}"
    );
    assert_eq!(browser.text("#served-version").await, setup.v1);
    assert_eq!(browser.texts("#pods tbody tr").await.len(), 1);
    let overflow = browser
        .eval("return document.documentElement.scrollWidth - window.innerWidth;")
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "phone width: {overflow} px too wide"
    );
    drop(browser);
    drop(dashboard);
    setup.cluster.stop().await;
}

/// `daily` (2 pods) with this canary, traffic through its Service, and its model page open.
async fn canary_page(
    prefix: &str,
    seed: u64,
    canary: serde_json::Value,
) -> (Setup, Traffic, Dashboard, Browser) {
    let setup =
        daily_serving_v1(prefix, seed, 2, json!({"rollout": {"canary": canary}}), &[]).await;
    let ns = setup.cluster.namespace.clone();
    let traffic = Traffic::start(&setup.cluster, "daily");
    let dashboard = Dashboard::start(&setup.cluster.kubeconfig, &ns).await;
    let browser = Browser::start(1280, 900).await;
    browser
        .open(&format!("{}/models/{ns}/daily", dashboard.url))
        .await;
    (setup, traffic, dashboard, browser)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_shows_its_bake_and_each_figure_beside_its_limit() {
    // Latency is judged in the analysis unit tests; a debug build's p99 on a shared machine
    // is one slow request, so its limit is wide here.
    let canary = json!({"pods": 1, "bake": "15s", "minRequests": 10, "maxBake": "120s",
                        "analysis": {"maxLatencyRatio": 100.0}});
    let (setup, traffic, dashboard, browser) = canary_page("dash-canary", 65, canary).await;
    // The same training, so the canary's predictions match the baseline's.
    let v2 = train_and_register(&setup.model, 65, &[]).unwrap();
    move_champion(&setup.model, &v2);
    wait_for_text(&browser, "#phase", |t| t == "Baking").await;
    let bake = wait_for_text(&browser, "#bake label", |t| t.contains("s left")).await;
    assert!(bake.contains("of 15 s"), "{bake}");
    assert_eq!(
        browser
            .eval("return document.querySelector('#bake-progress').max;")
            .await,
        json!(15)
    );
    // Each figure beside its limit, with its verdict in words.
    let requests = wait_for_text(&browser, "#analysis tbody tr", |t| {
        t.starts_with("canary requests") && t.contains("passes")
    })
    .await;
    assert!(requests.contains("at least 10"), "{requests}");
    browser
        .eval("document.querySelector('#rollout').scrollIntoView(); return true;")
        .await;
    browser.screenshot("dashboard-canary-baking").await;
    let rows = browser.texts("#analysis tbody tr").await;
    assert!(
        rows.iter()
            .any(|r| r.starts_with("error rate") && r.contains("at most")),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|r| r.starts_with("prediction shift")),
        "{rows:?}"
    );
    assert!(
        browser
            .texts("#rollout")
            .await
            .concat()
            .contains(&format!("{} → {v2}", setup.v1))
    );
    // Promoted: every pod follows, the page with it.
    wait_for_text(&browser, "#served-version", |t| t == v2).await;
    wait_for_text(&browser, "#phase", |t| t == "Idle").await;
    wait_for_text(&browser, "#history tbody tr", |t| t.contains("Succeeded")).await;
    let answered = traffic.stop().await;
    assert!(answered.ok > 0, "the traffic was answered");
    drop(browser);
    drop(dashboard);
    setup.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_canary_is_in_the_history_with_its_reason() {
    // Any change of the mean prediction fails this canary.
    let canary = json!({"pods": 1, "bake": "5s", "minRequests": 10, "maxBake": "120s",
                        "analysis": {"maxLatencyRatio": 100.0, "maxPredictionShift": 0.000001}});
    let (setup, traffic, dashboard, browser) = canary_page("dash-failed", 66, canary).await;
    // Other training data: other predictions.
    let v2 = train_and_register(&setup.model, 67, &[]).unwrap();
    move_champion(&setup.model, &v2);
    let failed = wait_for_text(&browser, "#history tbody tr", |t| {
        t.contains(&format!("{} → {v2} Failed", setup.v1))
    })
    .await;
    assert!(failed.contains("AnalysisFailed"), "{failed}");
    assert!(
        failed.contains("prediction shift"),
        "the reason names the figure: {failed}"
    );
    assert_eq!(browser.text("#served-version").await, setup.v1);
    wait_for_text(&browser, "#timeline", |t| {
        t.contains(&format!("→ {v2} Failed"))
    })
    .await;
    wait_for_text(&browser, "#events", |t| t.contains("AnalysisFailed")).await;
    browser.screenshot("dashboard-canary-failed").await;
    traffic.stop().await;
    drop(browser);
    drop(dashboard);
    setup.cluster.stop().await;
}
