//! Task directories kept for the next task. A task's directory is a directory, its working
//! directory and three or four files; made and deleted for every task, they cost more than
//! starting the task's processes on an ext4 file system without a journal, where every new
//! inode is hunted for past each one freed in the last seconds (measured here: over half of
//! the agent's CPU after 20,000 tasks of `/bin/true`). So the directory of a task that has
//! ended is emptied of what the task left (its working directory's contents, its standard
//! input) and renamed aside, its stream files cut to nothing, and the next task's directory
//! is made by renaming it back.
//!
//! Only the directories of tasks that ran in a PID namespace of their own come here: once
//! the namespace's init has ended no process of the task is left to hold a file open, so
//! nothing of one task can reach the next.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// At most this many spare directories are kept (more than any agent has slots).
const KEPT: usize = 32;

/// The working directory's mode, as a new task's gets it.
pub(crate) const WORK_MODE: u32 = 0o700;

/// The files a spare keeps, emptied: the streams and the record of the inputs.
const KEPT_FILES: [&str; 3] = ["stdout", "stderr", super::INPUTS_FILE];

/// The spare directories of one agent's task directory.
#[derive(Debug)]
pub(crate) struct Spares {
    tasks: PathBuf,
    free: Mutex<Vec<PathBuf>>,
    named: AtomicU64,
}

impl Spares {
    pub(crate) fn new(tasks: &Path) -> Spares {
        Spares {
            tasks: tasks.to_path_buf(),
            free: Mutex::new(Vec::new()),
            named: AtomicU64::new(0),
        }
    }

    /// Renames a spare directory to `root`; false when there is none (or it could not be
    /// moved, and is deleted). A spare holds an empty `work/` and the empty files a task's
    /// directory starts with.
    pub(crate) fn take(&self, root: &Path) -> bool {
        let spare = self.free.lock().ok().and_then(|mut free| free.pop());
        let Some(spare) = spare else {
            return false;
        };
        match fs::rename(&spare, root) {
            Ok(()) => true,
            Err(_) => {
                let _ = fs::remove_dir_all(&spare);
                false
            }
        }
    }

    /// Keeps `root`, the directory of a task that has ended, for a later task; deletes it
    /// when enough are kept or it cannot be emptied.
    pub(crate) fn keep(&self, root: &Path) -> io::Result<()> {
        let room = self.free.lock().is_ok_and(|free| free.len() < KEPT);
        if !room || empty(root).is_err() {
            return fs::remove_dir_all(root);
        }
        let number = self.named.fetch_add(1, Ordering::Relaxed);
        let spare = self.tasks.join(format!(".spare-{number}"));
        if let Err(e) = fs::rename(root, &spare) {
            let _ = fs::remove_dir_all(root);
            return Err(e);
        }
        match self.free.lock() {
            Ok(mut free) => free.push(spare),
            Err(_) => fs::remove_dir_all(&spare)?,
        }
        Ok(())
    }

    /// How many spares wait.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.free.lock().map(|free| free.len()).unwrap_or(0)
    }
}

/// Empties a task's directory back to the shape a new one has: an empty `work/` with a new
/// task's mode, and [`KEPT_FILES`] cut to nothing. Anything else in it is an error (the
/// directory is then deleted instead).
fn empty(root: &Path) -> io::Result<()> {
    let work = root.join("work");
    for entry in fs::read_dir(&work)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    // The task's user owns its working directory and may have changed its mode.
    fs::set_permissions(&work, fs::Permissions::from_mode(WORK_MODE))?;
    match fs::remove_file(root.join("stdin")) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    for name in KEPT_FILES {
        truncate(&root.join(name))?;
    }
    for entry in fs::read_dir(root)? {
        let name = entry?.file_name();
        if name != "work" && !KEPT_FILES.iter().any(|kept| name == *kept) {
            return Err(io::Error::other(format!("unexpected {name:?}")));
        }
    }
    Ok(())
}

/// Opens one of a task directory's own files for writing from the start, cut to nothing;
/// never through a symbolic link.
pub(crate) fn truncate(path: &Path) -> io::Result<fs::File> {
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xgrid-spare-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch");
        dir
    }

    /// A task's directory as a task leaves it.
    fn used_task_dir(root: &Path) {
        fs::create_dir_all(root.join("work/sub/deeper")).expect("work");
        fs::write(root.join("work/out.txt"), b"output").expect("output");
        fs::write(root.join("work/sub/deeper/x"), b"x").expect("nested output");
        fs::set_permissions(root.join("work"), fs::Permissions::from_mode(0o777)).expect("chmod");
        for (name, data) in [
            ("stdout", "out"),
            ("stderr", "err"),
            ("inputs", "{}"),
            ("stdin", "in"),
        ] {
            fs::write(root.join(name), data).expect("file");
        }
    }

    #[test]
    fn a_kept_directory_comes_back_empty_under_the_new_name() {
        let tasks = scratch("keep");
        let spares = Spares::new(&tasks);
        let first = tasks.join("1-abc");
        used_task_dir(&first);
        spares.keep(&first).expect("keep");
        assert!(!first.exists());
        assert_eq!(spares.count(), 1);

        let second = tasks.join("2-def");
        assert!(spares.take(&second));
        assert_eq!(spares.count(), 0);
        assert_eq!(fs::read_dir(second.join("work")).expect("work").count(), 0);
        let mode = fs::metadata(second.join("work"))
            .expect("work")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, WORK_MODE);
        for name in KEPT_FILES {
            assert_eq!(
                fs::metadata(second.join(name)).expect(name).len(),
                0,
                "{name}"
            );
        }
        assert!(!second.join("stdin").exists());
        // Nothing is left under the tasks directory but the task's own.
        let names: Vec<_> = fs::read_dir(&tasks)
            .expect("tasks")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["2-def"]);
        assert!(!spares.take(&tasks.join("3-ghi")), "no spare left");
        fs::remove_dir_all(&tasks).expect("clean up");
    }

    #[test]
    fn odd_directories_are_deleted_not_kept_and_the_pool_is_bounded() {
        let tasks = scratch("odd");
        let spares = Spares::new(&tasks);
        let odd = tasks.join("odd");
        used_task_dir(&odd);
        fs::write(odd.join("core"), b"?").expect("stray file");
        spares.keep(&odd).expect("deleted");
        assert!(!odd.exists());
        assert_eq!(spares.count(), 0);

        // A symbolic link in place of a stream is not followed.
        let linked = tasks.join("linked");
        used_task_dir(&linked);
        let target = tasks.join("target");
        fs::write(&target, b"keep me").expect("target");
        fs::remove_file(linked.join("stdout")).expect("rm");
        std::os::unix::fs::symlink(&target, linked.join("stdout")).expect("symlink");
        spares.keep(&linked).expect("deleted");
        assert!(!linked.exists());
        assert_eq!(fs::read(&target).expect("target"), b"keep me");

        for i in 0..KEPT + 3 {
            let root = tasks.join(format!("t{i}"));
            used_task_dir(&root);
            spares.keep(&root).expect("keep");
        }
        assert_eq!(spares.count(), KEPT);
        fs::remove_dir_all(&tasks).expect("clean up");
    }
}
