//! The migration stream: a checkpoint's CRIU images and its task directory in one byte
//! stream, produced piece by piece ([`PackReader`] is a `Read`) and consumed piece by piece
//! ([`Unpacker::feed`]), so neither side ever holds the images whole in memory.
//!
//! Layout (integers big-endian): the magic `XGRIDCKPT1`, the task directory's absolute
//! path (`u16` length, bytes), then entries, then the tag `E`. An entry is a tag (`D`
//! directory, `F` file, `L` symbolic link), a tree byte (`I` images, `T` task directory),
//! a relative path (`u16` length, bytes; empty for the tree's root), `mode`, `uid`, `gid`
//! (`u32` each), the modification time (`i64` seconds, `u32` nanoseconds); then for a file
//! its size (`u64`) and bytes, for a link its target (`u16` length, bytes). Directories
//! come before what they hold.
//!
//! Both sides do ordinary blocking file I/O, one piece at a time; an async caller can run
//! them on a blocking thread.
//!
//! The task directory is taken as it was at the dump ([`Manifest`]): CRIU refuses to
//! restore a file whose size differs from the one it recorded, and the wrappers around the
//! task may still append to stderr after the dump.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAGIC: &[u8] = b"XGRIDCKPT1";
/// Longest path or link target the stream carries (Linux's PATH_MAX).
const MAX_PATH: usize = 4096;
/// `O_NOFOLLOW` on Linux, so an entry swapped for a link after the walk is not followed.
const O_NOFOLLOW: i32 = 0o400_000;
/// Mode bits kept on unpacking: set-user-ID and set-group-ID never travel, so a stream
/// cannot plant a privileged program at the destination.
const KEPT_MODE_BITS: u32 = 0o1777;

/// What went wrong while packing or unpacking a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} changed since the dump (it was {was} bytes, it is now {now}): the task must stay \
         stopped or dead until its checkpoint is packed",
        path.display()
    )]
    ChangedSinceDump { path: PathBuf, was: u64, now: u64 },
    #[error("{} cannot travel with a checkpoint: only files, directories and symbolic links can", path.display())]
    UnsupportedFile { path: PathBuf },
    #[error("{} is too long a path for a checkpoint stream", path.display())]
    PathTooLong { path: PathBuf },
    #[error("the checkpoint stream is malformed: {0}")]
    Malformed(String),
    #[error("the checkpoint stream ended early (truncated transfer?)")]
    Truncated,
    #[error("{} already exists: a task directory is restored only where nothing is", path.display())]
    Exists { path: PathBuf },
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PackError + 'a {
    move |source| PackError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Which of the two trees an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    Images,
    Task,
}

impl Tree {
    fn byte(self) -> u8 {
        match self {
            Tree::Images => b'I',
            Tree::Task => b'T',
        }
    }

    fn from_byte(byte: u8) -> Option<Tree> {
        match byte {
            b'I' => Some(Tree::Images),
            b'T' => Some(Tree::Task),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    /// A file and how many of its bytes travel.
    File(u64),
    Link(PathBuf),
}

/// One directory, file or link, as recorded at the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Relative to the tree's root; empty for the root itself.
    path: PathBuf,
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, u32),
}

/// A tree as it was at one moment: every entry, directories before their contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    entries: Vec<Entry>,
}

impl Manifest {
    /// Record `root` and everything under it without following symbolic links.
    pub fn capture(root: &Path) -> Result<Manifest, PackError> {
        let mut entries = Vec::new();
        let mut pending = vec![PathBuf::new()];
        while let Some(relative) = pending.pop() {
            let path = root.join(&relative);
            let meta = fs::symlink_metadata(&path).map_err(io_error("inspect", &path))?;
            let kind = if meta.file_type().is_dir() {
                let mut children = Vec::new();
                for child in fs::read_dir(&path).map_err(io_error("list", &path))? {
                    let child = child.map_err(io_error("list", &path))?;
                    children.push(relative.join(child.file_name()));
                }
                // Sorted, then reversed onto the stack, so the stream's order is stable.
                children.sort();
                pending.extend(children.into_iter().rev());
                Kind::Dir
            } else if meta.file_type().is_file() {
                Kind::File(meta.len())
            } else if meta.file_type().is_symlink() {
                Kind::Link(fs::read_link(&path).map_err(io_error("read the link", &path))?)
            } else {
                return Err(PackError::UnsupportedFile { path });
            };
            let entry = Entry {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                // A link's own time cannot be set on unpacking, so it is not recorded.
                mtime: if meta.file_type().is_symlink() {
                    (0, 0)
                } else {
                    (meta.mtime(), u32::try_from(meta.mtime_nsec()).unwrap_or(0))
                },
                path: relative,
            };
            check_length(&entry.path, root)?;
            if let Kind::Link(target) = &entry.kind {
                check_length(target, root)?;
            }
            entries.push(entry);
        }
        Ok(Manifest { entries })
    }
}

