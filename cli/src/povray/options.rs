//! The command line of `xgrid-povray`: the tool's own single-dash words (the `xgrid`
//! connection options, `-o`, `-gid`, `-tiles`), the scene, and POV-Ray options, which are
//! passed on to every task. The few POV-Ray options that decide how the work is split (image
//! size, render block size, animation frames, alpha) are read here; the ones the tool itself
//! sets for each task (input and output files, output format, partial render area) are
//! refused with a word on what to use instead.
//!
//! The tool's words are whole words followed by a value (`-h host`); POV-Ray's switches
//! carry their value attached (`+H240`, `-UA`), so the two never collide.

use std::path::PathBuf;

use crate::args::{AuthMethod, ConnectionArgs};

/// Image size POV-Ray uses when none is given (Debian's `/etc/povray/3.7/povray.ini`). The
/// tool always sends the size, so agents configured otherwise still agree.
pub const DEFAULT_WIDTH: usize = 800;
pub const DEFAULT_HEIGHT: usize = 600;
/// The widest and highest image a Targa file (16-bit sizes) can hold.
pub const MAX_SIDE: usize = 65_535;
/// POV-Ray's default `Render_Block_Size`.
pub const DEFAULT_BLOCK_SIZE: usize = 32;

pub const USAGE: &str = "\
usage: xgrid-povray [-h host[:port]] [-p password] [-auth Password|None] [-gid grid]
                    [-tiles N] scene.pov [POV-Ray options] -o out.png|out.ppm

Renders a POV-Ray scene as one Xgrid job: image tiles, or the frames of an animation
(+KFF), spread over the grid's agents, then assembled into one image (or one image per
frame: out1.png, out2.png, ...). The scene and the files it reads (#include files,
image maps, fonts, data files) are sent with the job; POV-Ray's standard includes and
fonts are expected on the agents. Ctrl-C deletes the job.

  -h, -hostname HOST  the controller (default: $XGRID_CONTROLLER_HOSTNAME)
  -p, -password PW    its client password (default: $XGRID_CONTROLLER_PASSWORD)
  -auth METHOD        Password (default) or None
  -gid GRID           the grid to use (default: the controller's default grid)
  -o FILE             where to write the picture: .png or .ppm
  -tiles N            about how many tiles to cut the image into (default 16);
                      each tile parses the scene again, so slow-parsing
                      scenes want fewer

POV-Ray options such as +W320 +H240 +A0.3 +KFF4 are given to every task. The tool sets
the input and output files, the output format and the render area itself. Files found
in +L directories are sent with the scene.
";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("{0} needs a value")]
    MissingValue(String),
    #[error("{0} was given more than once")]
    Repeated(String),
    #[error("no scene given: name the .pov file to render")]
    NoScene,
    #[error("no output file given: add -o out.png (or -o out.ppm)")]
    NoOutput,
    #[error("{0}: the output must be a .png or .ppm file")]
    OutputFormat(String),
    #[error("unexpected argument {0:?}: give one scene, then POV-Ray options")]
    Unexpected(String),
    #[error("{0}: INI files are not sent to the agents; give their options on the command line")]
    IniFile(String),
    #[error("{option}: {instead}")]
    Refused {
        option: String,
        instead: &'static str,
    },
    #[error("{option} takes a whole number, not {value:?}")]
    NotANumber { option: String, value: String },
    #[error("-auth must be Password, Kerberos or None, not {0:?}")]
    BadAuth(String),
    #[error("the frames to render are empty: {0}")]
    NoFrames(String),
    #[error("the image size must be at least 1x1")]
    EmptyImage,
    #[error("the image may be at most {MAX_SIDE} pixels wide and high (the pieces travel as Targa files)")]
    TooLarge,
    #[error("POV-Ray's render block size (+BS) must be at least 4, not {0}")]
    BlockSize(u64),
    #[error("-tiles must be at least 1")]
    NoTiles,
}

