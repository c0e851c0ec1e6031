//! The files a scene needs on the agents: the scene itself and, recursively, the files it
//! reads, resolved against the scene's directory (the tasks run with all of them in their
//! working directory, where POV-Ray looks first):
//! - `#include "name"`, whose file is read for references in turn;
//! - image, height field and bump maps (`image_map { png "x.png" }`, with or without the
//!   type keyword), `image_pattern`, `material_map`;
//! - TrueType fonts (`text { ttf "font.ttf" ... }`), density files (`df3 "x.df3"`), photon
//!   maps loaded with `load_file "x.ph"`, and data files opened with `#fopen H "x" read`.
//!
//! Each file is looked for where POV-Ray looks, in order: beside the scene, in POV-Ray's
//! standard include directory (colors.inc, the standard fonts and the like: left to the
//! agent's own POV-Ray), then in the library directories given with `+L` (sent with the
//! scene, so the tasks need no such directory). An absolute path that exists here is left
//! to the agents. A file found nowhere stops the submission, naming the file and the line
//! that reads it. Comments (`//`, and `/* */`, which nest in POV-Ray) are skipped, so a
//! commented-out reference is not followed. A file named by an expression (a variable,
//! `concat(...)`) cannot be followed: it becomes a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use crate::submission::LocalFile;

use super::PovrayError;

/// Where Debian's `povray` package keeps the standard include files.
pub const STANDARD_INCLUDES: &str = "/usr/share/povray-3.7/include";

/// Keywords naming a file's format, followed by the file's name: POV-Ray's bitmap types,
/// `ttf` for fonts, `df3` for densities, and `load_file` for a saved photon map.
const FILE_KEYWORDS: &[&str] = &[
    "gif",
    "tga",
    "iff",
    "ppm",
    "pgm",
    "png",
    "jpeg",
    "tiff",
    "sys",
    "exr",
    "hdr",
    "ttf",
    "df3",
    "load_file",
];
/// Blocks whose first item may be a bitmap's name, its type left out.
const BITMAP_BLOCKS: &[&str] = &[
    "image_map",
    "bump_map",
    "material_map",
    "height_field",
    "image_pattern",
];

/// The scene and the files it reads, by their path relative to the scene's directory.
#[derive(Debug)]
pub struct SceneFiles {
    /// The scene's own key (its file name).
    pub scene: String,
    pub files: BTreeMap<String, LocalFile>,
    /// References that could not be followed (a computed file name), for the user to check.
    pub warnings: Vec<String>,
}

/// One reference to another file found in a scene or include file.
#[derive(Debug, PartialEq, Eq)]
enum Reference {
    /// A file POV-Ray reads, named by a literal string.
    Literal {
        /// How the source names it (`#include`, `png`, `ttf`, `#fopen`...).
        directive: String,
        name: String,
        line: usize,
    },
    /// A file named by an expression.
    Computed { directive: String, line: usize },
}