fn check_length(path: &Path, root: &Path) -> Result<(), PackError> {
    if path.as_os_str().len() > MAX_PATH {
        return Err(PackError::PathTooLong {
            path: root.join(path),
        });
    }
    Ok(())
}

/// Lengths were checked against `MAX_PATH` (well under `u16::MAX`) before this.
fn put_u16_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = bytes.get(..MAX_PATH).unwrap_or(bytes);
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn encode_header(tree: Tree, entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + entry.path.as_os_str().len());
    out.push(match entry.kind {
        Kind::Dir => b'D',
        Kind::File(_) => b'F',
        Kind::Link(_) => b'L',
    });
    out.push(tree.byte());
    put_u16_bytes(&mut out, entry.path.as_os_str().as_bytes());
    out.extend_from_slice(&entry.mode.to_be_bytes());
    out.extend_from_slice(&entry.uid.to_be_bytes());
    out.extend_from_slice(&entry.gid.to_be_bytes());
    out.extend_from_slice(&entry.mtime.0.to_be_bytes());
    out.extend_from_slice(&entry.mtime.1.to_be_bytes());
    match &entry.kind {
        Kind::Dir => {}
        Kind::File(size) => out.extend_from_slice(&size.to_be_bytes()),
        Kind::Link(target) => put_u16_bytes(&mut out, target.as_os_str().as_bytes()),
    }
    out
}

/// The stream of one checkpoint, read a piece at a time. Files are opened one by one as
/// the reader reaches them.
#[derive(Debug)]
pub struct PackReader {
    queue: VecDeque<(Tree, PathBuf, Entry)>,
    /// Bytes ready to hand out before anything else.
    header: Vec<u8>,
    header_at: usize,
    /// The file whose content is being streamed, with its path and what is left of it.
    file: Option<(File, PathBuf, u64)>,
    ended: bool,
    written: u64,
}

impl PackReader {
    /// A stream of the images under `images_dir` (all of them, as they are now: CRIU does
    /// not touch them after the dump) and of the task directory as `task` recorded it.
    pub fn new(images_dir: &Path, task_dir: &Path, task: &Manifest) -> Result<Self, PackError> {
        let images = Manifest::capture(images_dir)?;
        let mut queue = VecDeque::new();
        for entry in images.entries {
            queue.push_back((Tree::Images, images_dir.join(&entry.path), entry));
        }
        for entry in &task.entries {
            queue.push_back((Tree::Task, task_dir.join(&entry.path), entry.clone()));
        }
        let mut header = MAGIC.to_vec();
        let task_path = task_dir.as_os_str().as_bytes();
        if task_path.len() > MAX_PATH || !task_dir.is_absolute() {
            return Err(PackError::PathTooLong {
                path: task_dir.to_path_buf(),
            });
        }
        put_u16_bytes(&mut header, task_path);
        Ok(PackReader {
            queue,
            header,
            header_at: 0,
            file: None,
            ended: false,
            written: 0,
        })
    }

    /// The whole stream's length in bytes: call it before reading, as it counts what is
    /// still queued (the files' sizes were recorded; a file that changes since makes reading
    /// fail instead).
    pub fn total_len(&self) -> u64 {
        let entries: u64 = self
            .queue
            .iter()
            .map(|(tree, _, entry)| {
                let content = match entry.kind {
                    Kind::File(size) => size,
                    Kind::Dir | Kind::Link(_) => 0,
                };
                encode_header(*tree, entry).len() as u64 + content
            })
            .sum();
        // Magic and task path, the entries, the end tag.
        self.header.len() as u64 + entries + 1
    }