/// A command line that asks for a render.
#[derive(Debug, Clone, PartialEq)]
pub struct Arguments {
    pub connection: ConnectionArgs,
    pub grid: Option<String>,
    pub scene: PathBuf,
    pub output: PathBuf,
    pub format: OutputFormat,
    /// `-tiles`: the number of tiles to aim for.
    pub tiles: Option<usize>,
    /// POV-Ray options as typed, for every task.
    pub povray: Vec<String>,
    /// Include directories given with `+L` or `Library_Path=`: includes found there travel
    /// with the job, so these options are not passed on.
    pub library: Vec<PathBuf>,
    pub render: RenderOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Png,
    Ppm,
}

/// What the POV-Ray options say about the work to split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    pub width: usize,
    pub height: usize,
    pub block_size: usize,
    pub alpha: bool,
    /// The frames to render, first and last inclusive, when the options ask for an animation.
    pub frames: Option<Frames>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frames {
    pub first: u64,
    pub last: u64,
    /// `Final_Frame`, whose digit count sets the width of the numbers in file names.
    pub final_frame: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Help,
    Run(Box<Arguments>),
}

/// Read the arguments after the program name.
pub fn parse(words: &[String]) -> Result<Parsed, UsageError> {
    if words.is_empty() {
        return Ok(Parsed::Help);
    }
    let mut connection = ConnectionArgs::default();
    let mut grid = None;
    let mut output = None;
    let mut tiles = None;
    let mut scene = None;
    let mut povray = Vec::new();
    let mut library = Vec::new();
    let mut settings = Settings::default();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let mut value = |slot: &mut Option<String>| -> Result<(), UsageError> {
            let v = words
                .next()
                .ok_or_else(|| UsageError::MissingValue(word.clone()))?;
            if slot.replace(v.clone()).is_some() {
                return Err(UsageError::Repeated(word.clone()));
            }
            Ok(())
        };
        match word.as_str() {
            "-help" | "--help" | "-?" => return Ok(Parsed::Help),
            "-h" | "-hostname" => value(&mut connection.hostname)?,
            "-p" | "-password" => value(&mut connection.password)?,
            "-gid" => value(&mut grid)?,
            "-o" => value(&mut output)?,
            "-tiles" => value(&mut tiles)?,
            "-auth" => {
                let mut method = None;
                value(&mut method)?;
                let method = method.unwrap_or_default();
                connection.auth = Some(match method.to_ascii_lowercase().as_str() {
                    "password" => AuthMethod::Password,
                    "kerberos" => AuthMethod::Kerberos,
                    "none" => AuthMethod::None,
                    _ => return Err(UsageError::BadAuth(method)),
                });
            }
            w if library_switch(w).is_some() => {
                library.extend(library_switch(w).map(PathBuf::from));
            }
            w if w.starts_with('+') || w.starts_with('-') => {
                settings.switch(w)?;
                povray.push(w.to_string());
            }
            w if w.contains('=') => {
                settings.ini_line(w)?;
                povray.push(w.to_string());
            }
            w if w.to_ascii_lowercase().ends_with(".ini") => {
                return Err(UsageError::IniFile(w.to_string()))
            }
            w => {
                if scene.replace(PathBuf::from(w)).is_some() {
                    return Err(UsageError::Unexpected(w.to_string()));
                }
            }
        }
    }
    let scene = scene.ok_or(UsageError::NoScene)?;
    let output = output.ok_or(UsageError::NoOutput)?;
    let format = match output.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()) {
        Some(e) if e == "png" => OutputFormat::Png,
        Some(e) if e == "ppm" => OutputFormat::Ppm,
        _ => return Err(UsageError::OutputFormat(output)),
    };
    let tiles = match tiles.map(|t| whole_number("-tiles", &t)).transpose()? {
        Some(0) => return Err(UsageError::NoTiles),
        count => count.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
    };
    Ok(Parsed::Run(Box::new(Arguments {
        connection,
        grid,
        scene,
        output: PathBuf::from(output),
        format,
        tiles,
        povray,
        library,
        render: settings.finish()?,
    })))
}