/// Collect the scene at `scene` and everything it reads; `standard` lists the directories
/// whose files the agents already have, `library` the user's other include directories.
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
    // Sources are read for references; other files (images, fonts, data) are only sent.
    let mut pending = vec![(scene_key, scene.to_path_buf(), true)];
    while let Some((key, path, is_source)) = pending.pop() {
        let file = LocalFile::read(&path).map_err(PovrayError::Cli)?;
        let shown = path.display().to_string();
        let references = if is_source {
            references(&file.data)
        } else {
            Vec::new()
        };
        for reference in references {
            let (directive, name, line) = match reference {
                Reference::Literal {
                    directive,
                    name,
                    line,
                } => (directive, name, line),
                Reference::Computed { directive, line } => {
                    found.warnings.push(format!(
                        "{shown}:{line}: this {directive} computes its file name, so the file \
                         cannot be sent with the scene; make sure it reaches the agents"
                    ));
                    continue;
                }
            };
            let missing = || PovrayError::MissingFile {
                file: shown.clone(),
                line,
                directive: directive.clone(),
                name: name.clone(),
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
            let key = inside_key(&name).ok_or_else(|| PovrayError::FileOutside {
                file: shown.clone(),
                line,
                directive: directive.clone(),
                name: name.clone(),
            })?;
            if seen.insert(key.clone()) {
                pending.push((key, source, directive == "#include"));
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

/// The pieces of POV-Ray source that matter for finding file names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A keyword or identifier (numbers come out as words too; they never matter here).
    Word(String),
    /// A string literal's contents, escapes kept as written.
    Text(String),
    /// `#`, which starts a directive.
    Hash,
    /// Any other character.
    Mark(u8),
}

/// The references to other files in a POV-Ray source file, in order.
fn references(source: &[u8]) -> Vec<Reference> {
    let tokens = tokens(source);
    let mut found = Vec::new();
    let word = |at: usize| match tokens.get(at) {
        Some((Token::Word(w), _)) => Some(w.as_str()),
        _ => None,
    };
    let text = |at: usize| match tokens.get(at) {
        Some((Token::Text(t), _)) => Some(t.clone()),
        _ => None,
    };
    for (at, (token, line)) in tokens.iter().enumerate() {
        let line = *line;
        let reference = |directive: &str, name: Option<String>| match name {
            Some(name) => Reference::Literal {
                directive: directive.to_string(),
                name,
                line,
            },
            None => Reference::Computed {
                directive: directive.to_string(),
                line,
            },
        };
        match token {
            Token::Hash if word(at + 1) == Some("include") => {
                found.push(reference("#include", text(at + 2)));
            }
            // `#fopen Handle "name" read`: only a file opened for reading must exist.
            Token::Hash if word(at + 1) == Some("fopen") && word(at + 4) == Some("read") => {
                found.push(reference("#fopen", text(at + 3)));
            }
            Token::Word(keyword) if FILE_KEYWORDS.contains(&keyword.as_str()) => {
                // A keyword after `#` is a directive's word, not a file's type.
                let directive_word = at > 0 && matches!(tokens.get(at - 1), Some((Token::Hash, _)));
                if !directive_word {
                    found.push(reference(keyword, text(at + 1)));
                }
            }
            Token::Word(block) if BITMAP_BLOCKS.contains(&block.as_str()) => {
                if let (Some((Token::Mark(b'{'), _)), Some(name)) =
                    (tokens.get(at + 1), text(at + 2))
                {
                    found.push(reference(block, Some(name)));
                }
            }
            _ => {}
        }
    }
    found
}

/// The source as tokens with their line numbers; comments and blanks dropped.
fn tokens(source: &[u8]) -> Vec<(Token, usize)> {
    let mut lexer = Lexer {
        source,
        at: 0,
        line: 1,
    };
    let mut out = Vec::new();
    while let Some(byte) = lexer.peek() {
        let line = lexer.line;
        match byte {
            b'"' => out.push((Token::Text(lexer.take_string()), line)),
            b'/' if lexer.starts_with(b"//") || lexer.starts_with(b"/*") => lexer.skip_comment(),
            b'#' => {
                lexer.bump();
                out.push((Token::Hash, line));
            }
            b if b.is_ascii_whitespace() => lexer.bump(),
            b if b.is_ascii_alphanumeric() || b == b'_' => {
                let start = lexer.at;
                while lexer.is_word_at(lexer.at) {
                    lexer.bump();
                }
                let word = source.get(start..lexer.at).unwrap_or_default();
                out.push((
                    Token::Word(String::from_utf8_lossy(word).into_owned()),
                    line,
                ));
            }
            other => {
                lexer.bump();
                out.push((Token::Mark(other), line));
            }
        }
    }
    out
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

    fn literal(directive: &str, name: &str, line: usize) -> Reference {
        Reference::Literal {
            directive: directive.into(),
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
            references(source),
            [
                literal("#include", "a.inc", 1),
                literal("#include", "b.inc", 5),
                Reference::Computed {
                    directive: "#include".into(),
                    line: 6
                }
            ]
        );
    }

    #[test]
    fn image_maps_fonts_and_data_files_are_references() {
        let source = b"plane { y, 0 pigment { image_map { png \"floor.png\" interpolate 2 } } }\n\
            height_field { \"hills.tga\" smooth }\n\
            normal { bump_map { tga \"bumps.tga\" bump_size 2 } }\n\
            text { ttf \"fonts/serif.ttf\" \"A png \\\"label\\\"\" 0.1, 0 }\n\
            #fopen Data \"points.txt\" read\n\
            #fopen Log \"log.txt\" write\n\
            media { density { density_file df3 \"smoke.df3\" } }\n\
            photons { load_file \"saved.ph\" }\n\
            image_map { jpeg Picture }\n\
            // image_map { png \"commented.png\" }\n\
            #declare png_name = \"not/a/file.png\";\n";
        assert_eq!(
            references(source),
            [
                literal("png", "floor.png", 1),
                literal("height_field", "hills.tga", 2),
                literal("tga", "bumps.tga", 3),
                literal("ttf", "fonts/serif.ttf", 4),
                literal("#fopen", "points.txt", 5),
                literal("df3", "smoke.df3", 7),
                literal("load_file", "saved.ph", 8),
                Reference::Computed {
                    directive: "jpeg".into(),
                    line: 9
                },
            ]
        );
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for source in [&b"#include \""[..], b"/* /*", b"\"abc\\", b"#", b"#include"] {
            let _ = references(source);
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

    #[test]
    fn files_a_scene_reads_are_sent_and_not_read_for_references() {
        let dir = TempDir::new();
        let standard = TempDir::new();
        let library = TempDir::new();
        standard.write("timrom.ttf", b"standard font", false);
        library.write("wood.png", b"library image", false);
        // The image's bytes happen to spell an include: it is not source, so not followed.
        dir.write("maps/floor.png", b"#include \"nothing.inc\"", false);
        dir.write(
            "parts.inc",
            b"#declare Floor = pigment { image_map { \"maps/floor.png\" } }\n",
            false,
        );
        dir.write(
            "scene.pov",
            b"#include \"parts.inc\"\n\
              text { ttf \"timrom.ttf\" \"Hi\" 1, 0 }\n\
              box { 0, 1 pigment { image_map { png \"wood.png\" } } }\n\
              sphere { 0, 1 pigment { image_map { png Computed } } }\n",
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
            ["maps/floor.png", "parts.inc", "scene.pov", "wood.png"]
        );
        assert_eq!(found.files["wood.png"].data, b"library image");
        assert_eq!(found.warnings.len(), 1, "{:?}", found.warnings);
        assert!(
            found.warnings[0].contains(":4: this png computes its file name"),
            "{:?}",
            found.warnings
        );
    }

    #[test]
    fn a_missing_image_map_names_the_file_and_the_line() {
        let dir = TempDir::new();
        dir.write(
            "scene.pov",
            b"sphere { 0, 1\n  pigment { image_map { png \"earth.png\" } } }\n",
            false,
        );
        let err = collect(&dir.path().join("scene.pov"), &[], &[]).expect_err("missing");
        let scene = dir.path().join("scene.pov");
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2: png \"earth.png\": no such file beside the scene, among POV-Ray's \
                 standard includes or in a +L directory; nothing was submitted",
                scene.display()
            )
        );
    }
}
