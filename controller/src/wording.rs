//! How the controller's log puts numbers into words: counts with their noun ("1 task",
//! "40 tasks"), durations ("3 m 12 s"), megahertz ("1,420 MHz") and the names it gives jobs
//! ("job 12 (render)"), so that a log line reads as a sentence about what happened.

use std::time::Duration;

/// `n` and its noun, plural unless `n` is 1: `count(2, "task")` is "2 tasks".
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A duration in its two largest units: "45 s", "3 m 12 s", "2 h 5 m", "3 d 4 h".
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days} d {hours} h")
    } else if s >= 3600 {
        format!("{} h {minutes} m", s / 3600)
    } else if s >= 60 {
        format!("{} m {seconds} s", s / 60)
    } else if s == 0 && d.subsec_millis() > 0 {
        format!("{} ms", d.subsec_millis())
    } else {
        format!("{s} s")
    }
}

/// Megahertz with thousands separated: "1,420 MHz".
pub fn megahertz(mhz: u64) -> String {
    let digits = mhz.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out} MHz")
}

/// "job 12 (render)", or "job 12" for a job without a name.
pub fn job_label(job: u64, name: Option<&str>) -> String {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => format!("job {job} ({name})"),
        None => format!("job {job}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(count(0, "task"), "0 tasks");
        assert_eq!(count(1, "task"), "1 task");
        assert_eq!(count(40, "processor"), "40 processors");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_secs(0)), "0 s");
        assert_eq!(duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(duration(Duration::from_secs(45)), "45 s");
        assert_eq!(duration(Duration::from_secs(3 * 60 + 12)), "3 m 12 s");
        assert_eq!(
            duration(Duration::from_secs(2 * 3600 + 5 * 60 + 9)),
            "2 h 5 m"
        );
        assert_eq!(
            duration(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3 d 4 h"
        );
    }

    #[test]
    fn megahertz_in_thousands() {
        assert_eq!(megahertz(0), "0 MHz");
        assert_eq!(megahertz(999), "999 MHz");
        assert_eq!(megahertz(1420), "1,420 MHz");
        assert_eq!(megahertz(12_345_678), "12,345,678 MHz");
    }

    #[test]
    fn job_labels() {
        assert_eq!(job_label(12, Some("render")), "job 12 (render)");
        assert_eq!(job_label(3, Some("  ")), "job 3");
        assert_eq!(job_label(3, None), "job 3");
    }
}
