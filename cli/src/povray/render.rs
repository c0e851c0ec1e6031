//! Running the render on the grid: submit the job, follow it with a progress display until
//! it ends, fetch the pieces (`jobFinalResults`), and put the picture together.
//!
//! The job's attributes are subscribed to; when no notification comes for a while they are
//! fetched directly, in case a controller ignores the subscription.
//!
//! An interrupt (Ctrl-C, or SIGTERM) while the job runs deletes the job, which stops its
//! tasks: nobody would assemble its pieces otherwise, and they would hold the agents for
//! nothing. The handlers are in place before the submission, so an interrupt that comes
//! while the job is being submitted still finds it.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use xgrid_protocol::envelope::MessageType;
use xgrid_protocol::messages::{
    ClientNotification, ClientRequest, ControllerReply, JobAction, JobAttributes,
    JobControlRequest, JobQuery, JobStatus, JobSubmission, Subscription, TaskOutputs,
};
use xgrid_protocol::peer::PeerError;

use crate::client::Client;
use crate::error::CliError;

use super::options::{Frames, OutputFormat};
use super::plan::Piece;
use super::PovrayError;
use xgrid_image::targa::read_targa;
use xgrid_image::{png, Image};

/// How long to wait for a notification before asking for the job's attributes.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Lines of a failed task's standard error shown to the user.
const ERROR_LINES: usize = 6;

/// What to render and where the result goes.
#[derive(Debug)]
pub struct Render {
    pub submission: JobSubmission,
    pub pieces: Vec<Piece>,
    pub width: usize,
    pub height: usize,
    pub alpha: bool,
    pub frames: Option<Frames>,
    pub output: PathBuf,
    pub format: OutputFormat,
}

/// Submit, wait, assemble, write; returns the files written.
pub async fn run(client: &mut Client, render: Render) -> Result<Vec<PathBuf>, PovrayError> {
    let mut interrupt = Interrupt::listen()?;
    let request = ClientRequest::JobSubmission(render.submission.clone());
    let reply = client.call(&request).await?;
    let job = match ControllerReply::from_payload(request.name(), &reply) {
        Ok(ControllerReply::JobSubmission { job_identifier }) => job_identifier,
        _ => return Err(bad_reply(&request, "it carries no jobIdentifier").into()),
    };
    let unit = if render.frames.is_some() {
        "frames"
    } else {
        "tiles"
    };
    let count = render.pieces.len();
    eprintln!(
        "xgrid-povray: job {job}: {count} {} of {}x{}",
        if count == 1 {
            unit.trim_end_matches('s')
        } else {
            unit
        },
        render.width,
        render.height
    );
    let followed = tokio::select! {
        attributes = follow(client, &job, unit) => Some(attributes),
        () = interrupt.received() => None,
    };
    let Some(attributes) = followed else {
        return Err(delete_job(client, &job, &mut interrupt).await);
    };
    let attributes = attributes?;
    // The job is over: an interrupt now only stops the download, and the job is kept.
    let outputs = tokio::select! {
        outputs = final_results(client, &job) => outputs?,
        () = interrupt.received() => {
            return Err(PovrayError::InterruptedJobKept { job: job.clone() })
        }
    };
    match attributes.job_status {
        JobStatus::Failed | JobStatus::Canceled => {
            // The first piece that failed says more than the job's status.
            check_pieces(client, &job, &render.pieces, &outputs).await?;
            return Err(if attributes.job_status == JobStatus::Failed {
                CliError::JobFailed {
                    job,
                    error: attributes.error,
                }
            } else {
                CliError::JobCanceled { job }
            }
            .into());
        }
        _ => check_pieces(client, &job, &render.pieces, &outputs).await?,
    }
    assemble(&render, &outputs)
}

/// SIGINT and SIGTERM, caught from the moment the job may exist.
struct Interrupt {
    int: Signal,
    term: Signal,
}

