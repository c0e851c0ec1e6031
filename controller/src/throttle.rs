//! Spacing out what is told about a job whose tasks change quickly.
//!
//! Each task that starts or ends changes its job's counts. A watcher (a client subscribed to
//! the job's attributes, as `xgrid -job wait` is, or an open dashboard) reads the job's
//! attributes for every change it is told of, and that read counts the job's tasks: with a
//! few hundred tasks ending a second, telling every change cost the controller three times
//! the CPU of running the tasks. A [`Throttle`] tells the first change of a job at once and
//! holds the ones that follow within [`JOB_CHANGE_SPACING`], telling them as one when the
//! spacing is over. A change of the job's status is never held (see
//! [`crate::notify::GridEvent::JobStatusChanged`]): it is told at once and cancels what was
//! held, since the attributes it carries are the latest.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::notify::GridEvent;
use crate::store::JobId;

/// The least time between two tellings of one job's count and progress changes.
pub const JOB_CHANGE_SPACING: Duration = Duration::from_millis(100);

/// Beyond this many remembered keys, those last told longer than the spacing ago are
/// forgotten (they would be told at once anyway).
const REMEMBERED: usize = 256;

/// When each key was last told, and which changes wait to be told.
#[derive(Debug)]
pub struct Throttle<K> {
    spacing: Duration,
    last_told: HashMap<K, Instant>,
    held: HashMap<K, Instant>,
}

impl<K: Copy + Eq + Hash> Throttle<K> {
    pub fn new(spacing: Duration) -> Throttle<K> {
        Throttle {
            spacing,
            last_told: HashMap::new(),
            held: HashMap::new(),
        }
    }

    /// A change of `key` at `now`: true when it is to be told now (the caller tells it);
    /// false when it is held until [`Throttle::take_due`] gives it back.
    pub fn change(&mut self, key: K, now: Instant) -> bool {
        if let Some(&last) = self.last_told.get(&key) {
            if now < last + self.spacing {
                self.held.entry(key).or_insert(last + self.spacing);
                return false;
            }
        }
        self.told(key, now);
        true
    }

    /// `key` was told at `now` by other means (a status change): nothing held for it is due
    /// any more, and its next change waits for the spacing.
    pub fn told(&mut self, key: K, now: Instant) {
        self.held.remove(&key);
        if self.last_told.len() >= REMEMBERED {
            let spacing = self.spacing;
            self.last_told
                .retain(|_, last| now.saturating_duration_since(*last) < spacing);
        }
        self.last_told.insert(key, now);
    }

    /// `key` is gone (a deleted job): forget it.
    pub fn forget(&mut self, key: K) {
        self.held.remove(&key);
        self.last_told.remove(&key);
    }

    /// When the earliest held change is due; `None` when nothing is held.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.values().min().copied()
    }

    /// The held changes due at `now`, each counted as told now.
    pub fn take_due(&mut self, now: Instant) -> Vec<K> {
        let due: Vec<K> = self
            .held
            .iter()
            .filter(|(_, &at)| at <= now)
            .map(|(&key, _)| key)
            .collect();
        for &key in &due {
            self.told(key, now);
        }
        due
    }
}

impl Throttle<JobId> {
    /// Whether a watcher acts on `event` now: a change of a job's counts or progress may be
    /// held (false); a change of its status is told and cancels what was held; a removed
    /// job is forgotten.
    pub fn admit(&mut self, event: &GridEvent, now: Instant) -> bool {
        match *event {
            GridEvent::JobChanged { job } => return self.change(job, now),
            GridEvent::JobStatusChanged { job } => self.told(job, now),
            GridEvent::JobRemoved { job, .. } => self.forget(job),
            _ => {}
        }
        true
    }
}

