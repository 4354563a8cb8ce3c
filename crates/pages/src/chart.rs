//! Line charts as inline SVG: one or more series over a shared x axis, and an optional
//! band (a shaded range per x). Colours come from the stylesheet by class; every series is
//! named in a legend as text, so no state is told by colour alone.

use maud::{Markup, html};

/// Drawing size in SVG units (the chart scales to its container).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 320.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 44.0;
/// Series with more points than this are drawn as a line only (no marker per point).
const MAX_MARKERS: usize = 500;

/// One line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// The stylesheet class that colours it (`champion`, `shadow`, `history`, `forecast`).
    pub class: &'static str,
    pub points: Vec<(f64, f64)>,
}

/// A shaded range: per x, a low and a high value.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub name: String,
    pub points: Vec<(f64, f64, f64)>,
}

/// A chart of series over one x axis.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub band: Option<Band>,
    /// Labelled x positions; empty for evenly spaced numbers.
    pub x_ticks: Vec<(f64, String)>,
}

/// Maps data coordinates to the drawing.
struct Scale {
    x: (f64, f64),
    y: (f64, f64),
}

impl Scale {
    fn of(chart: &LineChart) -> Self {
        let xs = chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain(chart.band.iter().flat_map(|b| b.points.iter().map(|p| p.0)));
        let ys = chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(
                chart
                    .band
                    .iter()
                    .flat_map(|b| b.points.iter().flat_map(|p| [p.1, p.2])),
            );
        let x = padded(range(xs), 0.0);
        let y = padded(range(ys), 0.05);
        Scale { x, y }
    }

    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x.0) / (self.x.1 - self.x.0) * (WIDTH - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        HEIGHT - BOTTOM - (y - self.y.0) / (self.y.1 - self.y.0) * (HEIGHT - TOP - BOTTOM)
    }
}

/// The smallest and largest finite value (0..1 when there is none).
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc: Option<(f64, f64)>, v| {
            Some(acc.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
        })
        .unwrap_or((0.0, 1.0))
}

/// The range widened by `share` of its width on each side, and never empty.
fn padded((lo, hi): (f64, f64), share: f64) -> (f64, f64) {
    if hi - lo <= f64::EPSILON * lo.abs().max(1.0) {
        let pad = lo.abs().max(1.0) * 0.5;
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * share;
    (lo - pad, hi + pad)
}

/// About `count` round tick values (steps of 1, 2, 2.5 or 5 × 10ⁿ) inside `lo..=hi`.
pub fn ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || count == 0 {
        return Vec::new();
    }
    let rough = (hi - lo) / count as f64;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * power);
    let first = (lo / step).ceil();
    (0..=count * 2 + 1)
        .map(|i| (first + i as f64) * step)
        .take_while(|v| *v <= hi + step * 1e-9)
        .collect()
}

fn points_attr(points: impl Iterator<Item = (f64, f64)>) -> String {
    let mut out = String::new();
    for (x, y) in points {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!("{x:.1},{y:.1}"));
    }
    out
}

