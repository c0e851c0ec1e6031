//! What the agent tells the controller about its machine: how many processors, how fast
//! each is (for `XGRID_PROCESSOR_SPEED` and `maximumCPUPower`), and how loaded it is.
//! The parsers take file text so they can be tested on samples; `read_*` read the real files.

use std::path::{Path, PathBuf};

/// Per-core speed assumed when neither cpufreq nor `/proc/cpuinfo` gives one (some ARM
/// boards and VMs): a round, modest figure, so a grid neither starves nor floods the agent.
pub const FALLBACK_MHZ: u32 = 1000;

const CPUINFO: &str = "/proc/cpuinfo";
const CPU0_MAX_FREQ: &str = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq";
const LOADAVG: &str = "/proc/loadavg";

/// Why the machine's figures could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("could not read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} does not look like a Linux load-average file: {text:?}", path.display())]
    Malformed { path: PathBuf, text: String },
}

/// The machine's processors as the agent advertises them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Processors {
    pub count: u32,
    /// Megahertz of one core.
    pub mhz_per_core: u32,
}

impl Processors {
    /// `maximumCPUPower`: every core at full speed.
    pub fn total_mhz(&self) -> u64 {
        u64::from(self.count) * u64::from(self.mhz_per_core)
    }
}

/// The kernel's run-queue averages over 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadAverage {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

/// What `/proc/cpuinfo` says: the number of `processor` entries and the highest `cpu MHz`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CpuInfo {
    pub processors: u32,
    pub mhz: Option<f64>,
}

/// Read `/proc/cpuinfo` text. The highest `cpu MHz` is kept because the field shows each
/// core's current, frequency-scaled speed, and the advertised power should be the peak.
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "processor" => info.processors += 1,
            "cpu MHz" => {
                if let Ok(mhz) = value.trim().parse::<f64>() {
                    if mhz.is_finite() && mhz > 0.0 && info.mhz.is_none_or(|m| mhz > m) {
                        info.mhz = Some(mhz);
                    }
                }
            }
            _ => {}
        }
    }
    info
}

/// Read a cpufreq `cpuinfo_max_freq` file (kilohertz) as megahertz.
pub fn parse_max_freq_khz(text: &str) -> Option<u32> {
    let khz: u64 = text.trim().parse().ok()?;
    let mhz = u32::try_from(khz / 1000).ok()?;
    (mhz > 0).then_some(mhz)
}

/// Read `/proc/loadavg` text (`0.52 0.58 0.59 2/467 12345`).
pub fn parse_loadavg(text: &str) -> Option<LoadAverage> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    let one = fields.next()??;
    let five = fields.next()??;
    let fifteen = fields.next()??;
    Some(LoadAverage { one, five, fifteen })
}

/// Combine the sources: cpufreq's nominal maximum is preferred because it does not move
/// with frequency scaling; then `/proc/cpuinfo`; then [`FALLBACK_MHZ`]. A count of zero
/// (no `processor` lines) falls back to `fallback_count`.
pub fn processors_from(cpuinfo: &str, max_freq: Option<&str>, fallback_count: u32) -> Processors {
    let info = parse_cpuinfo(cpuinfo);
    let mhz_per_core = max_freq
        .and_then(parse_max_freq_khz)
        .or_else(|| info.mhz.map(|m| m.round() as u32).filter(|m| *m > 0))
        .unwrap_or(FALLBACK_MHZ);
    let count = if info.processors > 0 {
        info.processors
    } else {
        fallback_count.max(1)
    };
    Processors {
        count,
        mhz_per_core,
    }
}

/// Read a cgroup v2 `cpu.max` file (`QUOTA PERIOD`, or `max PERIOD`) as a number of cores;
/// `None` when unlimited.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota: f64 = fields.next()?.parse().ok()?;
    let period: f64 = fields.next()?.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// Where this process's CPU limits live, from `/proc/self/cgroup` text: the v1 `cpu`
/// controller's directory (`N:cpu,cpuacct:/a/b`) when there is one, else the v2 unified
/// hierarchy's (`0::/a/b`). Both kinds of machine are common.
pub fn parse_own_cgroup(text: &str) -> Option<CgroupPath<'_>> {
    let v1 = text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers
            .split(',')
            .any(|c| c == "cpu")
            .then_some(CgroupPath::V1(path))
    });
    v1.or_else(|| {
        text.lines()
            .find_map(|line| line.strip_prefix("0::"))
            .map(CgroupPath::V2)
    })
}

