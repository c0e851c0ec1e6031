//! The files a scene needs on the agents: the scene itself and, recursively, the files its
//! `#include "name"` directives name, resolved against the scene's directory (the tasks run
//! with all of them in their working directory, where POV-Ray looks first).
//!
//! Each include is looked for where POV-Ray looks, in order: beside the scene, in POV-Ray's
//! standard include directory (colors.inc and the like: left to the agent's own POV-Ray),
//! then in the library directories given with `+L` (sent with the scene, so the tasks need
//! no such directory). An absolute path that exists here is left to the agents. An include
//! found nowhere stops the submission, naming the file and the line that includes it.
//! Comments (`//`, and `/* */`, which nest in POV-Ray) and string contents are skipped, so
//! a commented-out `#include` is not followed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use crate::submission::LocalFile;

use super::PovrayError;

/// Where Debian's `povray` package keeps the standard include files.
pub const STANDARD_INCLUDES: &str = "/usr/share/povray-3.7/include";

/// The scene and the include files to send, by their path relative to the scene's directory.
#[derive(Debug)]
pub struct SceneFiles {
    /// The scene's own key (its file name).
    pub scene: String,
    pub files: BTreeMap<String, LocalFile>,
    /// Includes that could not be followed (a computed file name), for the user to check.
    pub warnings: Vec<String>,
}

/// One `#include` directive found in a file.
#[derive(Debug, PartialEq, Eq)]
enum Include {
    Literal { name: String, line: usize },
    Computed { line: usize },
}

/// Collect the scene at `scene` and everything it includes; `standard` lists the directories
/// whose includes the agents already have, `library` the user's other include directories.
pub fn collect(
    scene: &Path,
    standard: &[&Path],
    library: &[PathBuf],
) -> Result<SceneFiles, PovrayError> {
    let dir = scene.parent().unwrap_or(Path::new(".")).to_path_buf();
    let scene_key = scene
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| PovrayError::BadScene(scene.to_path_buf()))?
        .to_string();
    let mut found = SceneFiles {
        scene: scene_key.clone(),
        files: BTreeMap::new(),
        warnings: Vec::new(),
    };
    let mut seen = BTreeSet::from([scene_key.clone()]);
    let mut pending = vec![(scene_key, scene.to_path_buf())];
    while let Some((key, path)) = pending.pop() {
        let file = LocalFile::read(&path).map_err(PovrayError::Cli)?;
        let shown = path.display().to_string();
        for include in includes(&file.data) {
            let (name, line) = match include {
                Include::Literal { name, line } => (name, line),
                Include::Computed { line } => {
                    found.warnings.push(format!(
                        "{shown}:{line}: this #include computes its file name, so it cannot be \
                         followed; make sure the file reaches the agents"
                    ));
                    continue;
                }
            };
            let missing = || PovrayError::MissingInclude {
                file: shown.clone(),
                line,
                include: name.clone(),
            };
            if Path::new(&name).is_absolute() {
                if !Path::new(&name).is_file() {
                    return Err(missing());
                }
                continue;
            }
            let local = dir.join(&name);
            let source = if local.is_file() {
                local
            } else if standard.iter().any(|d| d.join(&name).is_file()) {
                continue;
            } else {
                library
                    .iter()
                    .map(|d| d.join(&name))
                    .find(|p| p.is_file())
                    .ok_or_else(missing)?
            };
            let include_key = inside_key(&name).ok_or_else(|| PovrayError::IncludeOutside {
                file: shown.clone(),
                line,
                include: name.clone(),
            })?;
            if seen.insert(include_key.clone()) {
                pending.push((include_key, source));
            }
        }
        found.files.insert(key, file);
    }
    Ok(found)
}