    /// Bytes handed out so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Move to the next entry: queue its header and open its file.
    fn advance(&mut self) -> Result<(), PackError> {
        self.header.clear();
        self.header_at = 0;
        let Some((tree, path, entry)) = self.queue.pop_front() else {
            if !self.ended {
                self.header.push(b'E');
                self.ended = true;
            }
            return Ok(());
        };
        if let Kind::File(size) = entry.kind {
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(O_NOFOLLOW)
                .open(&path)
                .map_err(io_error("open", &path))?;
            let now = file.metadata().map_err(io_error("inspect", &path))?.len();
            if now < size || !file.metadata().is_ok_and(|m| m.is_file()) {
                return Err(PackError::ChangedSinceDump {
                    path,
                    was: size,
                    now,
                });
            }
            self.file = Some((file, path, size));
        }
        self.header = encode_header(tree, &entry);
        Ok(())
    }

    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, PackError> {
        loop {
            if let Some(pending) = self.header.get(self.header_at..).filter(|p| !p.is_empty()) {
                let n = pending.len().min(buf.len());
                buf[..n].copy_from_slice(&pending[..n]);
                self.header_at += n;
                return Ok(n);
            }
            if let Some((file, path, left)) = &mut self.file {
                if *left == 0 {
                    self.file = None;
                    continue;
                }
                let want = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                let n = file
                    .read(&mut buf[..want])
                    .map_err(io_error("read", path))?;
                if n == 0 {
                    // The file shrank after `advance` checked it.
                    return Err(PackError::ChangedSinceDump {
                        path: path.clone(),
                        was: *left,
                        now: 0,
                    });
                }
                *left -= n as u64;
                return Ok(n);
            }
            if self.ended {
                return Ok(0);
            }
            self.advance()?;
        }
    }
}

impl Read for PackReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.read_some(buf).map_err(std::io::Error::other)?;
        self.written += n as u64;
        Ok(n)
    }
}

/// What an unpacked stream produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// Where the task directory was recreated: the path it had at the source.
    pub task_dir: PathBuf,
    /// The checkpoint directory the images went to.
    pub images_dir: PathBuf,
    /// Bytes of the stream consumed.
    pub bytes: u64,
}

impl Unpacked {
    /// Remove the task directory and checkpoint directory this stream created (after a
    /// failed restore).
    pub fn discard(&self) {
        // Best effort: leftovers of an abandoned move.
        let _ = fs::remove_dir_all(&self.task_dir);
        let _ = fs::remove_dir_all(&self.images_dir);
    }
}

#[derive(Debug)]
enum State {
    /// Waiting for the magic and the task directory's path.
    Start,
    /// Between entries.
    Entry,
    /// Writing a file's bytes.
    Data {
        file: File,
        path: PathBuf,
        left: u64,
    },
    Ended,
}

/// Rebuilds a checkpoint from its stream, fed in pieces of any size. Nothing outside the
/// images directory and the task directory is written; every path is checked, and nothing
/// already on disk is followed or overwritten. On an error the caller should
/// [`Unpacker::discard`] what was written.
#[derive(Debug)]
pub struct Unpacker {
    images_dir: PathBuf,
    task_dir: Option<PathBuf>,
    pending: Vec<u8>,
    state: State,
    /// Directories created so far, per tree, so entries can only land inside them.
    dirs: BTreeSet<(u8, PathBuf)>,
    /// Directory modes and times, applied at the end (writing into a directory changes its
    /// time, and a read-only mode would get in the way).
    dir_attrs: Vec<(PathBuf, Entry)>,
    bytes: u64,
}

impl Unpacker {
    /// Unpack the checkpoint directory into `images_dir`, which must not exist yet. The
    /// task directory goes where the stream says it was at the source, which must not
    /// exist either.
    pub fn new(images_dir: &Path) -> Unpacker {
        Unpacker {
            images_dir: images_dir.to_path_buf(),
            task_dir: None,
            pending: Vec::new(),
            state: State::Start,
            dirs: BTreeSet::new(),
            dir_attrs: Vec::new(),
            bytes: 0,
        }
    }

