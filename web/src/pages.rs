//! The dashboard's pages, rendered on the server. Every string that came from a user or an
//! agent goes through `Esc`; rows carry `id`/`data-field` hooks the live script updates.

use std::fmt::Write;

use crate::html::{self, date, duration, elapsed, state_class, Esc};
use crate::view::{
    AgentState, AgentView, GridStatus, GridSummary, JobAction, JobDetail, JobStatus, JobSummary,
    MigrationView, UsageSample,
};

/// Which navigation tab is lit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Agents,
    Jobs,
    Migrations,
    None,
}

/// Per-request facts every page needs.
#[derive(Debug, Clone)]
pub struct Chrome<'a> {
    /// The form token to embed (empty: the reader may not act, so forms are left out).
    pub csrf: &'a str,
    /// Show the log-out button.
    pub logged_in: bool,
}

/// The page around `body`.
pub fn layout(title: &str, tab: Tab, chrome: &Chrome<'_>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"csrf\" content=\"{}\"><link rel=\"icon\" href=\"data:,\">\
         <title>{} · Xgrid</title><link rel=\"stylesheet\" href=\"/static/app.css\">\
         <script src=\"/static/app.js\" defer></script></head><body>\
         <header class=\"top\"><a class=\"brand\" href=\"/\"><span class=\"logo\">▦</span> Xgrid</a>",
        Esc(chrome.csrf),
        Esc(title)
    );
    // Pages without a form token (login, errors) stand outside the dashboard: no nav.
    let inside = !chrome.csrf.is_empty();
    out.push_str("<nav>");
    for (t, href, label) in [
        (Tab::Overview, "/", "Overview"),
        (Tab::Agents, "/agents", "Agents"),
        (Tab::Jobs, "/jobs", "Jobs"),
        (Tab::Migrations, "/migrations", "Migrations"),
    ] {
        if inside {
            let class = if t == tab { " class=\"active\"" } else { "" };
            let _ = write!(out, "<a href=\"{href}\"{class}>{label}</a>");
        }
    }
    out.push_str("</nav>");
    if inside {
        out.push_str("<span class=\"live\" id=\"live\" title=\"live updates\">offline</span>");
    }
    if chrome.logged_in {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/logout\" class=\"logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Log out</button></form>",
            Esc(chrome.csrf)
        );
    }
    out.push_str("</header><main>");
    out.push_str(body);
    out.push_str("</main></body></html>\n");
    out
}

/// A message box above a page's content (`?error=` after a refused action).
pub fn notice(out: &mut String, error: Option<&str>) {
    if let Some(error) = error.filter(|e| !e.is_empty()) {
        let _ = write!(
            out,
            "<div class=\"notice error\" role=\"alert\">{}</div>",
            Esc(error)
        );
    }
}

fn badge(out: &mut String, state: &str) {
    let _ = write!(
        out,
        "<span class=\"badge {}\" data-field=\"status\">{}</span>",
        state_class(state),
        Esc(state)
    );
}

fn job_state_label(j: &JobSummary) -> String {
    if j.suspended {
        format!("{} (suspended)", j.status)
    } else {
        j.status.to_string()
    }
}

fn job_badge(out: &mut String, j: &JobSummary) {
    let class = if j.suspended {
        "suspended".to_owned()
    } else {
        state_class(j.status.as_str())
    };
    let _ = write!(
        out,
        "<span class=\"badge {class}\" data-field=\"status\">{}</span>",
        Esc(&job_state_label(j))
    );
}

fn progress(out: &mut String, percent: f64) {
    let p = if percent.is_finite() {
        percent.clamp(0.0, 100.0)
    } else {
        0.0
    };
    let _ = write!(
        out,
        "<div class=\"progress\" data-field=\"progress\" title=\"{p:.0}% done\">\
         <div class=\"bar\" style=\"width:{p:.1}%\"></div><span>{p:.0}%</span></div>"
    );
}

/// The actions that make sense for a job in its current state.
fn actions_for(j: &JobSummary) -> Vec<(JobAction, &'static str)> {
    let active = matches!(
        j.status,
        JobStatus::Pending | JobStatus::Prepared | JobStatus::Running
    );
    let mut list = Vec::new();
    if active {
        list.push((JobAction::Cancel, "Stop"));
        if j.suspended {
            list.push((JobAction::Resume, "Resume"));
        } else {
            list.push((JobAction::Suspend, "Suspend"));
        }
    }
    list.push((JobAction::Restart, "Restart"));
    list.push((JobAction::Remove, "Delete"));
    list
}

