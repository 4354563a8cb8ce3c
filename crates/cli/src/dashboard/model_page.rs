//! One ForecastModel: its versions and conditions, the rollout in progress (canary pods, the
//! bake's progress, each analysis figure beside its limit), the shadow comparison, a
//! timeline of its rollouts, its pods, per-version traffic and its recent Events.

use api::forecast_model::{ForecastModel, ForecastModelStatus};
use api::rollout::{AnalysisFigures, CanarySpec, RolloutPhase, RolloutProgress};
use kube::ResourceExt;
use maud::{Markup, html};
use pages::layout::facts;
use pages::number;
use pages::timeline::{Span, render as timeline};

use super::snapshot::{Snapshot, Traffic};
use super::traffic::Rates;
use super::words::{condition, history_line, phase, result_class, result_word};

/// Seconds since the Unix epoch of a Kubernetes time.
fn seconds(t: &k8s_openapi::jiff::Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

pub fn render(fm: &ForecastModel, snapshot: &Snapshot, rates: &Rates, now: f64) -> Markup {
    let status = fm.status.clone().unwrap_or_default();
    let ns = fm.namespace().unwrap_or_default();
    let id = format!("{ns}/{}", fm.name_any());
    html! {
        p { a href="/" { "← all ForecastModels" } }
        h1 { (id) }
        (facts([
            ("selector", html! { (status.selector.as_deref().unwrap_or("—")) }),
            ("served version", html! { span #served-version { (status.served_version.as_deref().unwrap_or("—")) } }),
            ("desired version", html! { span #desired-version { (status.desired_version.as_deref().unwrap_or("—")) } }),
            ("previous version", html! { (status.previous_version.as_deref().unwrap_or("—")) }),
            ("pods on the served version", html! { (status.updated_replicas) " of " (status.replicas) }),
            ("failed versions", html! { (if status.failed_versions.is_empty() { "none".to_owned() } else { status.failed_versions.join(", ") }) }),
            ("paused", html! { (if fm.spec.paused { "yes" } else { "no" }) }),
            ("last rollout took", html! { (status.last_rollout_duration.as_deref().unwrap_or("—")) }),
        ]))
        h2 { "Conditions" }
        div.table-wrap { table #conditions {
            thead { tr { th { "type" } th { "status" } th { "reason" } th { "message" } th { "since" } } }
            tbody { @for c in &status.conditions {
                tr data-type=(c.type_) {
                    td { (c.type_) } td.status { (c.status) } td.reason { (c.reason) }
                    td.message { (c.message) } td { (c.last_transition_time.0) }
                }
            } }
        } }
        (rollout_section(fm, &status, now))
        (shadow_section(&status))
        h2 { "Rollouts" }
        (history_section(&status))
        h2 { "Pods" }
        div.table-wrap { table #pods {
            thead { tr { th { "pod" } th { "IP" } th { "ready" } th { "serves" } th { "loaded at" } th { "origin" } } }
            tbody { @for p in &snapshot.pods {
                tr data-pod=(p.name) {
                    td { (p.name) } td { (p.ip.as_deref().unwrap_or("—")) }
                    td { (if p.ready { "yes" } else { "no" }) }
                    td.version { (p.info.as_ref().map(|i| i.model_version.as_str()).unwrap_or("—")) }
                    td { (p.info.as_ref().map(|i| i.loaded_at.as_str()).unwrap_or("—")) }
                    td { (p.info.as_ref().map(|i| format!("{:?}", i.origin).to_lowercase()).unwrap_or_else(|| "—".into())) }
                }
            } }
        } }
        h2 { "Traffic by version" }
        (traffic_section(&id, &snapshot.traffic, rates))
        h2 { "Events" }
        @match &snapshot.events {
            Err(why) => p.note #events-note { (why) },
            Ok(events) => div.table-wrap { table #events {
                thead { tr { th { "time" } th { "type" } th { "reason" } th { "message" } th { "count" } } }
                tbody { @for e in events {
                    tr data-reason=(e.reason) {
                        td { (e.time) }
                        td class=(if e.type_ == "Warning" { "state-bad" } else { "" }) { (e.type_) }
                        td { (e.reason) } td { (e.note) } td { (e.count) }
                    }
                } }
            } },
        }
        @if let Some(drifting) = condition(&status, "Drifting") {
            p.note #drifting { "Drifting: " (drifting.status) " (" (drifting.reason) "): " (drifting.message) }
        }
    }
}

fn rollout_section(fm: &ForecastModel, status: &ForecastModelStatus, now: f64) -> Markup {
    let rollout = status.rollout.clone().unwrap_or_default();
    let canary = fm.spec.rollout.canary.as_ref();
    html! {
        section #rollout {
            h2 { "Rollout: " span #phase { (phase(status)) } }
            @if rollout.phase != RolloutPhase::Idle {
                (facts([
                    ("from → to", html! { (rollout.from.as_deref().unwrap_or("none")) " → " (rollout.version.as_deref().unwrap_or("—")) }),
                    ("started", html! { (rollout.started_at.as_ref().map(|t| t.0.to_string()).unwrap_or_default()) }),
                    ("canary pods", html! { (if rollout.canary_pods.is_empty() { "—".to_owned() } else { rollout.canary_pods.join(", ") }) }),
                ]))
                @if let Some(canary) = canary { (bake(&rollout, canary, now)) }
                @if let (Some(figures), Some(canary)) = (&rollout.analysis, canary) { (analysis(figures, canary)) }
            } @else {
                p.note { "No rollout is running." }
            }
        }
    }
}

/// The bake's progress bar and time left.
fn bake(rollout: &RolloutProgress, canary: &CanarySpec, now: f64) -> Markup {
    let total = canary.bake.value().map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let Some(started) = &rollout.bake_started_at else {
        return html! { p.note #bake { "The bake starts once the canary pods serve the new version." } };
    };
    let elapsed = (now - seconds(&started.0)).max(0.0);
    let done = elapsed.min(total);
    html! {
        div #bake {
            label for="bake-progress" { "Bake: " (format!("{done:.0}")) " s of " (format!("{total:.0}")) " s, "
                (format!("{:.0}", (total - elapsed).max(0.0))) " s left" }
            progress #bake-progress max=(format!("{total:.0}")) value=(format!("{done:.0}")) { (format!("{done:.0} s")) }
        }
    }
}

/// Each figure beside its limit, and whether it passes.
fn analysis(figures: &AnalysisFigures, canary: &CanarySpec) -> Markup {
    let limits = &canary.analysis;
    let rows: Vec<(&str, String, String, Option<bool>)> = vec![
        (
            "canary requests",
            figures.requests.to_string(),
            format!("at least {}", canary.min_requests),
            Some(figures.requests >= canary.min_requests),
        ),
        (
            "error rate",
            number(figures.error_rate),
            format!("at most {}", number(limits.max_error_rate)),
            Some(figures.error_rate <= limits.max_error_rate),
        ),
        (
            "p99 latency ratio (canary / baseline)",
            figures
                .latency_ratio
                .map(number)
                .unwrap_or_else(|| "—".into()),
            format!("at most {}", number(limits.max_latency_ratio)),
            figures.latency_ratio.map(|r| r <= limits.max_latency_ratio),
        ),
        (
            "prediction shift",
            figures
                .prediction_shift
                .map(number)
                .unwrap_or_else(|| "—".into()),
            format!("at most {}", number(limits.max_prediction_shift)),
            figures
                .prediction_shift
                .map(|s| s <= limits.max_prediction_shift),
        ),
    ];
    html! {
        div.table-wrap { table #analysis {
            thead { tr { th { "figure" } th { "measured" } th { "limit" } th { "verdict" } } }
            tbody { @for (name, value, limit, pass) in &rows {
                tr {
                    td { (name) } td.measured { (value) } td { (limit) }
                    @match pass {
                        Some(true) => td.state-ok.verdict { "passes" },
                        Some(false) => td.state-bad.verdict { "fails" },
                        None => td.state-warn.verdict { "not measured yet" },
                    }
                }
            } }
        } }
    }
}

fn shadow_section(status: &ForecastModelStatus) -> Markup {
    html! {
        section #shadow {
            h2 { "Shadow" }
            @match &status.shadow {
                None => p.note { "No shadow version is set." },
                Some(s) => (facts([
                    ("version", html! { span #shadow-version { (s.version) } }),
                    ("pods with it loaded", html! { (s.pods) }),
                    ("requests compared", html! { (s.compared) }),
                    ("mean |shadow − served|", html! { (s.mean_abs_diff.map(number).unwrap_or_else(|| "—".into())) }),
                    ("p99 |shadow − served|", html! { (s.p99_abs_diff.map(number).unwrap_or_else(|| "—".into())) }),
                    ("errors / dropped", html! { (s.errors) " / " (s.dropped) }),
                    ("load failure", html! { (s.load_failed.as_deref().unwrap_or("none")) }),
                ])),
            }
        }
    }
}

fn history_section(status: &ForecastModelStatus) -> Markup {
    // Oldest first, top to bottom.
    let spans: Vec<Span> = status
        .history
        .iter()
        .rev()
        .map(|r| {
            let end = seconds(&r.finished_at.0);
            let start = r.started_at.as_ref().map_or(end, |t| seconds(&t.0));
            Span {
                label: format!(
                    "{} → {} {}",
                    r.from.as_deref().unwrap_or("none"),
                    r.to,
                    result_word(&r.result)
                ),
                class: result_class(&r.result),
                start,
                end,
                title: format!("{}: {}", r.reason, r.message),
            }
        })
        .collect();
    html! {
        @if spans.is_empty() {
            p.note #timeline { "No rollout has finished yet." }
        } @else {
            div #timeline {
                (timeline("Rollouts, oldest first", &spans, |t| {
                    k8s_openapi::jiff::Timestamp::from_millisecond((t * 1000.0) as i64)
                        .map(|ts| ts.strftime("%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default()
                }))
            }
            div.table-wrap { table #history {
                thead { tr { th { "rollout" } th { "reason" } th { "message" } } }
                tbody { @for r in &status.history {
                    tr data-result=(result_word(&r.result)) {
                        td { (history_line(r)) } td { (r.reason) } td { (r.message) }
                    }
                } }
            } }
        }
    }
}

fn traffic_section(id: &str, traffic: &Traffic, rates: &Rates) -> Markup {
    html! {
        @match traffic {
            Traffic::Forbidden(why) => p.note #traffic-note {
                "Per-version traffic is read from the pods' /metrics through the API server's pod proxy, which your credentials may not use here (the API server said: " (why) "). Everything else on this page is shown."
            },
            Traffic::Unavailable(why) => p.note #traffic-note { "No per-version traffic: " (why) },
            Traffic::Figures(figures) => div.table-wrap { table #traffic {
                thead { tr { th { "version" } th { "requests (since the pods started)" } th { "rate, req/s" } th { "error rate" } th { "p99" } } }
                tbody { @for (version, t) in figures {
                    tr data-version=(version) {
                        td { (version) }
                        td.requests { (t.requests) }
                        td.rate { (rates.rate(id, version, t.requests).map(|r| format!("{r:.2}")).unwrap_or_else(|| "— (next refresh)".into())) }
                        td.error-rate { (t.error_rate().map(|r| format!("{:.2} %", r * 100.0)).unwrap_or_else(|| "—".into())) }
                        td.p99 { (t.p99().map(|s| if s.is_finite() { format!("≤ {} ms", number(s * 1000.0)) } else { "> largest bucket".into() }).unwrap_or_else(|| "—".into())) }
                    }
                } }
            } },
        }
    }
}