    /// The task directory named by the stream, once its start has been read.
    pub fn task_dir(&self) -> Option<&Path> {
        self.task_dir.as_deref()
    }

    /// Take the next piece of the stream.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), PackError> {
        self.bytes += data.len() as u64;
        loop {
            match self.state {
                State::Data { .. } => {
                    // Bytes already gathered as a possible header come first.
                    if !self.pending.is_empty() {
                        let pending = std::mem::take(&mut self.pending);
                        let used = self.write_data(&pending)?;
                        self.pending = pending.get(used..).unwrap_or_default().to_vec();
                    } else if !data.is_empty() {
                        let used = self.write_data(data)?;
                        data = data.get(used..).unwrap_or_default();
                    } else {
                        return Ok(());
                    }
                }
                State::Ended => {
                    return if self.pending.is_empty() && data.is_empty() {
                        Ok(())
                    } else {
                        Err(PackError::Malformed("data after the end mark".into()))
                    };
                }
                State::Start | State::Entry => {
                    if let Some(parsed) = self.parse_pending()? {
                        self.apply(parsed)?;
                        continue;
                    }
                    if data.is_empty() {
                        return Ok(());
                    }
                    // Headers are small: gather one whole before acting on it.
                    let (head, rest) = data.split_at(data.len().min(HEADER_CHUNK));
                    self.pending.extend_from_slice(head);
                    data = rest;
                }
            }
        }
    }

    /// Write file bytes; returns how many were used.
    fn write_data(&mut self, data: &[u8]) -> Result<usize, PackError> {
        let State::Data { file, path, left } = &mut self.state else {
            return Ok(0);
        };
        let n = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
        let chunk = data.get(..n).unwrap_or_default();
        file.write_all(chunk).map_err(io_error("write", path))?;
        *left -= n as u64;
        if *left == 0 {
            self.state = State::Entry;
        }
        Ok(n)
    }

    /// The next complete header in `pending`, taken out of it; `None` until one is whole.
    fn parse_pending(&mut self) -> Result<Option<Parsed>, PackError> {
        let mut cursor = Cursor::new(&self.pending);
        let parsed = match self.state {
            State::Start => parse_start(&mut cursor).map(|r| r.map(Parsed::Start)),
            _ => parse_entry(&mut cursor),
        };
        match parsed {
            Ok(parsed) => {
                let used = cursor.at;
                let parsed = parsed?;
                self.pending.drain(..used);
                Ok(Some(parsed))
            }
            Err(Short) if self.pending.len() > MAX_HEADER => {
                Err(PackError::Malformed("an entry header is too long".into()))
            }
            Err(Short) => Ok(None),
        }
    }

    fn apply(&mut self, parsed: Parsed) -> Result<(), PackError> {
        match parsed {
            Parsed::Start(task_dir) => {
                // Said at once, in the stream's first chunk, so that the agent can clear a
                // directory left by an ended run of the same task and take the stream again.
                if fs::symlink_metadata(&task_dir).is_ok() {
                    return Err(PackError::Exists { path: task_dir });
                }
                self.task_dir = Some(task_dir);
                self.state = State::Entry;
            }
            Parsed::End => {
                if !self.dirs.contains(&(b'T', PathBuf::new())) {
                    return Err(PackError::Malformed("the task directory is missing".into()));
                }
                self.state = State::Ended;
            }
            Parsed::Entry(tree, entry) => self.create(tree, entry)?,
        }
        Ok(())
    }

    fn root(&self, tree: Tree) -> Result<&Path, PackError> {
        match tree {
            Tree::Images => Ok(&self.images_dir),
            Tree::Task => self
                .task_dir
                .as_deref()
                .ok_or_else(|| PackError::Malformed("no task directory".into())),
        }
    }

    fn create(&mut self, tree: Tree, entry: Entry) -> Result<(), PackError> {
        let key = tree.byte();
        let root = self.root(tree)?.to_path_buf();
        let path = root.join(&entry.path);
        let is_root = entry.path.as_os_str().is_empty();
        if is_root {
            if entry.kind != Kind::Dir || self.dirs.contains(&(key, PathBuf::new())) {
                return Err(PackError::Malformed(
                    "a tree's root must be one directory".into(),
                ));
            }
            if fs::symlink_metadata(&root).is_ok() {
                return Err(PackError::Exists { path: root });
            }
            if let Some(parent) = root.parent() {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o711)
                    .create(parent)
                    .map_err(io_error("create", parent))?;
            }
        } else {
            let parent = entry.path.parent().unwrap_or(Path::new("")).to_path_buf();
            if !self.dirs.contains(&(key, parent)) {
                return Err(PackError::Malformed(format!(
                    "{} comes before its directory",
                    entry.path.display()
                )));
            }
        }
        let owner = |result: std::io::Result<()>| result.map_err(io_error("hand over", &path));
        match &entry.kind {
            Kind::Dir => {
                DirBuilder::new()
                    .mode(0o700)
                    .create(&path)
                    .map_err(|e| already(e, &path, "create"))?;
                owner(std::os::unix::fs::lchown(
                    &path,
                    Some(entry.uid),
                    Some(entry.gid),
                ))?;
                self.dirs.insert((key, entry.path.clone()));
                self.dir_attrs.push((path, entry));
            }
            Kind::File(size) => {
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(O_NOFOLLOW)
                    .open(&path)
                    .map_err(|e| already(e, &path, "create"))?;
                owner(std::os::unix::fs::fchown(
                    &file,
                    Some(entry.uid),
                    Some(entry.gid),
                ))?;
                file.set_permissions(fs::Permissions::from_mode(entry.mode & KEPT_MODE_BITS))
                    .map_err(io_error("set the mode of", &path))?;
                let size = *size;
                // The time is set now; the bytes written next do not change it back
                // because `set_times` is applied through the same descriptor at the end.
                if size == 0 {
                    set_mtime(&file, entry.mtime, &path)?;
                    self.state = State::Entry;
                } else {
                    self.dir_attrs.push((path.clone(), entry.clone()));
                    self.state = State::Data {
                        file,
                        path,
                        left: size,
                    };
                }
            }
            Kind::Link(target) => {
                std::os::unix::fs::symlink(target, &path)
                    .map_err(|e| already(e, &path, "create the link"))?;
                owner(std::os::unix::fs::lchown(
                    &path,
                    Some(entry.uid),
                    Some(entry.gid),
                ))?;
            }
        }
        Ok(())
    }

    /// The stream has ended: check it was whole and give directories (and files) their
    /// recorded modes and times.
    pub fn finish(mut self) -> Result<Unpacked, PackError> {
        if !matches!(self.state, State::Ended) {
            return Err(PackError::Truncated);
        }
        // Deepest first, so setting a parent's time is not undone by its children.
        for (path, entry) in self.dir_attrs.drain(..).rev() {
            let file = File::open(&path).map_err(io_error("open", &path))?;
            if entry.kind == Kind::Dir {
                file.set_permissions(fs::Permissions::from_mode(entry.mode & KEPT_MODE_BITS))
                    .map_err(io_error("set the mode of", &path))?;
            }
            set_mtime(&file, entry.mtime, &path)?;
        }
        let task_dir = self.task_dir.take().ok_or(PackError::Truncated)?;
        Ok(Unpacked {
            task_dir,
            images_dir: self.images_dir.clone(),
            bytes: self.bytes,
        })
    }

    /// Remove what this unpacker created (after an error, or a failed restore).
    pub fn discard(self) {
        // Best effort: these are leftovers of a migration that is being abandoned.
        if self.dirs.contains(&(b'I', PathBuf::new())) {
            let _ = fs::remove_dir_all(&self.images_dir);
        }
        if let (Some(task_dir), true) =
            (&self.task_dir, self.dirs.contains(&(b'T', PathBuf::new())))
        {
            let _ = fs::remove_dir_all(task_dir);
        }
    }
}