/// Sleeps until `due`, or for ever when nothing is due (a branch of `select!` that never
/// fires).
pub async fn until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_change_is_told_at_once_and_a_burst_becomes_one_telling() {
        let t0 = Instant::now();
        let mut throttle = Throttle::new(ms(100));
        assert!(throttle.change(7, t0));
        assert_eq!(throttle.next_due(), None);
        // Every change within the spacing is held, all of them as one.
        for i in 1..50 {
            assert!(!throttle.change(7, t0 + ms(i)));
        }
        assert_eq!(throttle.next_due(), Some(t0 + ms(100)));
        assert_eq!(throttle.take_due(t0 + ms(99)), Vec::<u32>::new());
        assert_eq!(throttle.take_due(t0 + ms(100)), vec![7]);
        assert_eq!(throttle.next_due(), None);
        // Told at 100 ms: the next change waits until 200 ms.
        assert!(!throttle.change(7, t0 + ms(150)));
        assert_eq!(throttle.next_due(), Some(t0 + ms(200)));
        // A quiet spell: the next change is told at once.
        assert_eq!(throttle.take_due(t0 + ms(200)), vec![7]);
        assert!(throttle.change(7, t0 + ms(400)));
    }

    #[test]
    fn keys_are_spaced_apart_independently() {
        let t0 = Instant::now();
        let mut throttle = Throttle::new(ms(100));
        assert!(throttle.change(1, t0));
        assert!(throttle.change(2, t0 + ms(10)));
        assert!(!throttle.change(1, t0 + ms(20)));
        assert!(!throttle.change(2, t0 + ms(30)));
        assert_eq!(throttle.next_due(), Some(t0 + ms(100)));
        assert_eq!(throttle.take_due(t0 + ms(100)), vec![1]);
        assert_eq!(throttle.next_due(), Some(t0 + ms(110)));
        assert_eq!(throttle.take_due(t0 + ms(110)), vec![2]);
    }

    #[test]
    fn a_status_change_told_cancels_what_was_held() {
        let t0 = Instant::now();
        let mut throttle = Throttle::new(ms(100));
        assert!(throttle.change(3, t0));
        assert!(!throttle.change(3, t0 + ms(5)));
        throttle.told(3, t0 + ms(6));
        assert_eq!(throttle.next_due(), None);
        assert!(!throttle.change(3, t0 + ms(50)));
        assert_eq!(throttle.next_due(), Some(t0 + ms(106)));
    }

    #[test]
    fn hub_events_are_admitted_by_kind() {
        let t0 = Instant::now();
        let mut throttle = Throttle::new(ms(100));
        let changed = GridEvent::JobChanged { job: 4 };
        assert!(throttle.admit(&changed, t0));
        assert!(!throttle.admit(&changed, t0 + ms(1)));
        // A status change always passes, and takes the held change's place.
        assert!(throttle.admit(&GridEvent::JobStatusChanged { job: 4 }, t0 + ms(2)));
        assert_eq!(throttle.next_due(), None);
        assert!(!throttle.admit(&changed, t0 + ms(3)));
        // Other events pass; a removed job's held change is dropped.
        assert!(throttle.admit(&GridEvent::JobOutput { job: 4 }, t0 + ms(4)));
        assert!(throttle.admit(&GridEvent::JobRemoved { grid: 0, job: 4 }, t0 + ms(5)));
        assert_eq!(throttle.next_due(), None);
        assert!(throttle.admit(&changed, t0 + ms(6)));
    }

    #[test]
    fn forgotten_keys_are_told_at_once_and_memory_stays_bounded() {
        let t0 = Instant::now();
        let mut throttle = Throttle::new(ms(100));
        assert!(throttle.change(1, t0));
        assert!(!throttle.change(1, t0 + ms(1)));
        throttle.forget(1);
        assert_eq!(throttle.next_due(), None);
        assert!(throttle.change(1, t0 + ms(2)));
        for key in 0..10_000u32 {
            throttle.change(key, t0 + ms(1000 + u64::from(key)));
        }
        assert!(throttle.last_told.len() <= REMEMBERED);
    }
}