impl LineChart {
    /// The chart as an `<svg>` element and its legend.
    pub fn render(&self) -> Markup {
        let scale = Scale::of(self);
        let y_ticks = ticks(scale.y.0, scale.y.1, 5);
        let x_ticks: Vec<(f64, String)> = if self.x_ticks.is_empty() {
            ticks(scale.x.0, scale.x.1, 6)
                .into_iter()
                .map(|x| (x, crate::number(x)))
                .collect()
        } else {
            self.x_ticks.clone()
        };
        let band = self.band.as_ref().filter(|b| !b.points.is_empty());
        html! {
            figure.chart {
                svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(self.title) {
                    title { (self.title) }
                    @for y in &y_ticks {
                        line.grid x1=(LEFT) x2=(WIDTH - RIGHT) y1=(format!("{:.1}", scale.py(*y))) y2=(format!("{:.1}", scale.py(*y))) {}
                        text.tick x=(LEFT - 6.0) y=(format!("{:.1}", scale.py(*y) + 4.0)) text-anchor="end" { (crate::number(*y)) }
                    }
                    @for (x, label) in &x_ticks {
                        text.tick x=(format!("{:.1}", scale.px(*x))) y=(HEIGHT - BOTTOM + 16.0) text-anchor="middle" { (label) }
                    }
                    line.axis x1=(LEFT) x2=(LEFT) y1=(TOP) y2=(HEIGHT - BOTTOM) {}
                    line.axis x1=(LEFT) x2=(WIDTH - RIGHT) y1=(HEIGHT - BOTTOM) y2=(HEIGHT - BOTTOM) {}
                    text.axis-label x=(LEFT + (WIDTH - LEFT - RIGHT) / 2.0) y=(HEIGHT - 6.0) text-anchor="middle" { (self.x_label) }
                    text.axis-label x="14" y=(TOP + (HEIGHT - TOP - BOTTOM) / 2.0) text-anchor="middle" transform=(format!("rotate(-90 14 {:.1})", TOP + (HEIGHT - TOP - BOTTOM) / 2.0)) { (self.y_label) }
                    @if let Some(band) = band {
                        polygon.band data-band=(band.name) data-points=(band.points.len()) points=(points_attr(
                            band.points.iter().map(|p| (scale.px(p.0), scale.py(p.2)))
                                .chain(band.points.iter().rev().map(|p| (scale.px(p.0), scale.py(p.1))))
                        )) {}
                    }
                    @for s in &self.series {
                        polyline class=(format!("series {}", s.class)) data-series=(s.name) data-points=(s.points.len())
                            points=(points_attr(s.points.iter().map(|p| (scale.px(p.0), scale.py(p.1))))) {}
                        @if s.points.len() <= MAX_MARKERS {
                            @for p in &s.points {
                                circle class=(format!("point {}", s.class)) cx=(format!("{:.1}", scale.px(p.0))) cy=(format!("{:.1}", scale.py(p.1))) r="3" {
                                    title { (s.name) ": " (crate::number(p.1)) }
                                }
                            }
                        }
                    }
                }
                figcaption {
                    ul.legend {
                        @for s in &self.series {
                            li { span class=(format!("swatch {}", s.class)) {} (s.name) }
                        }
                        @if let Some(band) = band {
                            li { span.swatch.band {} (band.name) }
                        }
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
    fn ticks_are_round_and_inside() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(3.0, 97.0, 4), vec![25.0, 50.0, 75.0]);
        let t = ticks(0.13, 0.61, 5);
        assert_eq!(t.len(), 5, "{t:?}");
        assert!(ticks(1.0, 1.0, 5).is_empty());
        assert!(ticks(f64::NAN, 1.0, 5).is_empty());
    }

    #[test]
    fn series_band_and_legend_are_drawn_in_the_frame() {
        let chart = LineChart {
            title: "Forecast".into(),
            x_label: "day".into(),
            y_label: "GB".into(),
            series: vec![Series {
                name: "forecast".into(),
                class: "forecast",
                points: vec![(0.0, 10.0), (1.0, 20.0), (2.0, 15.0)],
            }],
            band: Some(Band {
                name: "p10–p90".into(),
                points: vec![(0.0, 5.0, 12.0), (1.0, 18.0, 30.0), (2.0, 10.0, 16.0)],
            }),
            x_ticks: vec![(0.0, "Nov 1".into())],
        };
        let svg = chart.render().into_string();
        assert!(
            svg.contains(r#"data-series="forecast" data-points="3""#),
            "{svg}"
        );
        assert!(svg.contains(r#"data-band="p10–p90" data-points="3""#));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains(">Nov 1</text>"));
        assert!(svg.contains("</span>forecast</li>"));
        // Every drawn coordinate is inside the drawing.
        let start = svg.find(r#" points=""#).unwrap();
        for pair in svg[start..].split('"').nth(1).unwrap().split(' ') {
            let (x, y) = pair.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!((LEFT..=WIDTH - RIGHT).contains(&x) && (TOP..=HEIGHT - BOTTOM).contains(&y));
        }
    }

    #[test]
    fn one_point_and_no_points_still_draw() {
        let one = LineChart {
            series: vec![Series {
                name: "prediction".into(),
                class: "champion",
                points: vec![(0.0, 42.0)],
            }],
            ..Default::default()
        };
        let svg = one.render().into_string();
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        let none = LineChart::default().render().into_string();
        assert!(none.contains("<svg") && !none.contains("NaN"));
    }
}
