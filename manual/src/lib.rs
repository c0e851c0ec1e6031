//! One description of a command — synopsis, description, options, exit codes — rendered both
//! as the text `--help` prints and as a roff man page, so that the two cannot disagree. The
//! man pages in `man/` are this crate's output, checked by a test in each command's crate.

use std::fmt::Write as _;
use std::path::Path;

/// Help text is wrapped to this many columns.
const WIDTH: usize = 80;
/// A term longer than this puts its explanation on the next line.
const MAX_TERM: usize = 28;

/// Everything a command's help and man page say.
#[derive(Debug, Clone, Copy)]
pub struct Manual {
    /// The command's name, e.g. `xgridcontrollerd`.
    pub name: &'static str,
    /// The man section: `1` for user commands, `8` for daemons.
    pub section: &'static str,
    /// What the command is, in a few words (the man page's NAME line).
    pub summary: &'static str,
    /// Usage lines, printed as they are (the author breaks long lines).
    pub synopsis: &'static [&'static str],
    /// Paragraphs describing what the command does.
    pub description: &'static [&'static str],
    /// Titled lists: options, exit codes, files…
    pub sections: &'static [Section],
    /// Related pages, as `name(section)`; in the man page only.
    pub see_also: &'static [&'static str],
}

/// A titled list of terms with their explanations, and paragraphs after it.
#[derive(Debug, Clone, Copy)]
pub struct Section {
    pub title: &'static str,
    pub entries: &'static [Entry],
    pub notes: &'static [&'static str],
}

/// One option (`--listen ADDR:PORT`), exit code or file, and what it means.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub term: &'static str,
    pub text: &'static str,
}

impl Manual {
    /// The `--help` text.
    pub fn help(&self) -> String {
        let mut out = String::new();
        for (i, line) in self.synopsis.iter().enumerate() {
            let lead = if i == 0 { "usage: " } else { "       " };
            if line.is_empty() {
                out.push('\n');
            } else {
                let _ = writeln!(out, "{lead}{line}");
            }
        }
        for paragraph in self.description {
            out.push('\n');
            wrap(&mut out, paragraph, 0, WIDTH);
        }
        for section in self.sections {
            let _ = write!(out, "\n{}:\n", section.title);
            let width = section
                .entries
                .iter()
                .map(|e| e.term.chars().count())
                .filter(|w| *w <= MAX_TERM)
                .max()
                .unwrap_or(0);
            for entry in section.entries {
                let indent = 2 + width + 2;
                let term_width = entry.term.chars().count();
                if term_width > width {
                    let _ = writeln!(out, "  {}", entry.term);
                    wrap(&mut out, entry.text, indent, WIDTH);
                } else {
                    let mut first = String::new();
                    wrap(&mut first, entry.text, indent, WIDTH);
                    let _ = write!(
                        out,
                        "  {}{}{}",
                        entry.term,
                        " ".repeat(width - term_width + 2),
                        &first[indent..]
                    );
                }
            }
            for (i, note) in section.notes.iter().enumerate() {
                if i > 0 || !section.entries.is_empty() {
                    out.push('\n');
                }
                wrap(&mut out, note, 2, WIDTH);
            }
        }
        out
    }

