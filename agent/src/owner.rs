//! Is the machine's owner back? The agent answers as HTCondor's start daemon does: the owner
//! is present while someone has used a keyboard, mouse or terminal recently, or while the
//! machine is busy with work that is not the grid's. Apple's agent called the policy
//! `OnlyWhenIdle`; the controller then moves the agent's tasks away or suspends them.
//!
//! Input activity is read from the access and modification times of input devices and
//! terminals (the kernel updates them on every key press or mouse move). CPU load not caused
//! by the grid is the machine's busy time from `/proc/stat` minus the CPU time of the grid's
//! own task processes, over the time between two looks.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Devices and terminals whose times show a person at the machine.
pub const DEFAULT_INPUT_DEVICES: &[&str] = &["/dev/input", "/dev/pts", "/dev/tty"];

/// When the owner counts as present.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerPolicy {
    /// The owner is present when any input device was used less than this long ago.
    pub input_idle: Duration,
    /// ... or when processes other than the grid's keep more than this many cores busy.
    pub foreign_load: f64,
    /// Files, or directories whose entries are, input devices and terminals.
    pub devices: Vec<PathBuf>,
}

impl Default for OwnerPolicy {
    fn default() -> Self {
        OwnerPolicy {
            // HTCondor's usual desktop policy starts jobs after 15 minutes without input.
            input_idle: Duration::from_secs(15 * 60),
            foreign_load: 0.5,
            devices: DEFAULT_INPUT_DEVICES.iter().map(PathBuf::from).collect(),
        }
    }
}

/// What one look at the machine found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Time since the most recent input; `None` when the machine has no input device.
    pub input_idle: Option<Duration>,
    /// Cores kept busy by processes that are not the grid's, since the previous look.
    pub foreign_load: f64,
}

/// Why the owner counts as present.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Presence {
    Away,
    /// Someone used the machine this long ago.
    Input(Duration),
    /// Other work keeps this many cores busy.
    Load(f64),
}

impl Presence {
    pub fn is_present(self) -> bool {
        self != Presence::Away
    }
}

impl std::fmt::Display for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presence::Away => f.write_str("the owner is away"),
            Presence::Input(ago) => write!(f, "the owner used the machine {} s ago", ago.as_secs()),
            Presence::Load(cores) => {
                write!(f, "other work keeps {cores:.1} cores busy")
            }
        }
    }
}

/// The pure decision.
pub fn judge(policy: &OwnerPolicy, seen: Observation) -> Presence {
    if let Some(idle) = seen.input_idle {
        if idle < policy.input_idle {
            return Presence::Input(idle);
        }
    }
    if seen.foreign_load > policy.foreign_load {
        return Presence::Load(seen.foreign_load);
    }
    Presence::Away
}

/// The busy and total ticks of all CPUs, from the `cpu` line of `/proc/stat`.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is
    // already inside user and nice.
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// CPU ticks of one process and of its children it has reaped (utime, stime, cutime,
/// cstime), from `/proc/PID/stat`. Counting reaped children is what keeps a finished task's
/// time in the grid's column: each process of a task is reaped by its parent in the task,
/// and the task's first process by the agent.
pub fn parse_process_ticks(text: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses: count fields after the last ')'.
    let (_, rest) = text.rsplit_once(')')?;
    // After ')': state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime(14) stime cutime cstime(17).
    let ticks = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse::<u64>().ok())
        .collect::<Option<Vec<_>>>()?;
    (ticks.len() == 4).then(|| ticks.iter().sum())
}

/// The newest access or modification time among `devices` (a directory stands for its
/// entries, one level down).
pub fn last_input(devices: &[PathBuf]) -> Option<SystemTime> {
    let stamp = |path: &Path| {
        let meta = std::fs::metadata(path).ok()?;
        let accessed = meta.accessed().ok();
        let modified = meta.modified().ok();
        accessed.max(modified)
    };
    let mut newest = None;
    for device in devices {
        let entries: Vec<PathBuf> = match std::fs::read_dir(device) {
            Ok(dir) => dir.flatten().map(|e| e.path()).collect(),
            Err(_) => vec![device.clone()],
        };
        for entry in entries {
            newest = newest.max(stamp(&entry));
        }
    }
    newest
}

/// Looks at the machine every so often and remembers what it needs between looks.
#[derive(Debug)]
pub struct OwnerWatch {
    policy: OwnerPolicy,
    /// Busy and total machine ticks, and the grid's ticks, at the previous look.
    previous: Option<(u64, u64, u64)>,
    processors: f64,
}

impl OwnerWatch {
    pub fn new(policy: OwnerPolicy, processors: u32) -> OwnerWatch {
        OwnerWatch {
            policy,
            previous: None,
            processors: f64::from(processors.max(1)),
        }
    }

