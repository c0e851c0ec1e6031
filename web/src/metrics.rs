//! `/metrics`: the grid's figures in Prometheus' text exposition format (version 0.0.4).

use std::fmt::Write;

use crate::view::{AgentState, JobStatus, MetricsView};

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole exposition. Every status and state is written, zero when absent, so series do
/// not appear and vanish as jobs come and go.
pub fn render(m: &MetricsView) -> String {
    let mut out = String::new();
    header(&mut out, "xgrid_jobs", "gauge", "Jobs by status.");
    for status in JobStatus::ALL {
        let n: u64 = m
            .jobs_by_status
            .iter()
            .filter(|(s, _)| s == status)
            .map(|(_, n)| n)
            .sum();
        let _ = writeln!(out, "xgrid_jobs{{status=\"{status}\"}} {n}");
    }
    header(
        &mut out,
        "xgrid_tasks_running",
        "gauge",
        "Tasks running on agents.",
    );
    let _ = writeln!(out, "xgrid_tasks_running {}", m.tasks_running);
    header(&mut out, "xgrid_agents", "gauge", "Agents by state.");
    for state in AgentState::ALL {
        let n: u64 = m
            .agents_by_state
            .iter()
            .filter(|(s, _)| s == state)
            .map(|(_, n)| n)
            .sum();
        let _ = writeln!(out, "xgrid_agents{{state=\"{state}\"}} {n}");
    }
    header(
        &mut out,
        "xgrid_migrations_total",
        "counter",
        "Running tasks moved from one agent to another.",
    );
    let _ = writeln!(out, "xgrid_migrations_total {}", m.migrations_total);
    let name = "xgrid_dispatch_latency_seconds";
    header(
        &mut out,
        name,
        "histogram",
        "Time from a task becoming ready to its agent accepting it.",
    );
    let h = &m.dispatch_latency;
    for (bound, count) in h.cumulative_buckets() {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count());
    let _ = writeln!(out, "{name}_sum {}", h.sum_seconds());
    let _ = writeln!(out, "{name}_count {}", h.count());
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::view::LatencyHistogram;

    #[test]
    fn every_series_is_written_with_help_and_type() {
        let mut latency = LatencyHistogram::new(&[0.1, 1.0]);
        latency.observe(Duration::from_millis(20));
        latency.observe(Duration::from_millis(2500));
        let m = MetricsView {
            jobs_by_status: vec![(JobStatus::Running, 3), (JobStatus::Finished, 5)],
            tasks_running: 6,
            agents_by_state: vec![(AgentState::Available, 2)],
            migrations_total: 4,
            dispatch_latency: latency,
        };
        let text = render(&m);
        let lines: Vec<&str> = text.lines().collect();
        for expected in [
            "# TYPE xgrid_jobs gauge",
            "xgrid_jobs{status=\"Running\"} 3",
            "xgrid_jobs{status=\"Finished\"} 5",
            "xgrid_jobs{status=\"Pending\"} 0",
            "xgrid_tasks_running 6",
            "xgrid_agents{state=\"Available\"} 2",
            "xgrid_agents{state=\"Offline\"} 0",
            "# TYPE xgrid_migrations_total counter",
            "xgrid_migrations_total 4",
            "# TYPE xgrid_dispatch_latency_seconds histogram",
            "xgrid_dispatch_latency_seconds_bucket{le=\"0.1\"} 1",
            "xgrid_dispatch_latency_seconds_bucket{le=\"1\"} 1",
            "xgrid_dispatch_latency_seconds_bucket{le=\"+Inf\"} 2",
            "xgrid_dispatch_latency_seconds_sum 2.52",
            "xgrid_dispatch_latency_seconds_count 2",
        ] {
            assert!(lines.contains(&expected), "missing {expected:?} in\n{text}");
        }
        // Each metric has exactly one HELP and one TYPE line, before its samples.
        assert_eq!(text.matches("# HELP ").count(), 5);
        assert_eq!(text.matches("# TYPE ").count(), 5);
        assert!(text.ends_with('\n'));
    }
}