impl Interrupt {
    fn listen() -> Result<Interrupt, PovrayError> {
        let catch = |kind| {
            signal(kind).map_err(|source| CliError::System {
                what: "catch interrupts",
                source,
            })
        };
        Ok(Interrupt {
            int: catch(SignalKind::interrupt())?,
            term: catch(SignalKind::terminate())?,
        })
    }

    async fn received(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// Delete the interrupted job (its running tasks are stopped); the error to end with. A
/// second interrupt gives up waiting for the controller.
async fn delete_job(client: &Client, job: &str, interrupt: &mut Interrupt) -> PovrayError {
    if io::stderr().is_terminal() {
        // The progress bar's line is left unfinished.
        eprintln!();
    }
    eprintln!("xgrid-povray: interrupted: deleting job {job}");
    let request = ClientRequest::JobControl(JobControlRequest {
        job_identifier: job.to_string(),
        control: JobAction::Remove,
    });
    let reason = tokio::select! {
        reply = client.call(&request) => match reply {
            Ok(_) => {
                return PovrayError::Interrupted {
                    job: job.to_string(),
                }
            }
            Err(e) => e.to_string(),
        },
        () = interrupt.received() => "interrupted again".to_string(),
    };
    PovrayError::InterruptedJobLeft {
        job: job.to_string(),
        reason,
    }
}

/// Wait for the job to end, showing progress; its final attributes.
async fn follow(
    client: &mut Client,
    job: &str,
    unit: &'static str,
) -> Result<JobAttributes, PovrayError> {
    let subscription = Some(Subscription {
        should_subscribe: true,
        predicate: None,
    });
    let mut attributes = job_attributes(client, job, subscription).await?;
    let mut progress = Progress::on_stderr(unit);
    progress.show(&attributes);
    while !is_over(&attributes) {
        let message = tokio::select! {
            message = client.next_message() => Some(message),
            () = tokio::time::sleep(POLL_INTERVAL) => None,
        };
        match message {
            Some(None) => {
                progress.finish();
                return Err(CliError::Peer(PeerError::ConnectionLost {
                    reason: "the controller ended the connection while the job was running"
                        .to_string(),
                })
                .into());
            }
            Some(Some(envelope)) if envelope.message_type == MessageType::Notification => {
                if let Ok(ClientNotification::JobAttributes {
                    job_identifier,
                    attributes: news,
                }) = ClientNotification::from_envelope(&envelope)
                {
                    if job_identifier == job {
                        attributes = news;
                    }
                }
            }
            Some(Some(_)) => {}
            None => attributes = job_attributes(client, job, None).await?,
        }
        progress.show(&attributes);
    }
    progress.finish();
    Ok(attributes)
}

fn is_over(attributes: &JobAttributes) -> bool {
    matches!(
        attributes.job_status,
        JobStatus::Finished | JobStatus::Failed | JobStatus::Canceled
    )
}

async fn job_attributes(
    client: &Client,
    job: &str,
    subscription: Option<Subscription>,
) -> Result<JobAttributes, PovrayError> {
    let request = ClientRequest::JobAttributes(JobQuery {
        job_identifier: job.to_string(),
        subscription,
    });
    let payload = client.call(&request).await?;
    match ControllerReply::from_payload(request.name(), &payload) {
        Ok(ControllerReply::JobAttributes(attributes)) => Ok(attributes),
        Ok(_) => Err(bad_reply(&request, "the reply has an unexpected shape").into()),
        Err(e) => Err(bad_reply(&request, &e.to_string()).into()),
    }
}

async fn final_results(
    client: &Client,
    job: &str,
) -> Result<BTreeMap<String, TaskOutputs>, PovrayError> {
    let request = ClientRequest::JobFinalResults(JobQuery {
        job_identifier: job.to_string(),
        subscription: None,
    });
    let payload = client.call(&request).await?;
    match ControllerReply::from_payload(request.name(), &payload) {
        Ok(ControllerReply::JobFinalResults(tasks)) => Ok(tasks),
        Ok(_) => Err(bad_reply(&request, "the reply has an unexpected shape").into()),
        Err(e) => Err(bad_reply(&request, &e.to_string()).into()),
    }
}

/// The first piece whose POV-Ray did not succeed becomes an error quoting its stderr.
async fn check_pieces(
    client: &Client,
    job: &str,
    pieces: &[Piece],
    outputs: &BTreeMap<String, TaskOutputs>,
) -> Result<(), PovrayError> {
    let failed = pieces.iter().enumerate().find_map(|(i, piece)| {
        let status = outputs
            .get(&i.to_string())
            .and_then(|t| t.termination_status);
        match status {
            Some(0) => None,
            other => Some((i, *piece, other)),
        }
    });
    let Some((task, piece, status)) = failed else {
        return Ok(());
    };
    let request = ClientRequest::JobResults(JobQuery {
        job_identifier: job.to_string(),
        subscription: None,
    });
    let stderr = match client.call(&request).await {
        Ok(payload) => match ControllerReply::from_payload(request.name(), &payload) {
            Ok(ControllerReply::JobResults(streams)) => streams
                .get(&task.to_string())
                .map(|s| String::from_utf8_lossy(&s.err_data).into_owned())
                .unwrap_or_default(),
            _ => String::new(),
        },
        Err(_) => String::new(),
    };
    let status = match status {
        Some(code) => format!("POV-Ray ended with status {code}"),
        None => "the task did not finish".to_string(),
    };
    Err(PovrayError::PieceFailed {
        piece: describe(piece),
        detail: format!("{status}{}", last_lines(&stderr)),
    })
}

/// The end of a task's standard error, indented under the error line.
fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines
        .get(lines.len().saturating_sub(ERROR_LINES)..)
        .unwrap_or_default();
    tail.iter().map(|l| format!("\n    {l}")).collect()
}

/// "tile 3 (rows 33-48, columns 1-32)" in POV-Ray's 1-based terms, or "frame 7".
pub fn describe(piece: Piece) -> String {
    match piece {
        Piece::Tile(r) => format!(
            "the tile of rows {}-{}, columns {}-{}",
            r.top + 1,
            r.bottom,
            r.left + 1,
            r.right
        ),
        Piece::Frame(n) => format!("frame {n}"),
    }
}

/// Decode every piece; write the picture, or one picture per frame.
fn assemble(
    render: &Render,
    outputs: &BTreeMap<String, TaskOutputs>,
) -> Result<Vec<PathBuf>, PovrayError> {
    let channels = if render.alpha { 4 } else { 3 };
    let mut whole = Image::blank(render.width, render.height, channels);
    let mut written = Vec::new();
    for (task, piece) in render.pieces.iter().enumerate() {
        let bad = |reason: String| PovrayError::BadPiece {
            piece: describe(*piece),
            reason,
        };
        let data = outputs
            .get(&task.to_string())
            .and_then(|t| {
                t.output_files
                    .iter()
                    .find(|(name, _)| name.to_ascii_lowercase().ends_with(".tga"))
            })
            .map(|(_, data)| data)
            .ok_or_else(|| bad("its task returned no image file".to_string()))?;
        let image = read_targa(data).map_err(|e| bad(e.to_string()))?;
        if (image.width, image.height) != (render.width, render.height) {
            return Err(bad(format!(
                "it is {}x{}, not {}x{}",
                image.width, image.height, render.width, render.height
            )));
        }
        match piece {
            Piece::Tile(rect) => whole
                .copy_rect(&image, *rect)
                .map_err(|e| bad(e.to_string()))?,
            Piece::Frame(n) => {
                let digits = render.frames.map_or(1, |f| f.final_frame.to_string().len());
                let path = frame_path(&render.output, *n, digits);
                write_image(&image, &path, render.format)?;
                written.push(path);
            }
        }
    }
    if render.frames.is_none() {
        write_image(&whole, &render.output, render.format)?;
        written.push(render.output.clone());
    }
    Ok(written)
}

/// `dir/anim.png` for frame 7 of 120 → `dir/anim007.png`, POV-Ray's own naming.
pub fn frame_path(output: &Path, frame: u64, digits: usize) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extension = output
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    output.with_file_name(format!("{stem}{frame:0digits$}{extension}"))
}

