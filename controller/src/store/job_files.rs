//! The input files of the job whose tasks are being started, kept from one task's launch to
//! the next: every task of a job receives all of them, and reading them again for each task
//! was a statement (a hop to SQLite's thread) per task. One job is kept, the last one asked
//! for; a job's files never change once stored, and the entry is checked against the job's
//! submission date and file count (read with the task) and dropped when the job is deleted,
//! so a job can never be given another job's files, even were a number ever used twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use xgrid_protocol::jobspec::InputFile;

use super::JobId;

/// A job's input files by path.
pub(super) type JobFiles = Arc<BTreeMap<String, InputFile>>;

/// What identifies one stored job beyond its number: its submission date (as bits, so it
/// compares exactly) and how many input files it has.
pub(super) type Stamp = (u64, i64);

pub(super) fn stamp(date_submitted: f64, file_count: i64) -> Stamp {
    (date_submitted.to_bits(), file_count)
}

#[derive(Debug, Default)]
pub(super) struct JobFilesCache {
    last: Mutex<Option<(JobId, Stamp, JobFiles)>>,
}

impl JobFilesCache {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(JobId, Stamp, JobFiles)>> {
        // Holds a plain value: usable even if a holder panicked.
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The files kept for `job`, if they are that very job's.
    pub fn get(&self, job: JobId, stamp: Stamp) -> Option<JobFiles> {
        match &*self.slot() {
            Some((kept, kept_stamp, files)) if *kept == job && *kept_stamp == stamp => {
                Some(Arc::clone(files))
            }
            _ => None,
        }
    }

    pub fn keep(&self, job: JobId, stamp: Stamp, files: JobFiles) {
        *self.slot() = Some((job, stamp, files));
    }

    /// The job is gone: its files are not to be handed out again.
    pub fn forget(&self, job: JobId) {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|(kept, _, _)| *kept == job) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(name: &str) -> JobFiles {
        let file = InputFile {
            data: b"data".to_vec().into(),
            is_executable: false,
        };
        Arc::new(BTreeMap::from([(name.to_string(), file)]))
    }

    #[test]
    fn only_the_same_job_with_the_same_stamp_gets_the_kept_files() {
        let cache = JobFilesCache::default();
        assert!(cache.get(1, stamp(10.5, 1)).is_none());
        cache.keep(1, stamp(10.5, 1), files("a"));
        assert!(cache
            .get(1, stamp(10.5, 1))
            .is_some_and(|f| f.contains_key("a")));
        assert!(cache.get(2, stamp(10.5, 1)).is_none(), "another job");
        assert!(
            cache.get(1, stamp(10.25, 1)).is_none(),
            "a job submitted again"
        );
        assert!(cache.get(1, stamp(10.5, 2)).is_none(), "other files");
        cache.forget(2);
        assert!(
            cache.get(1, stamp(10.5, 1)).is_some(),
            "forgetting another job"
        );
        cache.forget(1);
        assert!(cache.get(1, stamp(10.5, 1)).is_none());
        cache.keep(1, stamp(10.5, 1), files("a"));
        cache.keep(3, stamp(11.0, 1), files("b"));
        assert!(cache.get(1, stamp(10.5, 1)).is_none(), "one job is kept");
        assert!(cache
            .get(3, stamp(11.0, 1))
            .is_some_and(|f| f.contains_key("b")));
    }
}