fn job_actions(out: &mut String, j: &JobSummary, csrf: &str, back: &str) {
    if csrf.is_empty() {
        return;
    }
    out.push_str("<div class=\"actions\" data-field=\"actions\">");
    for (action, label) in actions_for(j) {
        let danger = if matches!(action, JobAction::Remove | JobAction::Cancel) {
            " danger"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/jobs/{}/{}\"><input type=\"hidden\" name=\"csrf\" \
             value=\"{}\"><input type=\"hidden\" name=\"back\" value=\"{back}\">\
             <button class=\"small{danger}\" type=\"submit\">{label}</button></form>",
            j.id,
            action.as_str(),
            Esc(csrf)
        );
    }
    out.push_str("</div>");
}

pub fn overview(
    grids: &[GridSummary],
    agents: &[AgentView],
    jobs: &[JobSummary],
    usage: &[UsageSample],
) -> String {
    let mut out = String::new();
    let available = agents
        .iter()
        .filter(|a| a.state == AgentState::Available)
        .count();
    let cores: u32 = agents
        .iter()
        .filter(|a| a.state != AgentState::Offline)
        .map(|a| a.cores)
        .sum();
    let running_jobs = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Running)
        .count();
    let running_tasks: u32 = agents.iter().map(|a| a.running_tasks).sum();
    out.push_str("<h1>Overview</h1><section class=\"tiles\">");
    for (figure, label) in [
        (
            format!("{available} / {}", agents.len()),
            "agents available",
        ),
        (cores.to_string(), "cores online"),
        (running_jobs.to_string(), "jobs running"),
        (running_tasks.to_string(), "tasks running"),
    ] {
        let _ = write!(
            out,
            "<div class=\"tile\"><div class=\"figure\">{figure}</div><div class=\"label\">{label}</div></div>"
        );
    }
    out.push_str("</section><section class=\"card\"><h2>Grid CPU in use</h2>");
    let busy: Vec<f64> = usage.iter().map(|u| u.cores_busy).collect();
    let total: Vec<f64> = usage.iter().map(|u| f64::from(u.cores_total)).collect();
    html::usage_chart(&mut out, &busy, &total);
    let now = usage.last().map(|u| u.cores_busy).unwrap_or(0.0);
    let of = usage.last().map(|u| u.cores_total).unwrap_or(0);
    let span = match (usage.first(), usage.last()) {
        (Some(first), Some(last)) => {
            html::elapsed(Some(first.at), Some(last.at)).map(|d| format!(" · last {}", duration(d)))
        }
        _ => None,
    };
    let _ = write!(
        out,
        "<p class=\"legend\"><span class=\"key busy\"></span> cores busy \
         <span class=\"key total\"></span> cores available{} · now \
         <strong id=\"usage-now\">{now:.1} of {of}</strong></p></section>",
        span.unwrap_or_default()
    );
    out.push_str("<h2>Grids</h2><section class=\"cards\">");
    for g in grids {
        let status_class = match g.status {
            GridStatus::Working => "running",
            GridStatus::Idle => "idle",
        };
        let _ = write!(
            out,
            "<article class=\"card grid\"><h3>{}{}</h3><span class=\"badge {status_class}\">{}</span>\
             <dl><dt>Agents</dt><dd>{}</dd><dt>Jobs</dt><dd>{}</dd><dt>Identifier</dt><dd>{}</dd></dl></article>",
            Esc(&g.name),
            if g.is_default { " <small>default</small>" } else { "" },
            g.status,
            g.agent_count,
            g.job_count,
            g.id
        );
    }
    if grids.is_empty() {
        out.push_str("<p class=\"muted\">No grids.</p>");
    }
    out.push_str("</section>");
    out
}

fn yes_no(out: &mut String, field: &str, yes: bool) {
    let _ = write!(
        out,
        "<td data-field=\"{field}\" class=\"{}\">{}</td>",
        if yes { "yes" } else { "no" },
        if yes { "yes" } else { "no" }
    );
}

