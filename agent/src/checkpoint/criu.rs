//! Talking to the `criu` command: finding it, reading its version, its `--display-stats`
//! figures and the errors in its log files, and the CPU flags a checkpoint depends on.
//! The parsers take text so they can be tested on samples.

use std::path::{Path, PathBuf};

/// Where to look for `criu` besides the agent's PATH (`scripts/install-criu` puts its
/// wrapper in `/usr/local/sbin`).
const SYSTEM_DIRS: &str = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin";

/// The oldest CRIU that works on current kernels (docs/checkpoint.md).
pub const MIN_MAJOR: u32 = 4;

/// Find an executable `name` in the agent's PATH or the system directories.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut search = std::env::var("PATH").unwrap_or_default();
    search.push(':');
    search.push_str(SYSTEM_DIRS);
    search
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `Version: 4.1.1` (the first line of `criu --version`) as numbers.
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))?;
    let mut parts = line.trim().split(['.', '-', ' ']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

/// CRIU's own figures for one dump or pre-dump (`--display-stats`), in microseconds and
/// pages; a figure CRIU did not print is zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// From the first freeze signal until every process was frozen.
    pub freezing_us: u64,
    /// How long the processes stayed frozen during the dump.
    pub frozen_us: u64,
    pub memory_dump_us: u64,
    pub memory_write_us: u64,
    pub pages_scanned: u64,
    /// Pages left out because an earlier pre-dump already holds them.
    pub pages_skipped_from_parent: u64,
    pub pages_written: u64,
}

/// Read the `Displaying dump stats:` block.
pub fn parse_dump_stats(text: &str) -> DumpStats {
    let mut stats = DumpStats::default();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        // Values look like `17994 us` or `65 (0x41)`.
        let Some(number) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        let field = match name.trim() {
            "Freezing time" => &mut stats.freezing_us,
            "Frozen time" => &mut stats.frozen_us,
            "Memory dump time" => &mut stats.memory_dump_us,
            "Memory write time" => &mut stats.memory_write_us,
            "Memory pages scanned" => &mut stats.pages_scanned,
            "Memory pages skipped from parent" => &mut stats.pages_skipped_from_parent,
            "Memory pages written" => &mut stats.pages_written,
            _ => continue,
        };
        *field = number;
    }
    stats
}

/// The lines of a CRIU log that say what failed (at most the last `limit`), joined for an
/// error message.
pub fn log_errors(log: &str, limit: usize) -> String {
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Error (") || l.contains("Error:"))
        .map(str::trim)
        .collect();
    let start = errors.len().saturating_sub(limit);
    errors.get(start..).unwrap_or_default().join("; ")
}

/// The CPU feature flags of the first processor in `/proc/cpuinfo` text (`flags` on x86,
/// `Features` on ARM), sorted.
pub fn parse_cpu_flags(cpuinfo: &str) -> Vec<String> {
    let mut flags: Vec<String> = cpuinfo
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            matches!(name.trim(), "flags" | "Features").then_some(value)
        })
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

/// The flags the source machine has that the destination lacks: a task that used one of
/// them may crash after the move (CRIU's `--cpu-cap` checks only some). Both lists sorted.
pub fn missing_cpu_flags(source: &[String], destination: &[String]) -> Vec<String> {
    source
        .iter()
        .filter(|f| destination.binary_search(f).is_err())
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("Version: 4.1.1\n"), Some((4, 1, 1)));
        assert_eq!(
            parse_version("Version: 3.17\nGitID: v3.17\n"),
            Some((3, 17, 0))
        );
        assert_eq!(parse_version("Version: 4.0-rc1\n"), Some((4, 0, 0)));
        assert_eq!(parse_version("criu: command not found"), None);
        assert_eq!(parse_version("Version: x\n"), None);
    }

    #[test]
    fn dump_stats_block() {
        let text = "Displaying dump stats:\nFreezing time: 162 us\nFrozen time: 17994 us\n\
Memory dump time: 762 us\nMemory write time: 207 us\nIRMAP resolve time: 0 us\n\
Memory pages scanned: 108 (0x6c)\nMemory pages skipped from parent: 3 (0x3)\n\
Memory pages written: 65 (0x41)\nLazy memory pages: 0 (0x0)\n";
        assert_eq!(
            parse_dump_stats(text),
            DumpStats {
                freezing_us: 162,
                frozen_us: 17994,
                memory_dump_us: 762,
                memory_write_us: 207,
                pages_scanned: 108,
                pages_skipped_from_parent: 3,
                pages_written: 65,
            }
        );
        assert_eq!(
            parse_dump_stats("nothing here: at all"),
            DumpStats::default()
        );
    }

    #[test]
    fn errors_from_a_log() {
        let log = "(00.1) Warn  (criu/util.c:1): rlimit\n\
(00.2) Error (criu/files-reg.c:2175): File tmp/t/err has bad size 54 (expect 0)\n\
(00.3) Error (criu/files.c:1221): Unable to open fd=2 id=0x6\n\
(00.4) Error (criu/cr-restore.c:2320): Restoring FAILED.\n";
        assert_eq!(
            log_errors(log, 2),
            "(00.3) Error (criu/files.c:1221): Unable to open fd=2 id=0x6; \
(00.4) Error (criu/cr-restore.c:2320): Restoring FAILED."
        );
        assert!(log_errors(log, 5).contains("bad size 54"));
        assert_eq!(log_errors("all fine\n", 3), "");
    }

    #[test]
    fn cpu_flags() {
        let x86 = "processor\t: 0\nflags\t\t: sse2 fpu avx2 sse2\nprocessor\t: 1\nflags\t: fpu\n";
        assert_eq!(parse_cpu_flags(x86), ["avx2", "fpu", "sse2"]);
        let arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm\n";
        assert_eq!(parse_cpu_flags(arm), ["asimd", "evtstrm", "fp"]);
        assert!(parse_cpu_flags("").is_empty());
        let source = parse_cpu_flags("flags: avx2 avx512f fpu sse2");
        let dest = parse_cpu_flags("flags: fpu sse2 avx2");
        assert_eq!(missing_cpu_flags(&source, &dest), ["avx512f"]);
        assert!(missing_cpu_flags(&dest, &source).is_empty());
    }
}
