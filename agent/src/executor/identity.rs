//! Who the agent is and who its tasks run as: the agent's own credentials and capabilities
//! (from `/proc/self/status`) and user look-ups in `/etc/passwd`. Parsing is separate from
//! reading so it can be tested on sample text.

/// A user and group a task runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// The agent process's effective identity and the capabilities the executor cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub effective: RunAs,
    capabilities: u64,
}

// Bit numbers from <linux/capability.h>.
const CAP_CHOWN: u32 = 0;
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SYS_ADMIN: u32 = 21;

impl Credentials {
    fn has(&self, capability: u32) -> bool {
        self.capabilities & (1u64 << capability) != 0
    }

    /// Creating a PID namespace needs CAP_SYS_ADMIN.
    pub fn can_create_pid_namespace(&self) -> bool {
        self.has(CAP_SYS_ADMIN)
    }

    /// Running a task as another user, and handing it its files, needs these three.
    pub fn can_switch_user(&self) -> bool {
        self.has(CAP_SETUID) && self.has(CAP_SETGID) && self.has(CAP_CHOWN)
    }

    pub fn read() -> Option<Credentials> {
        parse_status(&std::fs::read_to_string("/proc/self/status").ok()?)
    }
}

/// Read the `Uid:`, `Gid:` (real, effective, saved, filesystem) and `CapEff:` (hex) lines.
pub(crate) fn parse_status(text: &str) -> Option<Credentials> {
    let mut uid = None;
    let mut gid = None;
    let mut capabilities = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let second = || value.split_whitespace().nth(1)?.parse::<u32>().ok();
        match key {
            "Uid" => uid = second(),
            "Gid" => gid = second(),
            "CapEff" => capabilities = u64::from_str_radix(value.trim(), 16).ok(),
            _ => {}
        }
    }
    Some(Credentials {
        effective: RunAs {
            uid: uid?,
            gid: gid?,
        },
        capabilities: capabilities?,
    })
}

/// The uid and primary gid of `name` in passwd(5) text.
pub(crate) fn lookup_user(passwd: &str, name: &str) -> Option<RunAs> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(RunAs { uid, gid })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_STATUS: &str = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nUid:\t0\t0\t0\t0\n\
Gid:\t0\t0\t0\t0\nGroups:\t0 \nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n";

    const USER_STATUS: &str =
        "Name:\tcat\nUid:\t1000\t1001\t1000\t1001\nGid:\t100\t101\t100\t101\n\
CapEff:\t0000000000000000\n";

    #[test]
    fn root_has_everything() {
        let c = parse_status(ROOT_STATUS).expect("parsed");
        assert_eq!(c.effective, RunAs { uid: 0, gid: 0 });
        assert!(c.can_create_pid_namespace());
        assert!(c.can_switch_user());
    }

    #[test]
    fn effective_ids_are_the_second_column() {
        let c = parse_status(USER_STATUS).expect("parsed");
        assert_eq!(
            c.effective,
            RunAs {
                uid: 1001,
                gid: 101
            }
        );
        assert!(!c.can_create_pid_namespace());
        assert!(!c.can_switch_user());
    }

    #[test]
    fn single_capabilities() {
        // Only CAP_SYS_ADMIN (bit 21 = 0x200000).
        let c = parse_status("Uid:\t5\t5\t5\t5\nGid:\t5\t5\t5\t5\nCapEff:\t0000000000200000\n")
            .expect("parsed");
        assert!(c.can_create_pid_namespace());
        assert!(!c.can_switch_user());
        // CAP_CHOWN, CAP_SETGID, CAP_SETUID = bits 0, 6, 7 = 0xc1.
        let c = parse_status("Uid:\t5\t5\t5\t5\nGid:\t5\t5\t5\t5\nCapEff:\t00000000000000c1\n")
            .expect("parsed");
        assert!(c.can_switch_user());
        assert!(!c.can_create_pid_namespace());
    }

    #[test]
    fn incomplete_status_is_none() {
        assert_eq!(parse_status("Uid:\t0\t0\t0\t0\n"), None);
        assert_eq!(
            parse_status("Uid:\t0\tx\t0\t0\nGid:\t0\t0\t0\t0\nCapEff:\t0\n"),
            None
        );
    }

    #[test]
    fn passwd_lookup() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken\n\
nobodyish:x:1:1::/:/bin/false\nnobody:x:65534:65533:nobody:/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(
            lookup_user(passwd, "nobody"),
            Some(RunAs {
                uid: 65534,
                gid: 65533
            })
        );
        assert_eq!(lookup_user(passwd, "root"), Some(RunAs { uid: 0, gid: 0 }));
        assert_eq!(lookup_user(passwd, "daemon"), None);
        assert_eq!(lookup_user(passwd, "broken"), None);
    }
}