    /// Look now; `grid_pids` are the agent-side pids of every running task process.
    pub fn look(&mut self, grid_pids: &[i32]) -> Presence {
        let input_idle = last_input(&self.policy.devices)
            .map(|at| SystemTime::now().duration_since(at).unwrap_or_default());
        let grid = self.grid_ticks(grid_pids);
        let foreign_load = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| parse_proc_stat(&text))
            .map_or(0.0, |(busy, total)| self.foreign_load(busy, total, grid));
        judge(
            &self.policy,
            Observation {
                input_idle,
                foreign_load,
            },
        )
    }

    /// The agent's own ticks (with every task it has reaped) plus those of the task
    /// processes alive now.
    fn grid_ticks(&self, pids: &[i32]) -> u64 {
        let ticks = |pid: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|text| parse_process_ticks(&text))
                .unwrap_or(0)
        };
        ticks("self") + pids.iter().map(|pid| ticks(&pid.to_string())).sum::<u64>()
    }

    /// Cores busy with other work since the previous look (0 at the first look).
    fn foreign_load(&mut self, busy: u64, total: u64, grid: u64) -> f64 {
        let previous = self.previous.replace((busy, total, grid));
        let Some((busy0, total0, grid0)) = previous else {
            return 0.0;
        };
        let elapsed = total.saturating_sub(total0) as f64;
        if elapsed <= 0.0 {
            return 0.0;
        }
        let foreign = busy
            .saturating_sub(busy0)
            .saturating_sub(grid.saturating_sub(grid0)) as f64;
        // Total ticks count every CPU; the load is in cores.
        foreign / elapsed * self.processors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OwnerPolicy {
        OwnerPolicy {
            input_idle: Duration::from_secs(60),
            foreign_load: 0.5,
            devices: Vec::new(),
        }
    }

    #[test]
    fn recent_input_means_the_owner_is_back() {
        let seen = Observation {
            input_idle: Some(Duration::from_secs(5)),
            foreign_load: 0.0,
        };
        assert_eq!(
            judge(&policy(), seen),
            Presence::Input(Duration::from_secs(5))
        );
    }

    #[test]
    fn old_input_and_no_load_means_away() {
        let seen = Observation {
            input_idle: Some(Duration::from_secs(61)),
            foreign_load: 0.2,
        };
        assert_eq!(judge(&policy(), seen), Presence::Away);
        let headless = Observation {
            input_idle: None,
            foreign_load: 0.0,
        };
        assert_eq!(judge(&policy(), headless), Presence::Away);
    }

    #[test]
    fn foreign_load_means_the_owner_is_back() {
        let seen = Observation {
            input_idle: None,
            foreign_load: 1.5,
        };
        assert_eq!(judge(&policy(), seen), Presence::Load(1.5));
        assert!(judge(&policy(), seen).is_present());
    }

    #[test]
    fn proc_stat_busy_and_total() {
        let text = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 50 2 25 500 10 0 1 1 0 0\n";
        // total = 100+5+50+1000+20+1+2+3 = 1181; idle = 1000 + 20.
        assert_eq!(parse_proc_stat(text), Some((161, 1181)));
        assert_eq!(parse_proc_stat("intr 1 2 3\n"), None);
    }

    #[test]
    fn process_ticks_survive_odd_names() {
        let text = "42 (a (weird) name) R 1 42 42 0 -1 4194560 100 0 0 0 17 4 3 1 20 0 1 0 5";
        assert_eq!(parse_process_ticks(text), Some(25));
        assert_eq!(parse_process_ticks("42 (x) R 1"), None);
    }

    #[test]
    fn grid_work_is_not_the_owners_load() {
        let mut watch = OwnerWatch::new(policy(), 2);
        assert_eq!(watch.foreign_load(1000, 10_000, 0), 0.0);
        // 200 ticks over 2 CPUs... 400 total ticks elapsed, 200 busy, all of it the grid's.
        assert_eq!(watch.foreign_load(1200, 10_400, 200), 0.0);
        // Next: 300 busy of 400, 100 of them the grid's: 200 foreign ticks = 1 core of 2.
        let load = watch.foreign_load(1500, 10_800, 300);
        assert!((load - 1.0).abs() < 1e-9, "{load}");
    }

    #[test]
    fn a_touched_device_file_is_recent_input() {
        let dir = std::env::temp_dir().join(format!("xgrid-owner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create");
        let device = dir.join("event0");
        std::fs::write(&device, b"").expect("write");
        let mut watch = OwnerWatch::new(
            OwnerPolicy {
                devices: vec![dir.clone()],
                ..policy()
            },
            1,
        );
        assert!(matches!(watch.look(&[]), Presence::Input(_)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