    /// The roff man page (man macros).
    pub fn man_page(&self) -> String {
        let mut out = String::new();
        let kind = if self.section == "1" {
            "User Commands"
        } else {
            "System Administration"
        };
        let _ = writeln!(
            out,
            ".\\\" Generated from the command's --help source by xgrid-manual; do not edit."
        );
        let _ = writeln!(
            out,
            ".TH {} {} \"\" \"xgrid-rs\" \"{kind}\"",
            self.name.to_ascii_uppercase(),
            self.section
        );
        let _ = writeln!(out, ".SH NAME\n{} \\- {}", self.name, escape(self.summary));
        out.push_str(".SH SYNOPSIS\n.nf\n");
        for line in self.synopsis {
            if line.is_empty() {
                out.push_str(".sp\n");
            } else {
                let _ = writeln!(out, "{}", escape(line));
            }
        }
        out.push_str(".fi\n.SH DESCRIPTION\n");
        for (i, paragraph) in self.description.iter().enumerate() {
            if i > 0 {
                out.push_str(".PP\n");
            }
            let _ = writeln!(out, "{}", escape(paragraph));
        }
        for section in self.sections {
            let _ = writeln!(out, ".SH {}", section.title.to_ascii_uppercase());
            for entry in section.entries {
                let _ = writeln!(out, ".TP\n{}\n{}", term(entry.term), escape(entry.text));
            }
            for note in section.notes {
                let _ = writeln!(out, ".PP\n{}", escape(note));
            }
        }
        if !self.see_also.is_empty() {
            let _ = writeln!(out, ".SH SEE ALSO");
            let pages: Vec<String> = self
                .see_also
                .iter()
                .map(|page| match page.split_once('(') {
                    Some((name, rest)) => format!("\\fB{}\\fR({rest}", escape(name)),
                    None => escape(page),
                })
                .collect();
            let _ = writeln!(out, "{}", pages.join(",\n"));
        }
        out
    }

    /// Every option named in the terms of the sections (words that start with `-`, as in
    /// `-h, -hostname HOST` or `-artequal/-artmin/-artmax`), for tests that hold the parser
    /// and the help to the same list.
    pub fn option_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        for section in self.sections {
            for entry in section.entries {
                for word in entry.term.split([' ', ',', '/']) {
                    if word.len() > 1 && word.starts_with('-') && !names.contains(&word) {
                        names.push(word);
                    }
                }
            }
        }
        names
    }
}

/// Compare the committed man page at `path` with what `manual` renders now; with
/// `XGRID_UPDATE_MAN=1` in the environment, write the rendered page there instead. The error
/// says how to bring the two back together.
pub fn check_committed(manual: &Manual, path: &Path) -> Result<(), String> {
    let rendered = manual.man_page();
    if std::env::var_os("XGRID_UPDATE_MAN").is_some_and(|v| v == "1") {
        return std::fs::write(path, &rendered)
            .map_err(|e| format!("cannot write {}: {e}", path.display()));
    }
    let committed = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}; run scripts/man", path.display()))?;
    if committed == rendered {
        Ok(())
    } else {
        Err(format!(
            "{} differs from what the help source renders: run scripts/man and commit the result",
            path.display()
        ))
    }
}

/// Append `text` wrapped at `width` columns, every line indented by `indent` spaces.
fn wrap(out: &mut String, text: &str, indent: usize, width: usize) {
    let mut column = 0;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if column > indent && column + 1 + len > width {
            out.push('\n');
            column = 0;
        }
        if column == 0 {
            out.push_str(&" ".repeat(indent));
            column = indent;
        } else {
            out.push(' ');
            column += 1;
        }
        out.push_str(word);
        column += len;
    }
    out.push('\n');
}