/// A cgroup directory, relative to its hierarchy's mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupPath<'a> {
    /// Under `/sys/fs/cgroup/cpu`: `cpu.cfs_quota_us` and `cpu.cfs_period_us`.
    V1(&'a str),
    /// Under `/sys/fs/cgroup`: `cpu.max`.
    V2(&'a str),
}

/// The v1 quota in cores from `cpu.cfs_quota_us` and `cpu.cfs_period_us`; `None` when
/// unlimited (-1).
pub fn parse_cfs_quota(quota: &str, period: &str) -> Option<f64> {
    parse_cpu_max(&format!("{} {}", quota.trim(), period.trim()))
}

/// The processors as a CPU quota of `cores` leaves them: a quarter of a core is one core at
/// a quarter of its speed, so the controller ranks the agent as the slow machine it
/// effectively is (an old G3 beside a new desktop).
pub fn limited_by_quota(processors: Processors, cores: Option<f64>) -> Processors {
    let Some(cores) = cores.filter(|c| *c < f64::from(processors.count)) else {
        return processors;
    };
    let count = (cores.ceil() as u32).clamp(1, processors.count);
    let mhz = f64::from(processors.mhz_per_core) * cores / f64::from(count);
    Processors {
        count,
        mhz_per_core: (mhz.round() as u32).max(1),
    }
}

/// The processors as an affinity mask that allows `allowed` of them leaves them (an agent
/// started under `taskset -c 1` has one processor, whatever the machine has).
pub fn limited_by_affinity(processors: Processors, allowed: Option<u32>) -> Processors {
    match allowed {
        Some(allowed) if allowed > 0 && allowed < processors.count => Processors {
            count: allowed,
            ..processors
        },
        _ => processors,
    }
}

/// How many processors the calling thread may run on (its CPU affinity, which threads and
/// processes it starts inherit); `None` when that cannot be read.
fn read_allowed_processors() -> Option<u32> {
    use nix::sched::{sched_getaffinity, CpuSet};
    let set = sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let allowed = (0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .count();
    u32::try_from(allowed).ok().filter(|&n| n > 0)
}

/// The CPU quota set in one cgroup directory, in cores.
fn quota_in(kind: CgroupPath<'_>, dir: &Path) -> Option<f64> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    match kind {
        CgroupPath::V1(_) => {
            parse_cfs_quota(&read("cpu.cfs_quota_us")?, &read("cpu.cfs_period_us")?)
        }
        CgroupPath::V2(_) => parse_cpu_max(&read("cpu.max")?),
    }
}

/// The smallest CPU quota on the way from this process's cgroup up to its root, in cores.
fn read_cpu_quota() -> Option<f64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let kind = parse_own_cgroup(&own)?;
    let (root, path) = match kind {
        CgroupPath::V1(path) => (Path::new("/sys/fs/cgroup/cpu"), path),
        CgroupPath::V2(path) => (Path::new("/sys/fs/cgroup"), path),
    };
    let mut dir = root.join(path.trim_start_matches('/'));
    let mut smallest: Option<f64> = None;
    loop {
        if let Some(cores) = quota_in(kind, &dir) {
            smallest = Some(smallest.map_or(cores, |s| s.min(cores)));
        }
        if dir == root || !dir.pop() {
            return smallest;
        }
    }
}

/// The real machine's processors, as far as this agent may use them (its CPU affinity and
/// a cgroup CPU quota count). Missing files are not errors: each figure has a fallback (the
/// count falls back to what the standard library sees, then 1).
pub fn read_processors() -> Processors {
    let cpuinfo = std::fs::read_to_string(CPUINFO).unwrap_or_default();
    let max_freq = std::fs::read_to_string(CPU0_MAX_FREQ).ok();
    let fallback_count = std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1);
    let machine = processors_from(&cpuinfo, max_freq.as_deref(), fallback_count);
    let usable = limited_by_affinity(machine, read_allowed_processors());
    limited_by_quota(usable, read_cpu_quota())
}

