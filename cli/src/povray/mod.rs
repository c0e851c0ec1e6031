//! `xgrid-povray`: renders a POV-Ray scene as one Xgrid job. The image is cut into tiles
//! (or an animation into frames), each task runs the agent's POV-Ray on its piece, and the
//! pieces come back to be assembled into a picture identical to a single render.
//!
//! Everything local happens before the connection: the command line is read, the files the
//! scene reads are found (include files, image maps, fonts, data files; a missing one stops
//! the run with nothing submitted), and the job is built.

pub mod options;
pub mod plan;
pub mod render;
pub mod scene;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use xgrid_protocol::messages::JobSubmission;

use crate::client::{Client, ConnectionSettings};
use crate::error::{CliError, EXIT_DATA, EXIT_NO_INPUT, EXIT_PROTOCOL, EXIT_REFUSED, EXIT_USAGE};

use options::{OutputFormat, Parsed};

/// Every way a render can fail, in words the user can act on.
#[derive(Debug, thiserror::Error)]
pub enum PovrayError {
    #[error("{0} (see xgrid-povray -help)")]
    Usage(#[from] options::UsageError),
    #[error("{0}")]
    Cli(#[from] CliError),
    #[error("{}: the scene's file name must be valid UTF-8 to travel in a job", .0.display())]
    BadScene(PathBuf),
    #[error("{file}:{line}: {directive} \"{name}\": no such file beside the scene, among POV-Ray's standard includes or in a +L directory; nothing was submitted")]
    MissingFile {
        file: String,
        line: usize,
        /// How the scene names it: `#include`, `png`, `ttf`, `#fopen`...
        directive: String,
        name: String,
    },
    #[error("{file}:{line}: {directive} \"{name}\" climbs out of the scene's directory; move the file beside the scene")]
    FileOutside {
        file: String,
        line: usize,
        directive: String,
        name: String,
    },
    #[error("a PPM file has no alpha channel: write a .png, or leave out +UA")]
    AlphaInPpm,
    #[error("{piece} failed: {detail}")]
    PieceFailed { piece: String, detail: String },
    #[error("the image of {piece} cannot be read: {reason}")]
    BadPiece { piece: String, reason: String },
    #[error("interrupted: job {job} was stopped and deleted")]
    Interrupted { job: String },
    #[error("interrupted while fetching the pieces of job {job}, which is over and kept (xgrid -job results -id {job} -out DIR fetches them)")]
    InterruptedJobKept { job: String },
    #[error("interrupted, but job {job} could not be deleted ({reason}); stop it with: xgrid -job delete -id {job}")]
    InterruptedJobLeft { job: String, reason: String },
}

/// The exit status after an interrupt: 128 + SIGINT, as a shell reports it.
pub const EXIT_INTERRUPTED: u8 = 130;

impl PovrayError {
    /// The exit status, with `xgrid`'s meanings (see [`crate::error`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            PovrayError::Usage(_) | PovrayError::AlphaInPpm => EXIT_USAGE,
            PovrayError::Cli(e) => e.exit_code(),
            PovrayError::BadScene(_) | PovrayError::MissingFile { .. } => EXIT_NO_INPUT,
            PovrayError::FileOutside { .. } => EXIT_DATA,
            PovrayError::PieceFailed { .. } => EXIT_REFUSED,
            PovrayError::BadPiece { .. } => EXIT_PROTOCOL,
            PovrayError::Interrupted { .. }
            | PovrayError::InterruptedJobKept { .. }
            | PovrayError::InterruptedJobLeft { .. } => EXIT_INTERRUPTED,
        }
    }
}

/// Run `xgrid-povray` with `args` (without the program name), reading environment variables
/// through `env`. Prints any failure as `xgrid-povray: <message>`; returns the exit status.
pub fn main_with(
    args: impl IntoIterator<Item = OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> u8 {
    match run(args, env) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("xgrid-povray: {e}");
            e.exit_code()
        }
    }
}

pub fn run(
    args: impl IntoIterator<Item = OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), PovrayError> {
    let words = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<String>>();
    let arguments = match options::parse(&words)? {
        Parsed::Help => {
            print!("{}", options::USAGE);
            return Ok(());
        }
        Parsed::Run(arguments) => arguments,
    };
    if arguments.format == OutputFormat::Ppm && arguments.render.alpha {
        return Err(PovrayError::AlphaInPpm);
    }
    let scene = scene::collect(
        &arguments.scene,
        &[Path::new(scene::STANDARD_INCLUDES)],
        &arguments.library,
    )?;
    for warning in &scene.warnings {
        eprintln!("xgrid-povray: warning: {warning}");
    }
    let settings = ConnectionSettings::resolve(&arguments.connection, env)?;
    let pieces = plan::pieces(&arguments.render, arguments.tiles);
    let name = format!("xgrid-povray {}", scene.scene);
    let specification =
        plan::job_specification(&name, &scene, &pieces, &arguments.render, &arguments.povray);
    let job = render::Render {
        submission: JobSubmission {
            job_specification: specification,
            grid_identifier: arguments.grid.clone(),
        },
        pieces,
        width: arguments.render.width,
        height: arguments.render.height,
        alpha: arguments.render.alpha,
        frames: arguments.render.frames,
        output: arguments.output.clone(),
        format: arguments.format,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::System {
            what: "start the async runtime",
            source,
        })?;
    let written = runtime.block_on(async {
        let mut client = Client::connect(&settings).await?;
        let outcome = render::run(&mut client, job).await;
        client.close().await;
        outcome
    })?;
    for path in written {
        eprintln!("xgrid-povray: wrote {}", path.display());
    }
    Ok(())
}
