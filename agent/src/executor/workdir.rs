//! A task's working directory: writing the job's input files into it without ever writing
//! outside it, remembering what they looked like, and afterwards finding the files the task
//! created or changed (its output files).
//!
//! The task runs as an unprivileged user while the agent may be root, so nothing here follows
//! a symbolic link: input paths are checked component by component, files are created with
//! `O_EXCL`, and output files are opened with `O_NOFOLLOW` and checked to be the very file
//! the directory walk saw.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::identity::RunAs;
use super::ExecError;

/// Files the task created or changed, by path relative to its working directory (`/`
/// separated; bytes that are not UTF-8 in a name are replaced).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputFiles {
    pub files: BTreeMap<String, Vec<u8>>,
    /// Files that changed but could not be read, as `path: reason`.
    pub skipped: Vec<String>,
}

/// Check a job-supplied path: relative, inside the directory, no `..`. `.` components are
/// dropped, so `./a//b` and `a/b` are the same file.
pub(crate) fn checked_relative(path: &str) -> Result<PathBuf, &'static str> {
    if path.contains('\0') {
        return Err("it contains a NUL byte");
    }
    let mut clean = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("it climbs out of the working directory with `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("it is absolute"),
        }
    }
    if clean.as_os_str().is_empty() {
        return Err("it names no file");
    }
    Ok(clean)
}

/// Size, modification time and identity: when all are equal a file is only re-read to compare
/// its hash, which catches a rewrite within one timestamp tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: (i64, i64),
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// The working directory right after the input files were written.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    files: BTreeMap<PathBuf, (Stamp, u64)>,
}

impl Snapshot {
    /// The snapshot as bytes, kept in the task's directory so that it travels with a
    /// migrating task and the destination judges output files as the source would have.
    /// Per file: length, modification seconds and nanoseconds, hash (8 octets each,
    /// big-endian), the path's length (4 octets) and the path.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (path, (stamp, hash)) in &self.files {
            let path = path.as_os_str().as_bytes();
            out.extend_from_slice(&stamp.len.to_be_bytes());
            out.extend_from_slice(&stamp.mtime.0.to_be_bytes());
            out.extend_from_slice(&stamp.mtime.1.to_be_bytes());
            out.extend_from_slice(&hash.to_be_bytes());
            out.extend_from_slice(&(path.len() as u32).to_be_bytes());
            out.extend_from_slice(path);
        }
        out
    }

    /// Read [`Snapshot::to_bytes`]; `None` when the bytes are damaged.
    pub(crate) fn from_bytes(mut bytes: &[u8]) -> Option<Snapshot> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = (bytes.get(..n)?, bytes.get(n..)?);
            *bytes = rest;
            Some(head)
        }
        fn eight(bytes: &mut &[u8]) -> Option<[u8; 8]> {
            take(bytes, 8)?.try_into().ok()
        }
        let mut snapshot = Snapshot::default();
        while !bytes.is_empty() {
            let len = u64::from_be_bytes(eight(&mut bytes)?);
            let secs = i64::from_be_bytes(eight(&mut bytes)?);
            let nanos = i64::from_be_bytes(eight(&mut bytes)?);
            let hash = u64::from_be_bytes(eight(&mut bytes)?);
            let path_len = u32::from_be_bytes(take(&mut bytes, 4)?.try_into().ok()?);
            let path = take(&mut bytes, usize::try_from(path_len).ok()?)?;
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(path));
            let stamp = Stamp {
                len,
                mtime: (secs, nanos),
            };
            snapshot.files.insert(path, (stamp, hash));
        }
        Some(snapshot)
    }
}

