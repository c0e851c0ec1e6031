//! Small pieces every page is made of: HTML escaping, dates and durations in words, and the
//! inline SVG charts (drawn on the server so pages read well without JavaScript).

use std::fmt::{self, Write};
use std::time::Duration;

use crate::view::Date;

/// Writes its text with the five HTML-special characters escaped: safe in element content
/// and in double- or single-quoted attribute values.
#[derive(Debug, Clone, Copy)]
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            let (plain, special) = rest.split_at(at);
            f.write_str(plain)?;
            let mut chars = special.chars();
            let entity = match chars.next() {
                Some('&') => "&amp;",
                Some('<') => "&lt;",
                Some('>') => "&gt;",
                Some('"') => "&quot;",
                _ => "&#39;",
            };
            f.write_str(entity)?;
            rest = chars.as_str();
        }
        f.write_str(rest)
    }
}

/// `2026-11-23 23:11:09` (UTC) in a `<time>` element, or a dash.
pub fn date(out: &mut String, when: Option<Date>) {
    match when {
        Some(d) => {
            let iso = d.to_iso8601();
            let shown = iso.trim_end_matches('Z').replacen('T', " ", 1);
            let _ = write!(out, "<time datetime=\"{iso}\">{shown}</time>");
        }
        None => out.push_str("<span class=\"muted\">–</span>"),
    }
}

/// A short human duration: `850 ms`, `12.4 s`, `3 min 5 s`, `2 h 10 min`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, ms / 1000 % 60)
    } else {
        format!("{} h {} min", ms / 3_600_000, ms / 60_000 % 60)
    }
}

/// How long between two dates, when both are known.
pub fn elapsed(from: Option<Date>, to: Option<Date>) -> Option<Duration> {
    let seconds = to?.0 - from?.0;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// The CSS class for a state name: lower case letters only, so it is always a safe token.
pub fn state_class(state: &str) -> String {
    state
        .chars()
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Numbers as the `data-values` attribute the script reads back: comma-separated.
pub fn number_list(values: impl IntoIterator<Item = f64>) -> String {
    let mut out = String::new();
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = if v.is_finite() { v } else { 0.0 };
        let _ = write!(out, "{}", (v * 1000.0).round() / 1000.0);
    }
    out
}

/// `x,y` points of a polyline over a `width`×`height` box: values spread evenly across,
/// scaled so `top` touches the top edge.
fn points(values: &[f64], width: f64, height: f64, top: f64) -> String {
    let step = if values.len() > 1 {
        width / (values.len() - 1) as f64
    } else {
        0.0
    };
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        let y = height - (v.max(0.0) / top).min(1.0) * height;
        let _ = write!(out, "{:.1},{:.1} ", i as f64 * step, y);
    }
    out.trim_end().to_owned()
}

/// A small load sparkline for an agent (the script redraws it as reports arrive).
pub fn sparkline(out: &mut String, recent: &[f64], cores: u32) {
    let top = recent
        .iter()
        .copied()
        .fold(f64::from(cores.max(1)), f64::max);
    let _ = write!(
        out,
        "<svg class=\"spark\" viewBox=\"0 0 120 28\" preserveAspectRatio=\"none\" \
         data-values=\"{}\" data-top=\"{}\" role=\"img\" aria-label=\"recent load\">\
         <polyline points=\"{}\"/></svg>",
        number_list(recent.iter().copied()),
        cores.max(1),
        points(recent, 120.0, 28.0, top)
    );
}

/// The grid CPU chart: cores busy (filled) under the cores available (dashed).
pub fn usage_chart(out: &mut String, busy: &[f64], total: &[f64]) {
    let top = busy.iter().chain(total).copied().fold(1.0_f64, f64::max);
    let (w, h) = (600.0, 160.0);
    let busy_points = points(busy, w, h, top);
    let area = if busy.is_empty() {
        String::new()
    } else {
        format!("0,{h} {busy_points} {w},{h}")
    };
    let _ = write!(
        out,
        "<svg id=\"usage-chart\" class=\"chart\" viewBox=\"0 0 {w} {h}\" \
         preserveAspectRatio=\"none\" data-busy=\"{}\" data-total=\"{}\" role=\"img\" \
         aria-label=\"grid CPU in use over time\">\
         <polygon class=\"area\" points=\"{area}\"/>\
         <polyline class=\"busy\" points=\"{busy_points}\"/>\
         <polyline class=\"total\" points=\"{}\"/></svg>",
        number_list(busy.iter().copied()),
        number_list(total.iter().copied()),
        points(total, w, h, top),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_replaces_every_special_character() {
        let text = format!("{}", Esc("<a href=\"x\" title='y'>Tom & Jerry</a>"));
        assert_eq!(
            text,
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;Tom &amp; Jerry&lt;/a&gt;"
        );
        assert_eq!(format!("{}", Esc("plain é")), "plain é");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(12_400)), "12.4 s");
        assert_eq!(duration(Duration::from_secs(185)), "3 min 5 s");
        assert_eq!(duration(Duration::from_secs(7800)), "2 h 10 min");
    }

    #[test]
    fn state_classes_are_plain_tokens() {
        assert_eq!(state_class("Running"), "running");
        assert_eq!(state_class("x\" onload=\"y"), "xonloady");
    }

    #[test]
    fn chart_points_scale_to_the_box() {
        assert_eq!(
            points(&[0.0, 2.0, 4.0], 100.0, 10.0, 4.0),
            "0.0,10.0 50.0,5.0 100.0,0.0"
        );
        assert_eq!(number_list([1.0, 0.5, f64::NAN]), "1,0.5,0");
    }

    #[test]
    fn dates_show_in_utc_and_missing_ones_as_a_dash() {
        let mut out = String::new();
        date(&mut out, Date::parse_iso8601("2026-11-23T23:11:09Z"));
        assert_eq!(
            out,
            "<time datetime=\"2026-11-23T23:11:09Z\">2026-11-23 23:11:09</time>"
        );
        let mut out = String::new();
        date(&mut out, None);
        assert!(out.contains('–'));
    }
}