/// `name` as a `/`-separated path that stays inside its directory, or `None`.
fn inside_key(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The `#include` directives of a POV-Ray source file, in order.
fn includes(source: &[u8]) -> Vec<Include> {
    let mut found = Vec::new();
    let mut lexer = Lexer {
        source,
        at: 0,
        line: 1,
    };
    while let Some(byte) = lexer.peek() {
        match byte {
            b'"' => lexer.skip_string(),
            b'/' if lexer.starts_with(b"//") || lexer.starts_with(b"/*") => lexer.skip_comment(),
            b'#' => {
                let line = lexer.line;
                lexer.bump();
                lexer.skip_blank();
                if lexer.starts_with(b"include") && !lexer.is_word_at(lexer.at + 7) {
                    lexer.at += 7;
                    lexer.skip_blank();
                    found.push(match lexer.peek() {
                        Some(b'"') => Include::Literal {
                            name: lexer.take_string(),
                            line,
                        },
                        _ => Include::Computed { line },
                    });
                }
            }
            _ => lexer.bump(),
        }
    }
    found
}

struct Lexer<'a> {
    source: &'a [u8],
    at: usize,
    line: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.source.get(self.at).copied()
    }

    fn bump(&mut self) {
        if self.peek() == Some(b'\n') {
            self.line += 1;
        }
        self.at += 1;
    }

    fn starts_with(&self, text: &[u8]) -> bool {
        self.source
            .get(self.at..)
            .is_some_and(|rest| rest.starts_with(text))
    }

    fn is_word_at(&self, at: usize) -> bool {
        self.source
            .get(at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
    }

    /// Whitespace and comments.
    fn skip_blank(&mut self) {
        loop {
            match self.peek() {
                Some(b) if b.is_ascii_whitespace() => self.bump(),
                Some(b'/') if self.starts_with(b"//") || self.starts_with(b"/*") => {
                    self.skip_comment()
                }
                _ => return,
            }
        }
    }

    fn skip_comment(&mut self) {
        if self.starts_with(b"//") {
            while self.peek().is_some_and(|b| b != b'\n') {
                self.bump();
            }
            return;
        }
        let mut depth = 0usize;
        while self.peek().is_some() {
            if self.starts_with(b"/*") {
                depth += 1;
                self.at += 2;
            } else if self.starts_with(b"*/") {
                self.at += 2;
                depth -= 1;
                if depth == 0 {
                    return;
                }
            } else {
                self.bump();
            }
        }
    }

    fn skip_string(&mut self) {
        self.take_string();
    }

    /// The contents of the string literal at the cursor, escapes kept as written.
    fn take_string(&mut self) -> String {
        self.bump();
        let start = self.at;
        while let Some(b) = self.peek() {
            match b {
                b'"' => break,
                b'\\' => {
                    self.bump();
                    self.bump();
                }
                _ => self.bump(),
            }
        }
        let text = self.source.get(start..self.at.min(self.source.len()));
        self.bump();
        String::from_utf8_lossy(text.unwrap_or_default()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    fn literal(name: &str, line: usize) -> Include {
        Include::Literal {
            name: name.into(),
            line,
        }
    }

    #[test]
    fn directives_outside_comments_and_strings() {
        let source = b"#include \"a.inc\"\n\
            // #include \"commented.inc\"\n\
            /* outer /* #include \"nested.inc\" */ still comment */\n\
            #declare S = \"#include \\\"fake.inc\\\"\";\n\
            #  include /* gap */ \"b.inc\"\n\
            #include Name\n\
            #includes \"not.inc\"\n";
        assert_eq!(
            includes(source),
            [
                literal("a.inc", 1),
                literal("b.inc", 5),
                Include::Computed { line: 6 }
            ]
        );
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for source in [&b"#include \""[..], b"/* /*", b"\"abc\\", b"#", b"#include"] {
            let _ = includes(source);
        }
    }

    #[test]
    fn keys_stay_inside_the_scene_directory() {
        assert_eq!(inside_key("./inc/../a.inc").as_deref(), Some("a.inc"));
        assert_eq!(inside_key("sub/b.inc").as_deref(), Some("sub/b.inc"));
        assert_eq!(inside_key("../c.inc"), None);
        assert_eq!(inside_key("/abs.inc"), None);
    }

    #[test]
    fn local_includes_are_collected_recursively_and_standard_ones_left() {
        let dir = TempDir::new();
        let standard = TempDir::new();
        standard.write("colors.inc", b"", false);
        dir.write(
            "scene.pov",
            b"#include \"colors.inc\"\n#include \"parts/a.inc\"\n",
            false,
        );
        dir.write(
            "parts/a.inc",
            b"#include \"b.inc\"\n#include \"parts/a.inc\"\n",
            false,
        );
        dir.write("b.inc", b"// leaf\n", false);
        dir.write("unused.inc", b"", false);
        let found =
            collect(&dir.path().join("scene.pov"), &[standard.path()], &[]).expect("collects");
        assert_eq!(found.scene, "scene.pov");
        assert_eq!(
            found.files.keys().collect::<Vec<_>>(),
            ["b.inc", "parts/a.inc", "scene.pov"]
        );
        assert_eq!(found.files["b.inc"].data, b"// leaf\n");
        assert!(found.warnings.is_empty());
    }

    #[test]
    fn library_directories_are_searched_after_the_standard_one_and_sent() {
        let dir = TempDir::new();
        let standard = TempDir::new();
        let library = TempDir::new();
        standard.write("shared.inc", b"", false);
        library.write("shared.inc", b"library copy", false);
        library.write("extra.inc", b"#include \"leaf.inc\"\n", false);
        library.write("leaf.inc", b"leaf", false);
        dir.write(
            "scene.pov",
            b"#include \"shared.inc\"\n#include \"extra.inc\"\n",
            false,
        );
        let found = collect(
            &dir.path().join("scene.pov"),
            &[standard.path()],
            &[library.path().to_path_buf()],
        )
        .expect("collects");
        assert_eq!(
            found.files.keys().collect::<Vec<_>>(),
            ["extra.inc", "leaf.inc", "scene.pov"]
        );
        assert_eq!(found.files["leaf.inc"].data, b"leaf");
    }

    #[test]
    fn a_missing_include_names_the_file_and_the_line() {
        let dir = TempDir::new();
        dir.write("scene.pov", b"#include \"here.inc\"\n", false);
        dir.write("here.inc", b"\n\n#include \"gone.inc\"\n", false);
        let err = collect(&dir.path().join("scene.pov"), &[], &[]).expect_err("missing");
        let text = err.to_string();
        let here = dir.path().join("here.inc");
        assert!(
            text.starts_with(&format!("{}:3: ", here.display())),
            "{text}"
        );
        assert!(text.contains("\"gone.inc\""), "{text}");

        dir.write("deeper/scene.pov", b"#include \"../outside.inc\"\n", false);
        dir.write("outside.inc", b"", false);
        let err = collect(&dir.path().join("deeper/scene.pov"), &[], &[]).expect_err("outside");
        assert!(err.to_string().contains("climbs out"), "{err}");
    }
}