pub fn agents(agents: &[AgentView]) -> String {
    let mut out = String::from(
        "<h1>Agents</h1><section class=\"card\"><table id=\"agents\"><thead><tr><th>Name</th>\
         <th>State</th><th class=\"num\">Cores</th><th class=\"num\">MHz</th><th>Load</th>\
         <th class=\"num\">Running tasks</th><th>Owner present</th><th>Can checkpoint</th>\
         </tr></thead><tbody>",
    );
    for a in agents {
        let _ = write!(
            out,
            "<tr id=\"agent-{}\"><td>{}</td><td>",
            a.id,
            Esc(&a.name)
        );
        badge(&mut out, a.state.as_str());
        let _ = write!(
            out,
            "</td><td class=\"num\" data-field=\"cores\">{}</td><td class=\"num\" data-field=\"mhz\">{}</td>\
             <td class=\"load\"><span data-field=\"load\">{:.2}</span>",
            a.cores, a.mhz, a.load
        );
        html::sparkline(&mut out, &a.recent_load, a.cores);
        let _ = write!(
            out,
            "</td><td class=\"num\" data-field=\"running\">{}</td>",
            a.running_tasks
        );
        yes_no(&mut out, "ownerPresent", a.owner_present);
        yes_no(&mut out, "canCheckpoint", a.can_checkpoint);
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    if agents.is_empty() {
        out.push_str("<p class=\"muted\">No agent has connected yet.</p>");
    }
    out.push_str("</section>");
    out
}

fn job_row(out: &mut String, j: &JobSummary, csrf: &str) {
    let _ = write!(
        out,
        "<tr id=\"job-{id}\"><td class=\"num\"><a href=\"/jobs/{id}\">{id}</a></td>\
         <td><a href=\"/jobs/{id}\" data-field=\"name\">{}</a></td><td>",
        Esc(&j.name),
        id = j.id
    );
    job_badge(out, j);
    out.push_str("</td><td>");
    progress(out, j.percent_done);
    let t = &j.tasks;
    let _ = write!(
        out,
        "</td><td data-field=\"tasks\">{} / {} done{}{}</td><td>",
        t.finished,
        t.total,
        if t.running > 0 {
            format!(", {} running", t.running)
        } else {
            String::new()
        },
        if t.failed > 0 {
            format!(", <span class=\"bad\">{} failed</span>", t.failed)
        } else {
            String::new()
        }
    );
    date(out, j.submitted);
    out.push_str("</td><td data-field=\"took\">");
    match elapsed(j.started, j.finished) {
        Some(d) => out.push_str(&duration(d)),
        None => out.push_str("<span class=\"muted\">–</span>"),
    }
    out.push_str("</td><td>");
    job_actions(out, j, csrf, "list");
    out.push_str("</td></tr>");
}

pub fn jobs(jobs: &[JobSummary], grids: &[GridSummary], csrf: &str) -> String {
    let mut out = String::from("<h1>Jobs</h1>");
    if !csrf.is_empty() {
        let _ = write!(
            out,
            "<details class=\"card submit\"><summary>Submit a job</summary>\
             <form method=\"post\" action=\"/jobs\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <label>Name <input name=\"name\" placeholder=\"my job\"></label>\
             <label>Command <input name=\"command\" required placeholder=\"/usr/bin/cal\"></label>\
             <label>Arguments, one per line <textarea name=\"arguments\" rows=\"3\"></textarea></label>",
            Esc(csrf)
        );
        // A choice only when there is one to make; otherwise the default grid.
        if grids.len() > 1 {
            out.push_str("<label>Grid <select name=\"grid\">");
            for g in grids {
                let selected = if g.is_default { " selected" } else { "" };
                let _ = write!(
                    out,
                    "<option value=\"{}\"{selected}>{}</option>",
                    g.id,
                    Esc(&g.name)
                );
            }
            out.push_str("</select></label>");
        }
        out.push_str("<button type=\"submit\">Submit</button></form></details>");
    }
    out.push_str(
        "<section class=\"card\"><table id=\"jobs\"><thead><tr><th class=\"num\">Id</th>\
         <th>Name</th><th>Status</th><th>Progress</th><th>Tasks</th><th>Submitted (UTC)</th>\
         <th>Took</th><th></th></tr></thead><tbody>",
    );
    for j in jobs {
        job_row(&mut out, j, csrf);
    }
    out.push_str("</tbody></table>");
    if jobs.is_empty() {
        out.push_str("<p class=\"muted\" id=\"no-jobs\">No jobs yet.</p>");
    }
    out.push_str("</section>");
    out
}

pub fn job(detail: &JobDetail, csrf: &str) -> String {
    let j = &detail.summary;
    let mut out = String::new();
    let _ = write!(
        out,
        "<p class=\"crumbs\"><a href=\"/jobs\">Jobs</a> ›</p><h1>{} <small>#{}</small></h1>",
        Esc(&j.name),
        j.id,
    );
    // Outside the parts the live layer swaps in, so the picture is not fetched again on
    // every change; app.js loads it again when a tile has finished.
    if let Some(size) = detail.picture {
        let _ = write!(
            out,
            "<section class=\"card picture\"><img id=\"job-picture\" src=\"/jobs/{id}/image.png?done={done}\" \
             width=\"{w}\" height=\"{h}\" data-job=\"{id}\" data-done=\"{done}\" \
             alt=\"The picture so far: {done} of {total} tiles\"></section>",
            id = j.id,
            done = j.tasks.finished,
            total = j.tasks.total,
            w = size.width,
            h = size.height,
        );
    }
    let _ = write!(
        out,
        "<div id=\"job-parts\"><section class=\"card job\" id=\"job-{}\"><div class=\"job-head\">",
        j.id
    );
    job_badge(&mut out, j);
    progress(&mut out, j.percent_done);
    job_actions(&mut out, j, csrf, "job");
    out.push_str("</div><dl class=\"facts\"><dt>Submitted (UTC)</dt><dd>");
    date(&mut out, j.submitted);
    out.push_str("</dd><dt>Started</dt><dd>");
    date(&mut out, j.started);
    out.push_str("</dd><dt>Finished</dt><dd>");
    date(&mut out, j.finished);
    let t = &j.tasks;
    let _ = write!(
        out,
        "</dd><dt>Tasks</dt><dd data-field=\"tasks\">{} total: {} pending, {} running, {} finished, {} failed</dd></dl></section>",
        t.total, t.pending, t.running, t.finished, t.failed
    );
    out.push_str(
        "<h2>Tasks</h2><section class=\"card\"><table><thead><tr><th>Task</th><th>State</th>\
         <th>Agent</th><th>Started (UTC)</th><th>Finished (UTC)</th><th>Took</th><th class=\"num\">Exit</th>\
         </tr></thead><tbody>",
    );
    for task in &detail.tasks {
        let _ = write!(out, "<tr><td>{}</td><td>", Esc(&task.name));
        badge(&mut out, &task.state);
        let _ = write!(
            out,
            "</td><td>{}</td><td>",
            task.agent
                .as_deref()
                .map(Esc)
                .map(|e| e.to_string())
                .unwrap_or_else(|| "–".into())
        );
        date(&mut out, task.started);
        out.push_str("</td><td>");
        date(&mut out, task.finished);
        out.push_str("</td><td>");
        match elapsed(task.started, task.finished) {
            Some(d) => out.push_str(&duration(d)),
            None => out.push('–'),
        }
        let exit = task
            .exit_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "–".into());
        let _ = write!(out, "</td><td class=\"num\">{exit}</td></tr>");
    }
    out.push_str("</tbody></table></section>");
    let with_output: Vec<_> = detail
        .tasks
        .iter()
        .filter(|t| !t.stdout.is_empty() || !t.stderr.is_empty())
        .collect();
    if !with_output.is_empty() {
        out.push_str("<h2>Output</h2>");
        for task in with_output {
            let _ = write!(
                out,
                "<section class=\"card output\"><h3>Task {}</h3>",
                Esc(&task.name)
            );
            for (label, text, class) in [
                ("Standard output", &task.stdout, "stdout"),
                ("Standard error", &task.stderr, "stderr"),
            ] {
                if !text.is_empty() {
                    let _ = write!(
                        out,
                        "<details open><summary>{label}</summary><pre class=\"{class}\">{}</pre></details>",
                        Esc(text)
                    );
                }
            }
            out.push_str("</section>");
        }
    }
    if !detail.outputs.is_empty() {
        out.push_str("<h2>Files</h2><section class=\"card\"><ul class=\"files\">");
        for f in &detail.outputs {
            let href = format!(
                "/jobs/{}/files/{}/{}",
                j.id,
                percent_encode(&f.task),
                f.path
                    .split('/')
                    .map(percent_encode)
                    .collect::<Vec<_>>()
                    .join("/")
            );
            let _ = write!(
                out,
                "<li><a href=\"{}\" download>{}</a> <span class=\"muted\">task {} · {} bytes</span></li>",
                Esc(&href),
                Esc(&f.path),
                Esc(&f.task),
                f.size
            );
        }
        out.push_str("</ul></section>");
    }
    out.push_str("</div>");
    out
}