/// The real machine's load average.
pub fn read_load_average() -> Result<LoadAverage, ProbeError> {
    let path = Path::new(LOADAVG);
    let text = std::fs::read_to_string(path).map_err(|source| ProbeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_loadavg(&text).ok_or_else(|| ProbeError::Malformed {
        path: path.to_path_buf(),
        text: text.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86_CPUINFO: &str =
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)\n\
cpu MHz\t\t: 2596.120\ncache size\t: 33792 KB\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n\
cpu MHz\t\t: 3100.501\ncache size\t: 33792 KB\n\n";

    // A Raspberry Pi style file: processors but no speed at all.
    const ARM_CPUINFO: &str = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd\n\n\
processor\t: 1\nBogoMIPS\t: 108.00\n\nprocessor\t: 2\nBogoMIPS\t: 108.00\n\n\
processor\t: 3\nBogoMIPS\t: 108.00\n\nHardware\t: BCM2835\n";

    #[test]
    fn cpuinfo_counts_processors_and_keeps_the_fastest_core() {
        let info = parse_cpuinfo(X86_CPUINFO);
        assert_eq!(info.processors, 2);
        assert_eq!(info.mhz, Some(3100.501));
    }

    #[test]
    fn cpuinfo_without_speed() {
        assert_eq!(
            parse_cpuinfo(ARM_CPUINFO),
            CpuInfo {
                processors: 4,
                mhz: None
            }
        );
    }

    #[test]
    fn max_freq_is_kilohertz() {
        assert_eq!(parse_max_freq_khz("3500000\n"), Some(3500));
        assert_eq!(parse_max_freq_khz("0\n"), None);
        assert_eq!(parse_max_freq_khz("fast\n"), None);
    }

    #[test]
    fn loadavg_fields() {
        assert_eq!(
            parse_loadavg("1.77 1.38 0.70 7/123 5729\n"),
            Some(LoadAverage {
                one: 1.77,
                five: 1.38,
                fifteen: 0.70
            })
        );
        assert_eq!(parse_loadavg("1.77 1.38\n"), None);
        assert_eq!(parse_loadavg(""), None);
    }

    #[test]
    fn sources_in_order_of_preference() {
        let cpufreq = processors_from(X86_CPUINFO, Some("3500000\n"), 8);
        assert_eq!(
            cpufreq,
            Processors {
                count: 2,
                mhz_per_core: 3500
            }
        );
        assert_eq!(cpufreq.total_mhz(), 7000);

        let cpuinfo = processors_from(X86_CPUINFO, None, 8);
        assert_eq!(cpuinfo.mhz_per_core, 3101);

        let neither = processors_from(ARM_CPUINFO, None, 8);
        assert_eq!(neither.mhz_per_core, FALLBACK_MHZ);
        assert_eq!(neither.count, 4);
        assert_eq!(neither.total_mhz(), 4 * u64::from(FALLBACK_MHZ));
    }

    #[test]
    fn a_cpu_quota_makes_slower_processors() {
        assert_eq!(parse_cpu_max("25000 100000\n"), Some(0.25));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(
            parse_own_cgroup("0::/system.slice/x.service\n"),
            Some(CgroupPath::V2("/system.slice/x.service"))
        );
        assert_eq!(
            parse_own_cgroup("4:memory:/m\n2:cpu,cpuacct:/slow\n0::/\n"),
            Some(CgroupPath::V1("/slow"))
        );
        assert_eq!(parse_cfs_quota("25000\n", "100000\n"), Some(0.25));
        assert_eq!(parse_cfs_quota("-1\n", "100000\n"), None);
        let machine = Processors {
            count: 2,
            mhz_per_core: 3000,
        };
        let quarter = limited_by_quota(machine, Some(0.25));
        assert_eq!(
            quarter,
            Processors {
                count: 1,
                mhz_per_core: 750
            }
        );
        let one_and_a_half = limited_by_quota(machine, Some(1.5));
        assert_eq!(one_and_a_half.count, 2);
        assert_eq!(one_and_a_half.total_mhz(), 4500);
        assert_eq!(limited_by_quota(machine, Some(4.0)), machine);
        assert_eq!(limited_by_quota(machine, None), machine);
    }

    #[test]
    fn an_affinity_mask_leaves_fewer_processors_of_the_same_speed() {
        let machine = Processors {
            count: 4,
            mhz_per_core: 3000,
        };
        let pinned = limited_by_affinity(machine, Some(1));
        assert_eq!(
            pinned,
            Processors {
                count: 1,
                mhz_per_core: 3000
            }
        );
        assert_eq!(limited_by_affinity(machine, Some(4)), machine);
        assert_eq!(limited_by_affinity(machine, Some(8)), machine);
        assert_eq!(limited_by_affinity(machine, Some(0)), machine);
        assert_eq!(limited_by_affinity(machine, None), machine);
        // Then a quota on top: half a core of the one left.
        assert_eq!(limited_by_quota(pinned, Some(0.5)).total_mhz(), 1500);
    }

    #[test]
    fn a_thread_pinned_to_one_processor_counts_one() {
        use nix::sched::{sched_setaffinity, CpuSet};
        // A thread of its own, so that the test runner's threads keep their affinity.
        let seen = std::thread::spawn(|| {
            let mut one = CpuSet::new();
            one.set(0).expect("cpu 0");
            sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).expect("setaffinity");
            (read_allowed_processors(), read_processors().count)
        })
        .join()
        .expect("thread");
        assert_eq!(seen, (Some(1), 1));
    }

    #[test]
    fn count_falls_back_when_cpuinfo_is_missing() {
        assert_eq!(processors_from("", None, 6).count, 6);
        assert_eq!(processors_from("", None, 0).count, 1);
    }

    #[test]
    fn real_machine_figures_are_plausible() {
        let processors = read_processors();
        assert!(processors.count >= 1);
        assert!(processors.mhz_per_core >= 1);
        if Path::new(LOADAVG).exists() {
            let load = read_load_average().expect("loadavg readable");
            assert!(load.one >= 0.0 && load.five >= 0.0 && load.fifteen >= 0.0);
        }
    }
}