impl Write for Unpacker {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.feed(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn already(e: std::io::Error, path: &Path, action: &'static str) -> PackError {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        PackError::Malformed(format!("{} appears twice", path.display()))
    } else {
        io_error(action, path)(e)
    }
}

fn set_mtime(file: &File, (secs, nanos): (i64, u32), path: &Path) -> Result<(), PackError> {
    let time = if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs.unsigned_abs(), nanos.min(999_999_999))
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    file.set_times(
        fs::FileTimes::new()
            .set_modified(time)
            .set_accessed(SystemTime::now()),
    )
    .map_err(io_error("set the time of", path))
}

/// Bytes moved into the header buffer at a time: enough for any header, small enough that
/// a file's bytes mostly skip the buffer.
const HEADER_CHUNK: usize = 2 * MAX_PATH + 64;
/// No header is longer than this; a buffer that grows past it without parsing is garbage.
const MAX_HEADER: usize = 2 * MAX_PATH + 64;

/// The header in `pending` is not complete yet.
struct Short;

enum Parsed {
    Start(PathBuf),
    Entry(Tree, Entry),
    End,
}

struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Cursor { data, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let bytes = self.data.get(self.at..self.at + n).ok_or(Short)?;
        self.at += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, Short> {
        self.array().map(u32::from_be_bytes)
    }

    fn path(&mut self) -> Result<Vec<u8>, Short> {
        let len = u16::from_be_bytes(self.array()?);
        Ok(self.take(usize::from(len))?.to_vec())
    }
}