/// Percent-encoding of one path segment: everything but unreserved characters, and the
/// dots of `.` and `..` too, which a browser would otherwise resolve away.
pub fn percent_encode(segment: &str) -> String {
    if segment == "." || segment == ".." {
        return segment.replace('.', "%2E");
    }
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub fn migrations(list: &[MigrationView]) -> String {
    let mut out = String::from(
        "<h1>Migrations</h1><section class=\"card\"><table id=\"migrations\"><thead><tr>\
         <th>When (UTC)</th><th>Job</th><th>Task</th><th>From</th><th></th><th>To</th><th>Reason</th>\
         <th class=\"num\">Frozen</th></tr></thead><tbody>",
    );
    for m in list {
        out.push_str("<tr><td>");
        date(&mut out, Some(m.at));
        let _ = write!(
            out,
            "</td><td><a href=\"/jobs/{job}\">{job}</a></td><td>{}</td><td>{}</td>\
             <td class=\"arrow\">→</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            Esc(&m.task),
            Esc(&m.from),
            Esc(&m.to),
            Esc(&m.reason),
            duration(m.frozen),
            job = m.job
        );
    }
    out.push_str("</tbody></table>");
    if list.is_empty() {
        out.push_str("<p class=\"muted\" id=\"no-migrations\">No task has moved yet.</p>");
    }
    out.push_str("</section>");
    out
}

pub fn login(wrong: bool) -> String {
    let mut out = String::from(
        "<section class=\"card login\"><h1>Log in</h1><p>This grid's controller has a client \
         password.</p>",
    );
    if wrong {
        out.push_str("<div class=\"notice error\" role=\"alert\">Wrong password.</div>");
    }
    out.push_str(
        "<form method=\"post\" action=\"/login\"><label>Password \
         <input type=\"password\" name=\"password\" autocomplete=\"current-password\" autofocus required></label>\
         <button type=\"submit\">Log in</button></form></section>",
    );
    out
}

/// A page for a failure, with the reason in words.
pub fn problem(title: &str, detail: &str) -> String {
    format!(
        "<section class=\"card\"><h1>{}</h1><p>{}</p><p><a href=\"/\">Back to the overview</a></p></section>",
        Esc(title),
        Esc(detail)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::TaskCounts;

    fn summary(status: JobStatus, suspended: bool) -> JobSummary {
        JobSummary {
            id: 3,
            name: "j".into(),
            grid: 0,
            status,
            suspended,
            tasks: TaskCounts::default(),
            percent_done: 0.0,
            submitted: None,
            started: None,
            finished: None,
        }
    }

    #[test]
    fn actions_follow_the_job_state() {
        let labels = |j: &JobSummary| actions_for(j).iter().map(|(_, l)| *l).collect::<Vec<_>>();
        assert_eq!(
            labels(&summary(JobStatus::Running, false)),
            ["Stop", "Suspend", "Restart", "Delete"]
        );
        assert_eq!(
            labels(&summary(JobStatus::Running, true)),
            ["Stop", "Resume", "Restart", "Delete"]
        );
        assert_eq!(
            labels(&summary(JobStatus::Finished, false)),
            ["Restart", "Delete"]
        );
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(percent_encode("a b/<c>.txt"), "a%20b%2F%3Cc%3E.txt");
        assert_eq!(percent_encode(".."), "%2E%2E");
        assert_eq!(percent_encode("..a"), "..a");
    }

    #[test]
    fn readers_without_a_form_token_see_no_forms() {
        let page = jobs(&[summary(JobStatus::Running, false)], &[], "");
        assert!(!page.contains("<form"));
        let page = jobs(&[summary(JobStatus::Running, false)], &[], "tok");
        assert!(page.contains("action=\"/jobs/3/suspend\""));
        assert!(page.contains("name=\"csrf\" value=\"tok\""));
    }
}
