//! The progress bar `-job wait` draws on standard error while a job runs, only when standard
//! error is a terminal (a log file gets no carriage-return noise).

use std::io::{self, IsTerminal, Write};

use xgrid_protocol::messages::JobAttributes;

/// Characters between the brackets.
const BAR_WIDTH: usize = 30;

/// One line: `[#########.....................]  30%  3/10 tasks  Running`.
pub fn render(attributes: &JobAttributes) -> String {
    let percent = if attributes.percent_done.is_finite() {
        attributes.percent_done.clamp(0.0, 100.0)
    } else {
        0.0
    };
    // Whole cells only, rounded down, so the bar is full only at 100%.
    let filled = ((percent / 100.0) * BAR_WIDTH as f64).floor() as usize;
    let filled = filled.min(BAR_WIDTH);
    let total = attributes.task_count.max(0);
    let done = (total - attributes.undone_task_count.max(0)).clamp(0, total);
    let mut status = attributes.job_status.to_string();
    if attributes.suspended {
        status.push_str(" (suspended)");
    }
    format!(
        "[{}{}] {:>3.0}%  {done}/{total} tasks  {status}",
        "#".repeat(filled),
        ".".repeat(BAR_WIDTH - filled),
        percent.floor(),
    )
}

/// Draws [`render`] lines over each other on standard error.
#[derive(Debug)]
pub struct ProgressBar {
    enabled: bool,
    /// Length of the line on screen, to blank what a shorter line leaves behind.
    drawn: usize,
}

impl ProgressBar {
    /// A bar that draws only if standard error is a terminal.
    pub fn on_stderr() -> ProgressBar {
        ProgressBar {
            enabled: io::stderr().is_terminal(),
            drawn: 0,
        }
    }

    pub fn show(&mut self, attributes: &JobAttributes) {
        if !self.enabled {
            return;
        }
        let line = render(attributes);
        let pad = self.drawn.saturating_sub(line.len());
        let mut err = io::stderr().lock();
        let _ = write!(err, "\r{line}{}", " ".repeat(pad));
        let _ = err.flush();
        self.drawn = line.len();
    }

    /// End the bar's line so what follows starts on its own.
    pub fn finish(&mut self) {
        if self.enabled && self.drawn > 0 {
            let _ = writeln!(io::stderr());
            self.drawn = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xgrid_protocol::messages::JobStatus;
    use xgrid_protocol::plist::Date;

    fn attributes(percent: f64, count: i64, undone: i64, status: JobStatus) -> JobAttributes {
        JobAttributes {
            name: "job".into(),
            application_identifier: None,
            job_status: status,
            error: None,
            active_cpu_power: 0.0,
            date_now: Date(0.0),
            date_submitted: None,
            date_started: None,
            date_stopped: None,
            task_count: count,
            undone_task_count: undone,
            percent_done: percent,
            suspended: false,
        }
    }

    #[test]
    fn bar_percent_and_tasks() {
        assert_eq!(
            render(&attributes(30.0, 10, 7, JobStatus::Running)),
            "[#########.....................]  30%  3/10 tasks  Running"
        );
        assert_eq!(
            render(&attributes(100.0, 4, 0, JobStatus::Finished)),
            "[##############################] 100%  4/4 tasks  Finished"
        );
        assert_eq!(
            render(&attributes(99.9, 1, 1, JobStatus::Running)),
            "[#############################.]  99%  0/1 tasks  Running"
        );
    }

    #[test]
    fn nonsense_values_stay_in_range() {
        let mut odd = attributes(250.0, 3, 9, JobStatus::Pending);
        odd.suspended = true;
        assert_eq!(
            render(&odd),
            "[##############################] 100%  0/3 tasks  Pending (suspended)"
        );
        assert_eq!(
            render(&attributes(f64::NAN, -1, -5, JobStatus::Pending)),
            "[..............................]   0%  0/0 tasks  Pending"
        );
    }
}