/// Text made safe for roff: backslashes escaped, `-` as the copyable minus `\-`, and no line
/// starting with a control character.
fn escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// An option term in roff: options bold, their arguments italic, punctuation plain.
fn term(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let (core, tail) = match word.strip_suffix(',') {
                Some(core) => (core, ","),
                None => (word, ""),
            };
            if core.is_empty() {
                return tail.to_string();
            }
            let font = if core.starts_with('-') { "B" } else { "I" };
            format!("\\f{font}{}\\fR{tail}", escape(core))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: Manual = Manual {
        name: "demo",
        section: "8",
        summary: "a demonstration daemon",
        synopsis: &["demo [options]", "", "demo --help"],
        description: &[
            "Runs a demonstration. This sentence is long enough that it has to be wrapped \
             onto a second line of the help text.",
            ".dots at the start must not become roff requests",
        ],
        sections: &[
            Section {
                title: "options",
                entries: &[
                    Entry {
                        term: "--port N",
                        text: "the port",
                    },
                    Entry {
                        term: "-v, --verbose",
                        text: "say more; this explanation is long enough to need a second \
                               line in the help",
                    },
                    Entry {
                        term: "--a-very-long-option-name VALUE",
                        text: "below its term",
                    },
                ],
                notes: &["A note after the list."],
            },
            Section {
                title: "exit status",
                entries: &[Entry {
                    term: "0",
                    text: "success",
                }],
                notes: &[],
            },
        ],
        see_also: &["other(1)"],
    };

    #[test]
    fn help_lays_out_terms_in_a_column_and_wraps() {
        let help = SAMPLE.help();
        let lines: Vec<&str> = help.lines().collect();
        assert_eq!(lines[0], "usage: demo [options]");
        assert_eq!(lines[1], "");
        assert_eq!(lines[2], "       demo --help");
        assert!(lines.iter().all(|l| l.chars().count() <= WIDTH), "{help}");
        assert!(help.contains("\n  --port N       the port\n"), "{help}");
        assert!(help.contains("\n  -v, --verbose  say more;"), "{help}");
        // The second line of a wrapped explanation starts in the explanations' column.
        let continued = lines
            .iter()
            .position(|l| l.starts_with("  -v, --verbose"))
            .map(|i| lines[i + 1])
            .expect("wrapped line");
        assert!(continued.starts_with(&" ".repeat(17)), "{continued:?}");
        assert!(!continued.starts_with(&" ".repeat(18)), "{continued:?}");
        assert!(
            help.contains("\n  --a-very-long-option-name VALUE\n                 below its term\n")
        );
        assert!(help.contains("\n  A note after the list.\n"));
        assert!(help.contains("\nexit status:\n  0  success\n"), "{help}");
    }

    #[test]
    fn man_page_escapes_and_marks_up() {
        let page = SAMPLE.man_page();
        assert!(page.contains("\n.TH DEMO 8 "), "{page}");
        assert!(page.contains("\n.SH NAME\ndemo \\- a demonstration daemon\n"));
        assert!(page.contains("\n.SH SYNOPSIS\n.nf\ndemo [options]\n.sp\ndemo \\-\\-help\n.fi\n"));
        assert!(page.contains("\n\\&.dots at the start"), "{page}");
        assert!(page.contains("\n.TP\n\\fB\\-v\\fR, \\fB\\-\\-verbose\\fR\nsay more;"));
        assert!(page.contains("\n.TP\n\\fB\\-\\-port\\fR \\fIN\\fR\nthe port\n"));
        assert!(page.contains("\n.SH EXIT STATUS\n.TP\n\\fI0\\fR\nsuccess\n"));
        assert!(page.contains("\n.SH SEE ALSO\n\\fBother\\fR(1)\n"));
        // Every line that is not a request is plain text: none starts with a dot by accident.
        for line in page.lines() {
            if line.starts_with('.') {
                let request = line.split(' ').next().unwrap_or_default();
                assert!(
                    [".\\\"", ".TH", ".SH", ".TP", ".PP", ".nf", ".fi", ".sp"].contains(&request),
                    "{line}"
                );
            }
        }
    }

    #[test]
    fn a_committed_page_that_drifted_is_refused() {
        let dir = std::env::temp_dir().join(format!("xgrid-manual-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("demo.8");
        std::fs::write(&path, SAMPLE.man_page()).expect("write");
        assert_eq!(check_committed(&SAMPLE, &path), Ok(()));
        std::fs::write(&path, SAMPLE.man_page().replace("the port", "a port")).expect("write");
        let err = check_committed(&SAMPLE, &path).expect_err("drifted");
        assert!(err.contains("scripts/man"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn option_names_come_from_the_terms() {
        assert_eq!(
            SAMPLE.option_names(),
            vec!["--port", "-v", "--verbose", "--a-very-long-option-name"]
        );
    }
}