/// Write one input file at `relative` (already checked) under `work`, creating parent
/// directories, and record it in `snapshot`. `owner` gets the file and any new directory.
pub(crate) fn write_input_file(
    work: &Path,
    relative: &Path,
    data: &[u8],
    executable: bool,
    owner: Option<RunAs>,
    snapshot: &mut Snapshot,
) -> Result<(), ExecError> {
    let input_error = |reason: String| ExecError::InputFile {
        path: relative.display().to_string(),
        reason,
    };
    let mut dir = work.to_path_buf();
    if let Some(parent) = relative.parent() {
        for part in parent.components() {
            dir.push(part);
            match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.file_type().is_dir() => {}
                Ok(_) => {
                    return Err(input_error(format!(
                        "{} is already a file or a symbolic link",
                        dir.strip_prefix(work).unwrap_or(&dir).display()
                    )))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    DirBuilder::new()
                        .mode(0o755)
                        .create(&dir)
                        .map_err(|e| ExecError::io("create directory", &dir, e))?;
                    if let Some(owner) = owner {
                        std::os::unix::fs::lchown(&dir, Some(owner.uid), Some(owner.gid))
                            .map_err(|e| ExecError::io("hand over directory", &dir, e))?;
                    }
                }
                Err(e) => return Err(ExecError::io("inspect", &dir, e)),
            }
        }
    }
    let path = work.join(relative);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                input_error("another input file or directory already has that path".into())
            }
            _ => ExecError::io("create input file", &path, e),
        })?;
    file.write_all(data)
        .map_err(|e| ExecError::io("write input file", &path, e))?;
    // Set the mode explicitly: the agent's umask must not decide what the task may do.
    let mode = if executable { 0o755 } else { 0o644 };
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| ExecError::io("set the mode of", &path, e))?;
    if let Some(owner) = owner {
        std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid))
            .map_err(|e| ExecError::io("hand over input file", &path, e))?;
    }
    let meta = file
        .metadata()
        .map_err(|e| ExecError::io("inspect", &path, e))?;
    snapshot
        .files
        .insert(relative.to_path_buf(), (Stamp::of(&meta), fnv1a(data)));
    Ok(())
}

/// The files under `work` that are new or differ from `before`. Symbolic links, devices,
/// sockets and FIFOs are never outputs; directories are walked without following links.
pub(crate) fn changed_files(work: &Path, before: &Snapshot) -> OutputFiles {
    let mut out = OutputFiles::default();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative_dir) = pending.pop() {
        let dir = work.join(&relative_dir);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                out.skipped.push(format!("{}: {e}", display(&relative_dir)));
                continue;
            }
        };
        for entry in entries.flatten() {
            let relative = relative_dir.join(entry.file_name());
            // DirEntry::metadata does not follow symbolic links.
            let Ok(meta) = entry.metadata() else { continue };
            if meta.file_type().is_dir() {
                pending.push(relative);
                continue;
            }
            if !meta.file_type().is_file() {
                continue;
            }
            // Equal size and time: only the content can tell, so compare hashes.
            let unchanged_hash = before
                .files
                .get(&relative)
                .filter(|(stamp, _)| *stamp == Stamp::of(&meta))
                .map(|(_, hash)| *hash);
            match read_same_file(&work.join(&relative), &meta) {
                Ok(data) if unchanged_hash == Some(fnv1a(&data)) => {}
                Ok(data) => {
                    out.files.insert(display(&relative), data);
                }
                Err(reason) => out
                    .skipped
                    .push(format!("{}: {reason}", display(&relative))),
            }
        }
    }
    out
}

fn display(relative: &Path) -> String {
    relative.to_string_lossy().into_owned()
}

/// Read the file the walk saw at `path`, refusing a symbolic link or a file swapped in since.
fn read_same_file(path: &Path, seen: &fs::Metadata) -> Result<Vec<u8>, String> {
    let mut file: File = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.file_type().is_file() || meta.dev() != seen.dev() || meta.ino() != seen.ino() {
        return Err("the file was replaced while it was being collected".into());
    }
    let mut data = Vec::new();
    file.read_to_end(&mut data).map_err(|e| e.to_string())?;
    Ok(data)
}

