//! Live events as the dashboard script reads them: an SSE event name and a small JSON
//! object, written by hand (the handful of shapes does not justify a serializer).

use std::fmt::Write;

use crate::view::{AgentView, Date, GridEvent, JobSummary, MigrationView, UsageSample};

/// A JSON object under construction.
struct Object(String);

impl Object {
    fn new() -> Object {
        Object(String::from("{"))
    }

    fn key(&mut self, key: &str) -> &mut String {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        string(&mut self.0, key);
        self.0.push(':');
        &mut self.0
    }

    fn str(mut self, key: &str, value: &str) -> Object {
        string(self.key(key), value);
        self
    }

    fn num(mut self, key: &str, value: f64) -> Object {
        let out = self.key(key);
        if value.is_finite() {
            let _ = write!(out, "{value}");
        } else {
            out.push_str("null");
        }
        self
    }

    fn bool(mut self, key: &str, value: bool) -> Object {
        self.key(key).push_str(if value { "true" } else { "false" });
        self
    }

    fn date(mut self, key: &str, value: Option<Date>) -> Object {
        match value {
            Some(d) => string(self.key(key), &d.to_iso8601()),
            None => self.key(key).push_str("null"),
        }
        self
    }

    fn nums(mut self, key: &str, values: &[f64]) -> Object {
        let out = self.key(key);
        out.push('[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if v.is_finite() {
                let _ = write!(out, "{v}");
            } else {
                out.push_str("null");
            }
        }
        out.push(']');
        self
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// A JSON string literal. `<`, `>` and `&` are escaped too, and so are the two line
/// separators JavaScript once refused, so the text is inert wherever it lands.
fn string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn job(j: &JobSummary) -> String {
    Object::new()
        .num("id", j.id as f64)
        .str("name", &j.name)
        .num("grid", j.grid as f64)
        .str("status", j.status.as_str())
        .bool("suspended", j.suspended)
        .num("total", f64::from(j.tasks.total))
        .num("pending", f64::from(j.tasks.pending))
        .num("running", f64::from(j.tasks.running))
        .num("finished", f64::from(j.tasks.finished))
        .num("failed", f64::from(j.tasks.failed))
        .num("percent", j.percent_done)
        .date("submitted", j.submitted)
        .date("started", j.started)
        .date("finishedAt", j.finished)
        .finish()
}

fn agent(a: &AgentView) -> String {
    Object::new()
        .num("id", a.id as f64)
        .str("name", &a.name)
        .str("state", a.state.as_str())
        .num("cores", f64::from(a.cores))
        .num("mhz", f64::from(a.mhz))
        .num("load", a.load)
        .num("running", f64::from(a.running_tasks))
        .bool("ownerPresent", a.owner_present)
        .bool("canCheckpoint", a.can_checkpoint)
        .nums("recentLoad", &a.recent_load)
        .finish()
}

fn migration(m: &MigrationView) -> String {
    Object::new()
        .date("at", Some(m.at))
        .num("job", m.job as f64)
        .str("task", &m.task)
        .str("from", &m.from)
        .str("to", &m.to)
        .str("reason", &m.reason)
        .num("frozenMs", m.frozen.as_millis() as f64)
        .str("frozen", &crate::html::duration(m.frozen))
        .finish()
}

fn usage(u: &UsageSample) -> String {
    Object::new()
        .date("at", Some(u.at))
        .num("busy", u.cores_busy)
        .num("total", f64::from(u.cores_total))
        .finish()
}

/// The SSE event name and JSON data for one grid event.
pub fn event(e: &GridEvent) -> (&'static str, String) {
    match e {
        GridEvent::Job(j) => ("job", job(j)),
        GridEvent::JobRemoved(id) => ("job-removed", Object::new().num("id", *id as f64).finish()),
        GridEvent::Agent(a) => ("agent", agent(a)),
        GridEvent::Migration(m) => ("migration", migration(m)),
        GridEvent::Usage(u) => ("usage", usage(u)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::AgentState;

    #[test]
    fn strings_escape_quotes_controls_and_markup() {
        let mut out = String::new();
        string(&mut out, "a\"b\\c\nd\u{1}<e>&\u{2028}");
        assert_eq!(out, r#""a\"b\\c\nd\u0001\u003ce\u003e\u0026\u2028""#);
    }

    #[test]
    fn an_agent_event_carries_every_field() {
        let a = AgentView {
            id: 7,
            name: "mac\"mini".into(),
            state: AgentState::Available,
            cores: 4,
            mhz: 2400,
            load: 1.5,
            running_tasks: 2,
            owner_present: false,
            can_checkpoint: true,
            recent_load: vec![0.5, f64::NAN],
        };
        let (name, data) = event(&GridEvent::Agent(a));
        assert_eq!(name, "agent");
        assert_eq!(
            data,
            r#"{"id":7,"name":"mac\"mini","state":"Available","cores":4,"mhz":2400,"load":1.5,"running":2,"ownerPresent":false,"canCheckpoint":true,"recentLoad":[0.5,null]}"#
        );
        assert!(!data.contains('\n'), "one SSE data line");
    }

    #[test]
    fn a_removed_job_is_its_id() {
        assert_eq!(
            event(&GridEvent::JobRemoved(42)),
            ("job-removed", r#"{"id":42}"#.into())
        );
    }
}