fn parse_start(cursor: &mut Cursor<'_>) -> Result<Result<PathBuf, PackError>, Short> {
    let magic = cursor.take(MAGIC.len())?;
    if magic != MAGIC {
        return Ok(Err(PackError::Malformed(
            "it does not start like an xgrid checkpoint".into(),
        )));
    }
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(&cursor.path()?));
    let clean = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && path.parent().is_some();
    Ok(if clean {
        Ok(path)
    } else {
        Err(PackError::Malformed(format!(
            "the task directory {} is not a plain absolute path",
            path.display()
        )))
    })
}

/// Parse one entry (or the end mark). The outer `Result` says whether the header is
/// complete; the inner one whether it makes sense.
fn parse_entry(cursor: &mut Cursor<'_>) -> Result<Result<Parsed, PackError>, Short> {
    let tag = cursor.u8()?;
    if tag == b'E' {
        return Ok(Ok(Parsed::End));
    }
    let tree = cursor.u8()?;
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(&cursor.path()?));
    let mode = cursor.u32()?;
    let uid = cursor.u32()?;
    let gid = cursor.u32()?;
    let secs = i64::from_be_bytes(cursor.array()?);
    let nanos = cursor.u32()?;
    let kind = match tag {
        b'D' => Kind::Dir,
        b'F' => Kind::File(u64::from_be_bytes(cursor.array()?)),
        b'L' => Kind::Link(PathBuf::from(std::ffi::OsStr::from_bytes(&cursor.path()?))),
        other => {
            return Ok(Err(PackError::Malformed(format!(
                "unknown entry tag {other:#04x}"
            ))))
        }
    };
    let Some(tree) = Tree::from_byte(tree) else {
        return Ok(Err(PackError::Malformed(format!(
            "unknown tree {tree:#04x}"
        ))));
    };
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Ok(Err(PackError::Malformed(format!(
            "entry path {} is not plainly relative",
            path.display()
        ))));
    }
    Ok(Ok(Parsed::Entry(
        tree,
        Entry {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime: (secs, nanos),
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("xgrid-pack-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("scratch");
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Images and a task directory with a bit of everything.
    fn sample(scratch: &Scratch) -> (PathBuf, PathBuf) {
        let images = scratch.0.join("images");
        fs::create_dir_all(images.join("sub")).expect("images");
        fs::write(images.join("core-1.img"), vec![7u8; 70_000]).expect("img");
        fs::write(images.join("sub/pages-1.img"), b"pages").expect("img");
        std::os::unix::fs::symlink("sub", images.join("parent")).expect("link");
        let task = scratch.0.join("src/tasks/42");
        fs::create_dir_all(task.join("work/deep")).expect("task");
        fs::write(task.join("stdout"), b"1\n2\n3\n").expect("stdout");
        fs::write(task.join("stderr"), b"").expect("stderr");
        fs::write(task.join("work/deep/out.dat"), b"result").expect("out");
        fs::set_permissions(
            task.join("work/deep/out.dat"),
            fs::Permissions::from_mode(0o751),
        )
        .expect("chmod");
        (images, task)
    }

    fn pack_all(images: &Path, task: &Path, manifest: &Manifest) -> Vec<u8> {
        let mut reader = PackReader::new(images, task, manifest).expect("pack");
        let announced = reader.total_len();
        let mut stream = Vec::new();
        reader.read_to_end(&mut stream).expect("read");
        assert_eq!(reader.bytes_written(), stream.len() as u64);
        assert_eq!(announced, stream.len() as u64, "total_len before reading");
        stream
    }

    fn same_tree(a: &Path, b: &Path) {
        let (ma, mb) = (
            Manifest::capture(a).expect("a"),
            Manifest::capture(b).expect("b"),
        );
        assert_eq!(ma, mb, "{} and {}", a.display(), b.display());
        for entry in &ma.entries {
            if let Kind::File(_) = entry.kind {
                assert_eq!(
                    fs::read(a.join(&entry.path)).expect("read a"),
                    fs::read(b.join(&entry.path)).expect("read b")
                );
            }
        }
    }

    fn unpack_in_pieces(stream: &[u8], images: &Path, piece: usize) -> Result<Unpacked, PackError> {
        let mut unpacker = Unpacker::new(images);
        for chunk in stream.chunks(piece.max(1)) {
            unpacker.feed(chunk)?;
        }
        unpacker.finish()
    }

    #[test]
    fn round_trip_in_pieces_of_any_size() {
        let scratch = Scratch::new("round-trip");
        let (images, task) = sample(&scratch);
        let manifest = Manifest::capture(&task).expect("manifest");
        let stream = pack_all(&images, &task, &manifest);
        for piece in [1, 7, 4096, stream.len()] {
            let moved = scratch.0.join("moved");
            fs::rename(&task, &moved).expect("move away");
            let dest_images = scratch.0.join(format!("dest-{piece}"));
            let unpacked = unpack_in_pieces(&stream, &dest_images, piece).expect("unpack");
            assert_eq!(unpacked.task_dir, task);
            assert_eq!(unpacked.bytes, stream.len() as u64);
            same_tree(&moved, &task);
            same_tree(&images, &dest_images);
            fs::remove_dir_all(&task).expect("clean");
            fs::rename(&moved, &task).expect("move back");
        }
    }

    #[test]
    fn the_task_directory_travels_as_it_was_at_the_dump() {
        let scratch = Scratch::new("as-at-dump");
        let (images, task) = sample(&scratch);
        let manifest = Manifest::capture(&task).expect("manifest");
        // After the dump, unshare complains into stderr and the task's stdout grows.
        fs::write(task.join("stderr"), b"unshare: late complaint\n").expect("grow");
        fs::write(task.join("stdout"), b"1\n2\n3\n4\n").expect("grow");
        let stream = pack_all(&images, &task, &manifest);
        fs::remove_dir_all(&task).expect("tear down");
        unpack_in_pieces(&stream, &scratch.0.join("dest"), 100).expect("unpack");
        assert_eq!(fs::read(task.join("stdout")).expect("stdout"), b"1\n2\n3\n");
        assert_eq!(fs::read(task.join("stderr")).expect("stderr"), b"");
    }

    #[test]
    fn a_file_that_shrank_since_the_dump_is_refused() {
        let scratch = Scratch::new("shrank");
        let (images, task) = sample(&scratch);
        let manifest = Manifest::capture(&task).expect("manifest");
        fs::write(task.join("stdout"), b"1\n").expect("shrink");
        let mut reader = PackReader::new(&images, &task, &manifest).expect("pack");
        let error = reader.read_to_end(&mut Vec::new()).expect_err("must fail");
        assert!(
            error.to_string().contains("changed since the dump"),
            "{error}"
        );
    }

    #[test]
    fn truncated_stream_is_an_error_and_discard_cleans_up() {
        let scratch = Scratch::new("truncated");
        let (images, task) = sample(&scratch);
        let manifest = Manifest::capture(&task).expect("manifest");
        let stream = pack_all(&images, &task, &manifest);
        fs::remove_dir_all(&task).expect("tear down");
        let dest = scratch.0.join("dest");
        let mut unpacker = Unpacker::new(&dest);
        unpacker.feed(&stream[..stream.len() - 10]).expect("feed");
        assert!(task.exists() && dest.exists());
        assert!(matches!(unpacker.finish(), Err(PackError::Truncated)));
        fs::remove_dir_all(&task).expect("clean");
        // Short by the end mark alone.
        let mut again = Unpacker::new(&dest.join("again"));
        again.feed(&stream[..stream.len() - 1]).expect("feed");
        assert!(task.exists() && dest.join("again").exists());
        again.discard();
        assert!(!task.exists() && !dest.join("again").exists());
    }

    #[test]
    fn an_existing_task_directory_is_never_overwritten() {
        let scratch = Scratch::new("exists");
        let (images, task) = sample(&scratch);
        let manifest = Manifest::capture(&task).expect("manifest");
        let stream = pack_all(&images, &task, &manifest);
        let result = unpack_in_pieces(&stream, &scratch.0.join("dest"), 1 << 20);
        assert!(
            matches!(result, Err(PackError::Exists { .. })),
            "{result:?}"
        );
        assert_eq!(fs::read(task.join("stdout")).expect("intact"), b"1\n2\n3\n");
    }

    fn header(task_dir: &str) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        put_u16_bytes(&mut out, task_dir.as_bytes());
        out
    }

    fn entry(tree: Tree, path: &str, kind: Kind) -> Vec<u8> {
        encode_header(
            tree,
            &Entry {
                path: PathBuf::from(path),
                kind,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: (1_700_000_000, 0),
            },
        )
    }

    #[test]
    fn hostile_streams_are_refused_without_writing_outside() {
        let scratch = Scratch::new("hostile");
        let task = scratch.0.join("tasks/9");
        let task_str = task.to_str().expect("utf-8");
        let outside = scratch.0.join("outside");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("bad magic", b"NOTXGRID!!".to_vec()),
            ("relative task dir", header("tasks/9")),
            ("task dir with ..", header(&format!("{task_str}/../9"))),
            ("climbing entry", {
                let mut s = header(task_str);
                s.extend(entry(Tree::Task, "", Kind::Dir));
                s.extend(entry(Tree::Task, "../../outside", Kind::File(3)));
                s
            }),
            ("absolute entry", {
                let mut s = header(task_str);
                s.extend(entry(Tree::Task, "", Kind::Dir));
                s.extend(entry(Tree::Task, "/tmp/x", Kind::Dir));
                s
            }),
            ("through a link", {
                let mut s = header(task_str);
                s.extend(entry(Tree::Task, "", Kind::Dir));
                s.extend(entry(Tree::Task, "l", Kind::Link(outside.clone())));
                s.extend(entry(Tree::Task, "l/x", Kind::File(3)));
                s.extend(b"abc");
                s
            }),
            ("entry before its directory", {
                let mut s = header(task_str);
                s.extend(entry(Tree::Task, "a/b", Kind::File(0)));
                s
            }),
            ("unknown tag", {
                let mut s = header(task_str);
                s.extend(b"Z");
                s.extend(vec![0u8; 40]);
                s
            }),
        ];
        fs::create_dir_all(&outside).expect("outside");
        for (name, stream) in cases {
            let dest = scratch.0.join("images");
            let mut unpacker = Unpacker::new(&dest);
            let result = unpacker.feed(&stream);
            assert!(
                matches!(result, Err(PackError::Malformed(_))),
                "{name}: {result:?}"
            );
            unpacker.discard();
            assert!(!task.exists(), "{name}");
            assert!(!outside.join("x").exists(), "{name}");
            assert!(!scratch.0.join("outside/x").exists(), "{name}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let scratch = Scratch::new("garbage");
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for round in 0..200 {
            let mut stream = header(scratch.0.join("t").to_str().expect("utf-8"));
            for _ in 0..(round % 50) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                stream.push((seed % 256) as u8);
            }
            let dest = scratch.0.join("images");
            let mut unpacker = Unpacker::new(&dest);
            let _ = unpacker.feed(&stream);
            unpacker.discard();
        }
    }
}
