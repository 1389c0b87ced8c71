//! Charts as inline SVG: axes with round ticks, lines, markers and shaded bands.
//!
//! The report must open anywhere without a network, so charts are drawn here
//! rather than by a script library.

use std::fmt::Write as _;

/// Colours of the series, in order (colour-blind-safe Okabe–Ito palette).
pub const PALETTE: [&str; 6] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
];

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 28.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 44.0;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Line,
    Dots,
}

/// One named series of (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub mark: Mark,
}

/// A shaded region between a lower and an upper curve over the same x values.
#[derive(Debug, Clone)]
pub struct Band {
    pub name: String,
    /// (x, low, high)
    pub points: Vec<(f64, f64, f64)>,
    /// Index into [`PALETTE`] of the series it belongs to.
    pub colour: usize,
}

/// A chart: a title, axis labels and what to draw.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub bands: Vec<Band>,
    /// Whether x values are Unix seconds, shown as clock times (UTC).
    pub x_is_time: bool,
}

impl Chart {
    /// The chart as an `<svg>` element; an empty chart says there is no data.
    pub fn render(&self) -> String {
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain(self.bands.iter().flat_map(|b| b.points.iter().map(|p| p.0)));
        let ys = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(
                self.bands
                    .iter()
                    .flat_map(|b| b.points.iter().flat_map(|p| [p.1, p.2])),
            );
        let x_range = range(xs);
        let y_range = range(ys).map(|(_, high)| (0.0, high));
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{title}" font-family="sans-serif" font-size="11">"#,
            title = escape(&self.title)
        );
        let _ = write!(
            out,
            r#"<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{}</text>"#,
            escape(&self.title)
        );
        let (Some((x_low, x_high)), Some((_, y_high))) = (x_range, y_range) else {
            let _ = write!(
                out,
                r##"<text x="{}" y="{}" text-anchor="middle" fill="#666">no data</text></svg>"##,
                WIDTH / 2.0,
                HEIGHT / 2.0
            );
            return out;
        };
        let x_ticks = ticks(x_low, x_high);
        let y_ticks = ticks(0.0, y_high);
        let (x_low, x_high) = (
            x_ticks[0].min(x_low),
            x_ticks.last().copied().unwrap_or(x_high).max(x_high),
        );
        let y_high = y_ticks.last().copied().unwrap_or(y_high).max(y_high);
        let plot_width = WIDTH - LEFT - RIGHT;
        let plot_height = HEIGHT - TOP - BOTTOM;
        let x_span = if x_high > x_low { x_high - x_low } else { 1.0 };
        let y_span = if y_high > 0.0 { y_high } else { 1.0 };
        let sx = |x: f64| LEFT + (x - x_low) / x_span * plot_width;
        let sy = |y: f64| TOP + plot_height - y / y_span * plot_height;

        // Grid and tick labels.
        for &y in &y_ticks {
            let _ = write!(
                out,
                r##"<line x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                sy(y) + 4.0,
                number(y),
                py = sy(y),
            );
        }
        for &x in &x_ticks {
            let label = if self.x_is_time { clock(x) } else { number(x) };
            let _ = write!(
                out,
                r##"<line x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{}" stroke="#eee"/><text x="{px:.1}" y="{}" text-anchor="middle">{label}</text>"##,
                TOP + plot_height,
                TOP + plot_height + 16.0,
                px = sx(x),
            );
        }
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#333"/><line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{y:.1}" stroke="#333"/>"##,
            WIDTH - RIGHT,
            y = TOP + plot_height,
        );
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + plot_width / 2.0,
            HEIGHT - 8.0,
            escape(&self.x_label)
        );
        let _ = write!(
            out,
            r#"<text transform="translate(14 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + plot_height / 2.0,
            escape(&self.y_label)
        );

        for band in &self.bands {
            if band.points.is_empty() {
                continue;
            }
            let upper = band.points.iter().map(|p| (sx(p.0), sy(p.2)));
            let lower = band.points.iter().rev().map(|p| (sx(p.0), sy(p.1)));
            let _ = write!(
                out,
                r#"<polygon class="band" fill="{}" fill-opacity="0.18" stroke="none" points="{}"><title>{}</title></polygon>"#,
                PALETTE[band.colour % PALETTE.len()],
                coordinates(upper.chain(lower)),
                escape(&band.name)
            );
        }
        // Lines first, so markers stay visible on top of them.
        let mut order: Vec<usize> = (0..self.series.len()).collect();
        order.sort_by_key(|&i| self.series[i].mark == Mark::Dots);
        for i in order {
            let series = &self.series[i];
            let colour = PALETTE[i % PALETTE.len()];
            match series.mark {
                Mark::Line => {
                    let _ = write!(
                        out,
                        r#"<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" points="{}"><title>{}</title></polyline>"#,
                        coordinates(series.points.iter().map(|p| (sx(p.0), sy(p.1)))),
                        escape(&series.name)
                    );
                }
                Mark::Dots => {
                    for &(x, y) in &series.points {
                        let _ = write!(
                            out,
                            r#"<circle class="series" cx="{:.1}" cy="{:.1}" r="4" fill="{colour}"><title>{}: ({}, {})</title></circle>"#,
                            sx(x),
                            sy(y),
                            escape(&series.name),
                            number(x),
                            number(y)
                        );
                    }
                }
            }
        }
        for (i, series) in self.series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            // Legend, top right, one row per series.
            let ly = TOP + 6.0 + 14.0 * i as f64;
            let lx = WIDTH - RIGHT - 150.0;
            let _ = write!(
                out,
                r#"<rect x="{lx}" y="{:.1}" width="10" height="10" fill="{colour}"/><text x="{}" y="{:.1}">{}</text>"#,
                ly - 9.0,
                lx + 14.0,
                ly,
                escape(&series.name)
            );
        }
        out.push_str("</svg>");
        out
    }
}

