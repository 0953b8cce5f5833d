//! The SVG chart of a report, written by hand (no plotting crate): three panels side by side.
//! 1. Throughput: plain INSERT commits/s beside engine commands/s at each client count, and
//!    the hot aggregate's joins/s. 2. The hot aggregate's joins/s per tenth of its stream.
//! 3. Latency percentiles of (c) against the 100 ms target.

use std::fmt::Write as _;

use crate::report::Report;

const PANEL_W: f64 = 320.0;
const HEIGHT: f64 = 340.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 290.0;
const BASELINE_COLOUR: &str = "#9aa5b1";
const ENGINE_COLOUR: &str = "#2b6cb0";
const HOT_COLOUR: &str = "#dd6b20";

/// One bar of a panel.
struct Bar {
    label: String,
    value: f64,
    colour: &'static str,
}

/// The chart of `report` as SVG text.
pub fn render(report: &Report) -> String {
    let mut svg = String::new();
    let width = PANEL_W * 3.0;
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" viewBox="0 0 {width} {HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    panel(
        &mut svg,
        0.0,
        "Throughput (per second)",
        &throughput_bars(report),
        None,
    );
    panel(
        &mut svg,
        PANEL_W,
        "Hot aggregate: joins/s per tenth",
        &hot_bars(report),
        None,
    );
    panel(
        &mut svg,
        PANEL_W * 2.0,
        "Accepted → visible latency (ms)",
        &latency_bars(report),
        Some(("100 ms target", 100.0)),
    );
    let _ = writeln!(
        svg,
        r#"<text x="8" y="{}" fill="{BASELINE_COLOUR}">■ baseline (plain INSERT commits)</text><text x="230" y="{}" fill="{ENGINE_COLOUR}">■ engine (HTTP commands)</text><text x="420" y="{}" fill="{HOT_COLOUR}">■ hot aggregate</text>"#,
        HEIGHT - 8.0,
        HEIGHT - 8.0,
        HEIGHT - 8.0
    );
    svg.push_str("</svg>\n");
    svg
}

fn throughput_bars(report: &Report) -> Vec<Bar> {
    let mut bars = Vec::new();
    if let Some(a) = &report.throughput {
        for level in &a.levels {
            bars.push(Bar {
                label: format!("{} base", level.clients),
                value: level.baseline_commits_per_s,
                colour: BASELINE_COLOUR,
            });
            bars.push(Bar {
                label: format!("{} eng", level.clients),
                value: level.engine_commands_per_s,
                colour: ENGINE_COLOUR,
            });
        }
    }
    if let Some(b) = &report.hot {
        bars.push(Bar {
            label: "hot".to_owned(),
            value: b.first_joins_per_s,
            colour: HOT_COLOUR,
        });
    }
    bars
}

fn hot_bars(report: &Report) -> Vec<Bar> {
    report.hot.as_ref().map_or_else(Vec::new, |b| {
        b.window_joins_per_s
            .iter()
            .enumerate()
            .map(|(tenth, &value)| Bar {
                label: format!("{}", tenth + 1),
                value,
                colour: HOT_COLOUR,
            })
            .collect()
    })
}

fn latency_bars(report: &Report) -> Vec<Bar> {
    report.latency.as_ref().map_or_else(Vec::new, |c| {
        let p = &c.accepted_to_visible;
        [("p50", p.p50_ms), ("p99", p.p99_ms), ("p99.9", p.p999_ms)]
            .into_iter()
            .map(|(label, value)| Bar {
                label: label.to_owned(),
                value,
                colour: ENGINE_COLOUR,
            })
            .collect()
    })
}

/// A bar panel at horizontal offset `x`, with an optional dashed reference line.
fn panel(svg: &mut String, x: f64, title: &str, bars: &[Bar], reference: Option<(&str, f64)>) {
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" font-size="13" font-weight="bold">{}</text>"#,
        x + 10.0,
        escape(title)
    );
    let left = x + 50.0;
    let right = x + PANEL_W - 10.0;
    let _ = writeln!(
        svg,
        r##"<line x1="{left}" y1="{BOTTOM}" x2="{right}" y2="{BOTTOM}" stroke="#333"/>"##
    );
    if bars.is_empty() {
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" fill="#666">not measured</text>"##,
            left + 20.0,
            (TOP + BOTTOM) / 2.0
        );
        return;
    }
    let top_value = bars
        .iter()
        .map(|bar| bar.value)
        .chain(reference.map(|(_, value)| value))
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.1;
    let scale = |value: f64| BOTTOM - (value / top_value) * (BOTTOM - TOP);
    for tick in 0..=4 {
        let value = top_value * f64::from(tick) / 4.0;
        let y = scale(value);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            left - 4.0,
            y + 4.0,
            short(value)
        );
    }
    let slot = (right - left) / bars.len() as f64;
    for (index, bar) in bars.iter().enumerate() {
        let bar_x = left + slot * index as f64 + slot * 0.15;
        let y = scale(bar.value);
        let _ = writeln!(
            svg,
            r#"<rect x="{bar_x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {:.1}</title></rect>"#,
            slot * 0.7,
            BOTTOM - y,
            bar.colour,
            escape(&bar.label),
            bar.value
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333" font-size="9">{}</text>"##,
            bar_x + slot * 0.35,
            y - 3.0,
            short(bar.value)
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#333" font-size="9">{}</text>"##,
            bar_x + slot * 0.35,
            BOTTOM + 13.0,
            escape(&bar.label)
        );
    }
    if let Some((label, value)) = reference {
        let y = scale(value);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#c53030" stroke-dasharray="5,4"/><text x="{right}" y="{:.1}" text-anchor="end" fill="#c53030">{}</text>"##,
            y - 4.0,
            escape(label)
        );
    }
}

/// A compact number: 8700 → "8.7k".
fn short(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if value >= 1000.0 {
        format!("{:.1}k", value / 1000.0)
    } else if value >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_shortened_for_labels() {
        assert_eq!(short(8_700.0), "8.7k");
        assert_eq!(short(12_345.0), "12k");
        assert_eq!(short(42.4), "42");
        assert_eq!(short(3.25), "3.2");
    }

    #[test]
    fn given_bars_then_the_panel_draws_each_with_its_label_and_the_reference_line() {
        let mut svg = String::new();
        let bars = [
            Bar {
                label: "p50".to_owned(),
                value: 5.0,
                colour: ENGINE_COLOUR,
            },
            Bar {
                label: "p99<".to_owned(),
                value: 50.0,
                colour: ENGINE_COLOUR,
            },
        ];
        panel(&mut svg, 0.0, "t", &bars, Some(("100 ms", 100.0)));
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("p99&lt;"));
        assert!(svg.contains("stroke-dasharray"));
    }
}
