//! A timeline of events with a start and an end (rollouts), one row each, drawn as inline
//! SVG over a shared time axis. Each bar is labelled in text (what, and its outcome), so
//! its colour only repeats what the label says.

use maud::{Markup, html};

const WIDTH: f64 = 720.0;
const ROW: f64 = 30.0;
const LEFT: f64 = 8.0;
const RIGHT: f64 = 8.0;
const AXIS: f64 = 24.0;
/// The narrowest time range drawn, in seconds.
const MIN_RANGE: f64 = 60.0;
/// Tick labels closer than this to an edge are left out (they would be cut).
const LABEL_MARGIN: f64 = 48.0;

/// One bar: from `start` to `end` (seconds on any common clock).
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub label: String,
    /// The stylesheet class colouring it (`ok`, `bad`, `warn`).
    pub class: &'static str,
    pub start: f64,
    pub end: f64,
    /// Shown when hovered: the details.
    pub title: String,
}

/// The spans as an SVG, oldest first from the top; `tick_label` names a time on the axis.
pub fn render(title: &str, spans: &[Span], tick_label: impl Fn(f64) -> String) -> Markup {
    let lo = spans.iter().map(|s| s.start).fold(f64::INFINITY, f64::min);
    let hi = spans
        .iter()
        .map(|s| s.end)
        .fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi.is_finite() && hi > lo {
        let pad = (hi - lo) * 0.02;
        (lo - pad, hi + pad)
    } else if lo.is_finite() {
        (lo - 1.0, lo + 1.0)
    } else {
        (0.0, 1.0)
    };
    // At least a minute wide, so short rollouts do not fill the axis with one instant.
    let (lo, hi) = if hi - lo < MIN_RANGE {
        let middle = (lo + hi) / 2.0;
        (middle - MIN_RANGE / 2.0, middle + MIN_RANGE / 2.0)
    } else {
        (lo, hi)
    };
    let height = AXIS + ROW * spans.len().max(1) as f64;
    let x = |t: f64| LEFT + (t - lo) / (hi - lo) * (WIDTH - LEFT - RIGHT);
    let ticks: Vec<f64> = crate::chart::ticks(lo, hi, 4)
        .into_iter()
        .filter(|t| (LABEL_MARGIN..=WIDTH - LABEL_MARGIN).contains(&x(*t)))
        .collect();
    html! {
        figure.chart.timeline {
            svg viewBox=(format!("0 0 {WIDTH} {height}")) role="img" aria-label=(title) {
                title { (title) }
                @for t in &ticks {
                    line.grid x1=(format!("{:.1}", x(*t))) x2=(format!("{:.1}", x(*t))) y1="0" y2=(height - AXIS) {}
                    text.tick x=(format!("{:.1}", x(*t))) y=(height - 8.0) text-anchor="middle" { (tick_label(*t)) }
                }
                @for (i, s) in spans.iter().enumerate() {
                    @let y = i as f64 * ROW + 4.0;
                    @let width = (x(s.end) - x(s.start)).max(3.0);
                    g.span data-result=(s.class) {
                        title { (s.title) }
                        rect class=(format!("bar {}", s.class)) x=(format!("{:.1}", x(s.start))) y=(y) width=(format!("{width:.1}")) height=(ROW - 10.0) rx="3" {}
                        text.bar-label x=(format!("{:.1}", (x(s.start) + 4.0).min(WIDTH - 200.0))) y=(y + ROW - 14.0) { (s.label) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_span_is_a_labelled_bar_in_order() {
        let spans = vec![
            Span {
                label: "v1 → v2 succeeded".into(),
                class: "ok",
                start: 100.0,
                end: 110.0,
                title: "2 s".into(),
            },
            Span {
                label: "v2 → v3 failed".into(),
                class: "bad",
                start: 200.0,
                end: 260.0,
                title: "canary".into(),
            },
        ];
        let svg = render("Rollouts", &spans, |t| format!("t{t}")).into_string();
        assert_eq!(svg.matches("<rect").count(), 2);
        let first = svg.find("v1 → v2 succeeded").unwrap();
        let second = svg.find("v2 → v3 failed").unwrap();
        assert!(first < second);
        assert!(svg.contains(r#"data-result="bad""#));
        assert!(!svg.contains("NaN"));
        let empty = render("Rollouts", &[], |t| t.to_string()).into_string();
        assert!(empty.contains("<svg") && !empty.contains("NaN"));
    }
}