/// The smallest and largest finite value, if any.
fn range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((low, high)) => Some((low.min(v), high.max(v))),
        })
}

/// Round tick values (1, 2 or 5 × 10^k apart) covering [low, high], about five of them.
pub fn ticks(low: f64, high: f64) -> Vec<f64> {
    if high.partial_cmp(&low) != Some(std::cmp::Ordering::Greater) {
        return vec![low, low + 1.0];
    }
    let rough = (high - low) / 5.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= rough)
        .unwrap_or(10.0 * magnitude);
    let first = (low / step).floor() * step;
    let mut values = Vec::new();
    let mut k = 0.0;
    loop {
        let value = first + k * step;
        values.push(value);
        if value >= high - step * 1e-9 {
            break;
        }
        k += 1.0;
    }
    values
}

fn coordinates(points: impl Iterator<Item = (f64, f64)>) -> String {
    let mut out = String::new();
    for (x, y) in points {
        let _ = write!(out, "{x:.1},{y:.1} ");
    }
    out.trim_end().to_string()
}

/// A compact number for a label: 12k, 1.5M, 0.25.
pub fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{}M", trim(value / 1e6))
    } else if magnitude >= 1e4 {
        format!("{}k", trim(value / 1e3))
    } else {
        trim(value)
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// Unix seconds as HH:MM:SS (UTC).
fn clock(seconds: f64) -> String {
    let s = seconds.rem_euclid(86_400.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Text made safe for XML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(0.0, 12_341.0), [0.0, 5000.0, 10_000.0, 15_000.0]);
        let t = ticks(1.0, 64.0);
        assert!(t[0] <= 1.0 && *t.last().unwrap() >= 64.0, "{t:?}");
        assert_eq!(ticks(3.0, 3.0), [3.0, 4.0]);
    }

    #[test]
    fn labels_are_compact() {
        assert_eq!(number(12_341.7), "12.342k");
        assert_eq!(number(2_500_000.0), "2.5M");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(40.0), "40");
        assert_eq!(clock(3_600.0 * 25.0 + 61.0), "01:01:01");
    }

    #[test]
    fn a_chart_draws_every_series_and_escapes_text() {
        let chart = Chart {
            title: "a <b> & c".into(),
            x_label: "N".into(),
            y_label: "req/s".into(),
            series: vec![
                Series {
                    name: "measured".into(),
                    points: vec![(1.0, 10.0), (2.0, 19.0), (4.0, 30.0)],
                    mark: Mark::Dots,
                },
                Series {
                    name: "fit".into(),
                    points: vec![(1.0, 10.0), (4.0, 31.0)],
                    mark: Mark::Line,
                },
            ],
            bands: vec![Band {
                name: "95% band".into(),
                points: vec![(1.0, 9.0, 11.0), (4.0, 29.0, 33.0)],
                colour: 1,
            }],
            x_is_time: false,
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<polygon").count(), 1);
        assert!(svg.contains("a &lt;b&gt; &amp; c") && !svg.contains("<b>"));
        let empty = Chart::default().render();
        assert!(empty.contains("no data"));
    }
}