fn write_image(image: &Image, path: &Path, format: OutputFormat) -> Result<(), PovrayError> {
    let bytes = match format {
        OutputFormat::Png => png::encode(image),
        // Alpha with PPM was refused before submission.
        OutputFormat::Ppm => image.to_ppm().map_err(|_| PovrayError::AlphaInPpm)?,
    };
    std::fs::write(path, bytes).map_err(|e| CliError::write(path, e).into())
}

fn bad_reply(request: &ClientRequest, reason: &str) -> CliError {
    CliError::BadReply {
        request: request.name().to_string(),
        reason: reason.to_string(),
    }
}

/// Pieces done out of all, on standard error: a bar redrawn in place on a terminal, a line
/// per change otherwise (a log gets no carriage returns).
#[derive(Debug)]
struct Progress {
    terminal: bool,
    unit: &'static str,
    last: Option<(i64, i64)>,
    drawn: usize,
}

/// Characters between the bar's brackets.
const BAR_WIDTH: usize = 30;

impl Progress {
    fn on_stderr(unit: &'static str) -> Progress {
        Progress {
            terminal: io::stderr().is_terminal(),
            unit,
            last: None,
            drawn: 0,
        }
    }

    fn show(&mut self, attributes: &JobAttributes) {
        let total = attributes.task_count.max(0);
        let done = (total - attributes.undone_task_count.max(0)).clamp(0, total);
        let mut err = io::stderr().lock();
        if self.terminal {
            let line = format!(
                "{}  {}",
                bar_line(done, total, self.unit),
                attributes.job_status
            );
            let pad = self.drawn.saturating_sub(line.len());
            let _ = write!(err, "\r{line}{}", " ".repeat(pad));
            let _ = err.flush();
            self.drawn = line.len();
        } else if self.last != Some((done, total)) {
            let _ = writeln!(err, "xgrid-povray: {done}/{total} {} rendered", self.unit);
        }
        self.last = Some((done, total));
    }