/// The options read so far; later ones win, as in POV-Ray.
#[derive(Debug, Default)]
struct Settings {
    width: Option<u64>,
    height: Option<u64>,
    block_size: Option<u64>,
    alpha: bool,
    initial_frame: Option<u64>,
    final_frame: Option<u64>,
    subset_start: Option<u64>,
    subset_end: Option<u64>,
}

/// What an option changes.
enum Setting {
    Width,
    Height,
    BlockSize,
    InitialFrame,
    FinalFrame,
    SubsetStart,
    SubsetEnd,
    Alpha,
    Refused(&'static str),
    Other,
}

const PARTIAL: &str = "the tool splits the image into tiles itself; render the whole image";
const OUTPUT_FILE: &str = "give the output file with -o";
const OUTPUT_TYPE: &str = "the output format follows the -o file name (.png or .ppm)";
const INPUT_FILE: &str = "give the scene file as an argument of its own";

impl Settings {
    /// A `+X…`/`-X…` switch.
    fn switch(&mut self, word: &str) -> Result<(), UsageError> {
        let on = word.starts_with('+');
        let body = word.get(1..).unwrap_or_default();
        let upper = body.to_ascii_uppercase();
        // Longest names first, so +KFI is not read as +K… and +WT not as +W.
        let named = [
            ("KFI", Setting::InitialFrame),
            ("KFF", Setting::FinalFrame),
            ("BS", Setting::BlockSize),
            ("SF", Setting::SubsetStart),
            ("EF", Setting::SubsetEnd),
            ("UA", Setting::Alpha),
            ("SR", Setting::Refused(PARTIAL)),
            ("ER", Setting::Refused(PARTIAL)),
            ("SC", Setting::Refused(PARTIAL)),
            ("EC", Setting::Refused(PARTIAL)),
            ("O", Setting::Refused(OUTPUT_FILE)),
            ("F", Setting::Refused(OUTPUT_TYPE)),
            ("I", Setting::Refused(INPUT_FILE)),
        ];
        let (setting, value) = match named.into_iter().find(|(n, _)| upper.starts_with(n)) {
            Some((name, setting)) => (setting, body.get(name.len()..).unwrap_or_default()),
            // +W and +H only with digits after them: +WT, +HI and the like are other options.
            None if is_sized(&upper, 'W') => (Setting::Width, body.get(1..).unwrap_or_default()),
            None if is_sized(&upper, 'H') => (Setting::Height, body.get(1..).unwrap_or_default()),
            None => (Setting::Other, ""),
        };
        if matches!(setting, Setting::Alpha) {
            self.alpha = on;
            return Ok(());
        }
        self.apply(setting, word, value)
    }

    /// A `Key=Value` INI setting given on the command line.
    fn ini_line(&mut self, word: &str) -> Result<(), UsageError> {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
        let setting = match key.as_str() {
            "width" => Setting::Width,
            "height" => Setting::Height,
            "render_block_size" => Setting::BlockSize,
            "initial_frame" => Setting::InitialFrame,
            "final_frame" => Setting::FinalFrame,
            "subset_start_frame" => Setting::SubsetStart,
            "subset_end_frame" => Setting::SubsetEnd,
            "output_alpha" => {
                self.alpha = matches!(
                    value.to_ascii_lowercase().as_str(),
                    "on" | "true" | "yes" | "1"
                );
                return Ok(());
            }
            "start_row" | "end_row" | "start_column" | "end_column" => Setting::Refused(PARTIAL),
            "output_file_name" => Setting::Refused(OUTPUT_FILE),
            "output_file_type" | "output_to_file" => Setting::Refused(OUTPUT_TYPE),
            "input_file_name" => Setting::Refused(INPUT_FILE),
            _ => Setting::Other,
        };
        self.apply(setting, word, value)
    }

