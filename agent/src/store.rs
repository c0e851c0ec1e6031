//! What the agent keeps in its data directory between runs: the cookie the controller
//! handed out at registration (`DATA/cookie`) and the taskRef counter (`DATA/next-task-ref`,
//! the first number not yet reserved).
//! Both are written to a temporary file and renamed into place, so a crash never leaves a
//! half-written value behind.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const COOKIE_FILE: &str = "cookie";
const TASK_REF_FILE: &str = "next-task-ref";

/// Why the data directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not {action} {}: {source} (check that the data directory exists and the agent may write to it)", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} should hold a decimal number but holds {text:?}: delete it and the agent starts counting afresh", path.display())]
    BadCounter { path: PathBuf, text: String },
}

/// The agent's data directory.
#[derive(Debug, Clone)]
pub struct DataStore {
    dir: PathBuf,
}

impl DataStore {
    /// Use `dir`, creating it if needed. It is left traversable by others (0711) because
    /// tasks running as an unprivileged user reach their working directories through it.
    pub fn open(dir: &Path) -> Result<DataStore, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(dir)
            .map_err(|source| StoreError::Io {
                action: "create the data directory",
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(DataStore {
            dir: dir.to_path_buf(),
        })
    }

    /// The saved cookie, or `""` when the agent never registered (or its cookie was cleared).
    pub fn cookie(&self) -> Result<String, StoreError> {
        Ok(self
            .read_optional(COOKIE_FILE)?
            .map(|text| text.trim().to_string())
            .unwrap_or_default())
    }

    /// Remember the cookie; `""` forgets it.
    pub fn save_cookie(&self, cookie: &str) -> Result<(), StoreError> {
        self.write_atomically(COOKIE_FILE, cookie.as_bytes())
    }

    /// `count` taskRefs never handed out before by an agent using this directory: a
    /// decimal counter, saved past the whole range before any of it is used, so a crash
    /// cannot hand a number out twice (it only skips the rest of the range). One saved
    /// write (with its fsync) per range rather than per task.
    pub fn reserve_task_refs(&self, count: u64) -> Result<std::ops::Range<u64>, StoreError> {
        let next = match self.read_optional(TASK_REF_FILE)? {
            None => 1,
            Some(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| StoreError::BadCounter {
                    path: self.dir.join(TASK_REF_FILE),
                    text: text.clone(),
                })?,
        };
        let end = next.saturating_add(count.max(1));
        self.write_atomically(TASK_REF_FILE, end.to_string().as_bytes())?;
        Ok(next..end)
    }

    fn read_optional(&self, name: &str) -> Result<Option<String>, StoreError> {
        let path = self.dir.join(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    fn write_atomically(&self, name: &str, contents: &[u8]) -> Result<(), StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join(name);
        let temporary = self.dir.join(format!(".{name}.new"));
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io {
                action,
                path,
                source,
            }
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io("create", &temporary))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(io("write", &temporary))?;
        fs::rename(&temporary, &path).map_err(io("replace", &path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store(test: &str) -> (DataStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("xgrid-store-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        (DataStore::open(&dir).expect("open"), dir)
    }

    #[test]
    fn cookie_round_trip_and_clearing() {
        let (store, dir) = temp_store("cookie");
        assert_eq!(store.cookie().expect("read"), "");
        store.save_cookie("abc-123").expect("save");
        assert_eq!(store.cookie().expect("read"), "abc-123");
        // A second store on the same directory (a restarted agent) sees the same cookie.
        let again = DataStore::open(&dir).expect("reopen");
        assert_eq!(again.cookie().expect("read"), "abc-123");
        again.save_cookie("").expect("clear");
        assert_eq!(store.cookie().expect("read"), "");
        assert!(!dir.join(".cookie.new").exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn task_refs_keep_counting_across_restarts() {
        let (store, dir) = temp_store("refs");
        assert_eq!(store.reserve_task_refs(3).expect("refs"), 1..4);
        assert_eq!(store.reserve_task_refs(2).expect("refs"), 4..6);
        let again = DataStore::open(&dir).expect("reopen");
        assert_eq!(again.reserve_task_refs(1).expect("ref"), 6..7);
        fs::write(dir.join(TASK_REF_FILE), "bogus").expect("write");
        assert!(matches!(
            again.reserve_task_refs(1),
            Err(StoreError::BadCounter { .. })
        ));
        let _ = fs::remove_dir_all(&dir);
    }
}