/// FNV-1a, 64 bits: cheap, stable across runs, good enough to notice a changed file.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_cleaned() {
        assert_eq!(checked_relative("a/b"), Ok(PathBuf::from("a/b")));
        assert_eq!(checked_relative("./a//b/."), Ok(PathBuf::from("a/b")));
        assert_eq!(checked_relative("a..b"), Ok(PathBuf::from("a..b")));
    }

    #[test]
    fn escaping_paths_are_refused() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "",
            ".",
            "./",
            "a\0b",
        ] {
            assert!(checked_relative(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// A scratch directory holding `work/` and `outside/`, removed at the end.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let root =
                std::env::temp_dir().join(format!("xgrid-workdir-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(root.join("work")).expect("work");
            fs::create_dir_all(root.join("outside")).expect("outside");
            Scratch(root)
        }
        fn work(&self) -> PathBuf {
            self.0.join("work")
        }
        fn outside(&self) -> PathBuf {
            self.0.join("outside")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn symbolic_links_are_never_followed_when_writing() {
        let scratch = Scratch::new("symlink-write");
        std::os::unix::fs::symlink(scratch.outside(), scratch.work().join("link")).expect("link");
        std::os::unix::fs::symlink(
            scratch.outside().join("target"),
            scratch.work().join("dangling"),
        )
        .expect("link");
        let mut snapshot = Snapshot::default();
        for path in ["link/escaped", "dangling"] {
            let result = write_input_file(
                &scratch.work(),
                Path::new(path),
                b"x",
                false,
                None,
                &mut snapshot,
            );
            assert!(
                matches!(result, Err(ExecError::InputFile { .. })),
                "{path}: {result:?}"
            );
        }
        assert_eq!(fs::read_dir(scratch.outside()).expect("outside").count(), 0);
    }

    #[test]
    fn changes_are_found_and_links_ignored() {
        let scratch = Scratch::new("changes");
        let work = scratch.work();
        let mut snapshot = Snapshot::default();
        for (path, data, executable) in [("a.txt", &b"one"[..], false), ("d/b.sh", b"two", true)] {
            write_input_file(
                &work,
                Path::new(path),
                data,
                executable,
                None,
                &mut snapshot,
            )
            .expect("write");
        }
        let mode = fs::metadata(work.join("d/b.sh"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(changed_files(&work, &snapshot), OutputFiles::default());

        fs::write(work.join("d/b.sh"), b"three").expect("change");
        fs::write(work.join("d/new.txt"), b"new").expect("create");
        fs::write(scratch.outside().join("secret"), b"secret").expect("secret");
        std::os::unix::fs::symlink(scratch.outside().join("secret"), work.join("link"))
            .expect("link");
        std::os::unix::fs::symlink(scratch.outside(), work.join("dirlink")).expect("link");
        let out = changed_files(&work, &snapshot);
        let names: Vec<&str> = out.files.keys().map(String::as_str).collect();
        assert_eq!(names, ["d/b.sh", "d/new.txt"]);
        assert_eq!(out.files["d/b.sh"], b"three");
        assert!(out.skipped.is_empty());
    }

    #[test]
    fn a_snapshot_survives_its_bytes() {
        let mut snapshot = Snapshot::default();
        let stamp = |len, secs| Stamp {
            len,
            mtime: (secs, 123_456_789),
        };
        snapshot
            .files
            .insert(PathBuf::from("a"), (stamp(3, 1_700_000_000), 42));
        snapshot
            .files
            .insert(PathBuf::from("dir/b c\nd"), (stamp(0, -5), u64::MAX));
        let bytes = snapshot.to_bytes();
        let back = Snapshot::from_bytes(&bytes).expect("readable");
        assert_eq!(back.files, snapshot.files);
        assert!(Snapshot::from_bytes(&bytes[..bytes.len() - 1]).is_none());
        assert!(Snapshot::from_bytes(&[]).is_some_and(|s| s.files.is_empty()));
    }

    #[test]
    fn fnv1a_known_values() {
        // Published FNV-1a 64-bit test vectors.
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }
}