    fn apply(&mut self, setting: Setting, word: &str, value: &str) -> Result<(), UsageError> {
        let slot = match setting {
            Setting::Width => &mut self.width,
            Setting::Height => &mut self.height,
            Setting::BlockSize => &mut self.block_size,
            Setting::InitialFrame => &mut self.initial_frame,
            Setting::FinalFrame => &mut self.final_frame,
            Setting::SubsetStart => &mut self.subset_start,
            Setting::SubsetEnd => &mut self.subset_end,
            Setting::Refused(instead) => {
                return Err(UsageError::Refused {
                    option: word.to_string(),
                    instead,
                })
            }
            Setting::Alpha | Setting::Other => return Ok(()),
        };
        *slot = Some(whole_number(word, value)?);
        Ok(())
    }

    fn finish(self) -> Result<RenderOptions, UsageError> {
        let width = self.width.unwrap_or(DEFAULT_WIDTH as u64) as usize;
        let height = self.height.unwrap_or(DEFAULT_HEIGHT as u64) as usize;
        if width == 0 || height == 0 {
            return Err(UsageError::EmptyImage);
        }
        if width > MAX_SIDE || height > MAX_SIDE {
            return Err(UsageError::TooLarge);
        }
        // Frames only when an animation is asked for, as POV-Ray does (Final_Frame set).
        let frames = match self.final_frame {
            None => None,
            Some(final_frame) => {
                let initial = self.initial_frame.unwrap_or(1);
                let first = self.subset_start.unwrap_or(initial).max(initial);
                let last = self.subset_end.unwrap_or(final_frame).min(final_frame);
                if first > last {
                    return Err(UsageError::NoFrames(format!(
                        "frames {initial} to {final_frame}, subset {first} to {last}"
                    )));
                }
                Some(Frames {
                    first,
                    last,
                    final_frame,
                })
            }
        };
        let block_size = self.block_size.unwrap_or(DEFAULT_BLOCK_SIZE as u64);
        if block_size < 4 {
            return Err(UsageError::BlockSize(block_size));
        }
        Ok(RenderOptions {
            width,
            height,
            block_size: block_size as usize,
            alpha: self.alpha,
            frames,
        })
    }
}

/// The directory of a `+Ldir`, `-Ldir` or `Library_Path=dir` option.
fn library_switch(word: &str) -> Option<&str> {
    let directory = if let Some((key, value)) = word.split_once('=') {
        key.trim()
            .eq_ignore_ascii_case("library_path")
            .then_some(value.trim())
    } else {
        let mut chars = word.chars();
        let sign = chars.next();
        let letter = chars.next();
        (matches!(sign, Some('+' | '-')) && matches!(letter, Some('L' | 'l')))
            .then(|| word.get(2..).unwrap_or_default())
    }?;
    // POV-Ray accepts the directory in quotes.
    let directory = directory.trim_matches('"');
    (!directory.is_empty()).then_some(directory)
}

fn is_sized(upper: &str, letter: char) -> bool {
    let mut chars = upper.chars();
    chars.next() == Some(letter) && chars.next().is_some_and(|c| c.is_ascii_digit())
}

fn whole_number(option: &str, value: &str) -> Result<u64, UsageError> {
    value.parse().map_err(|_| UsageError::NotANumber {
        option: option.to_string(),
        value: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    fn run(line: &str) -> Arguments {
        match parse(&words(line)).expect("parses") {
            Parsed::Run(a) => *a,
            Parsed::Help => panic!("help instead of a run"),
        }
    }

    #[test]
    fn tool_words_and_povray_options_are_told_apart() {
        let a = run("-h ctl:4200 scene.pov +W320 +H240 +A0.3 -p pw +WT2 +HI -o out.png -gid 2");
        assert_eq!(a.connection.hostname.as_deref(), Some("ctl:4200"));
        assert_eq!(a.connection.password.as_deref(), Some("pw"));
        assert_eq!(a.grid.as_deref(), Some("2"));
        assert_eq!(a.scene, PathBuf::from("scene.pov"));
        assert_eq!(a.output, PathBuf::from("out.png"));
        assert_eq!(a.format, OutputFormat::Png);
        assert_eq!(a.povray, ["+W320", "+H240", "+A0.3", "+WT2", "+HI"]);
        assert_eq!(
            a.render,
            RenderOptions {
                width: 320,
                height: 240,
                block_size: 32,
                alpha: false,
                frames: None,
            }
        );
    }

    #[test]
    fn library_directories_are_kept_apart() {
        let a = run("s.pov +L/opt/inc +W64 Library_Path=\"libdir\" -o x.png");
        assert_eq!(
            a.library,
            [PathBuf::from("/opt/inc"), PathBuf::from("libdir")]
        );
        assert_eq!(a.povray, ["+W64"]);
    }

    #[test]
    fn defaults_ini_style_and_later_options_win() {
        let a = run("s.pov -o x.PPM");
        assert_eq!(a.format, OutputFormat::Ppm);
        assert_eq!((a.render.width, a.render.height), (800, 600));
        let a = run("s.pov Width=64 height=48 +W100 Render_Block_Size=16 +UA -o x.png");
        assert_eq!((a.render.width, a.render.height), (100, 48));
        assert_eq!(a.render.block_size, 16);
        assert!(a.render.alpha);
        assert!(!run("s.pov +UA -UA -o x.png").render.alpha);
        assert!(run("s.pov Output_Alpha=on -o x.png").render.alpha);
    }

    #[test]
    fn frames_follow_final_frame_and_the_subset() {
        assert_eq!(
            run("a.pov +KFF4 -o a.png").render.frames,
            Some(Frames {
                first: 1,
                last: 4,
                final_frame: 4
            })
        );
        assert_eq!(
            run("a.pov +KFI2 +KFF12 +SF3 +EF20 -o a.png").render.frames,
            Some(Frames {
                first: 3,
                last: 12,
                final_frame: 12
            })
        );
        assert!(matches!(
            parse(&words("a.pov +KFI5 +KFF2 -o a.png")),
            Err(UsageError::NoFrames(_))
        ));
    }

    #[test]
    fn options_the_tool_sets_itself_are_refused() {
        for option in [
            "+SR10",
            "+EC5",
            "+Ofile.png",
            "-F",
            "+FN",
            "+Ix.pov",
            "Start_Row=3",
        ] {
            let line = format!("s.pov {option} -o x.png");
            match parse(&words(&line)) {
                Err(UsageError::Refused { option: o, .. }) => assert_eq!(o, option),
                other => panic!("{option}: {other:?}"),
            }
        }
    }

    #[test]
    fn mistakes() {
        assert_eq!(parse(&words("s.pov")), Err(UsageError::NoOutput));
        assert_eq!(parse(&words("-o x.png")), Err(UsageError::NoScene));
        assert_eq!(
            parse(&words("s.pov -o x.jpg")),
            Err(UsageError::OutputFormat("x.jpg".into()))
        );
        assert_eq!(
            parse(&words("s.pov t.pov -o x.png")),
            Err(UsageError::Unexpected("t.pov".into()))
        );
        assert!(matches!(
            parse(&words("s.pov opts.ini -o x.png")),
            Err(UsageError::IniFile(_))
        ));
        assert!(matches!(
            parse(&words("s.pov +W12x -o x.png")),
            Err(UsageError::NotANumber { .. })
        ));
        assert_eq!(
            parse(&words("s.pov -o")),
            Err(UsageError::MissingValue("-o".into()))
        );
        assert_eq!(
            parse(&words("s.pov -o a.png -o b.png")),
            Err(UsageError::Repeated("-o".into()))
        );
        assert_eq!(
            parse(&words("s.pov +W0 -o a.png")),
            Err(UsageError::EmptyImage)
        );
        assert_eq!(
            parse(&words("-tiles 0 s.pov -o a.png")),
            Err(UsageError::NoTiles)
        );
        assert!(matches!(
            parse(&words("-tiles many s.pov -o a.png")),
            Err(UsageError::NotANumber { .. })
        ));
        assert_eq!(parse(&[]), Ok(Parsed::Help));
        assert_eq!(parse(&words("-help")), Ok(Parsed::Help));
    }
}