    fn finish(&mut self) {
        if self.terminal && self.drawn > 0 {
            let _ = writeln!(io::stderr());
            self.drawn = 0;
        }
    }
}

/// `[##########....................] 8/24 tiles`.
fn bar_line(done: i64, total: i64, unit: &str) -> String {
    let filled = if total > 0 {
        (done as usize * BAR_WIDTH) / total as usize
    } else {
        0
    };
    let filled = filled.min(BAR_WIDTH);
    format!(
        "[{}{}] {done}/{total} {unit}",
        "#".repeat(filled),
        ".".repeat(BAR_WIDTH - filled)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use xgrid_image::Rect;

    #[test]
    fn frame_file_names_are_padded_like_povrays() {
        assert_eq!(
            frame_path(Path::new("out/anim.png"), 7, 3),
            PathBuf::from("out/anim007.png")
        );
        assert_eq!(
            frame_path(Path::new("a.ppm"), 12, 1),
            PathBuf::from("a12.ppm")
        );
    }

    #[test]
    fn bar_fills_with_the_pieces_done() {
        assert_eq!(
            bar_line(8, 24, "tiles"),
            "[##########....................] 8/24 tiles"
        );
        assert_eq!(
            bar_line(0, 0, "frames"),
            format!("[{}] 0/0 frames", ".".repeat(30))
        );
        assert_eq!(
            bar_line(4, 4, "frames"),
            format!("[{}] 4/4 frames", "#".repeat(30))
        );
    }

    #[test]
    fn failures_name_the_piece_in_povray_terms() {
        let rect = Rect {
            top: 32,
            left: 0,
            bottom: 48,
            right: 32,
        };
        assert_eq!(
            describe(Piece::Tile(rect)),
            "the tile of rows 33-48, columns 1-32"
        );
        let stderr = "banner\n\nline a\nline b\n";
        assert_eq!(last_lines(stderr), "\n    banner\n    line a\n    line b");
        let long: String = (0..20).map(|i| format!("l{i}\n")).collect();
        assert_eq!(last_lines(&long).lines().count(), ERROR_LINES + 1);
    }
}
