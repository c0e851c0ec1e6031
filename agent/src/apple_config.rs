//! Apple's agent preferences, `com.apple.xgrid.agent.plist` (xgrid-wire.md §7), read for
//! `xgridagentd --apple-config`: an old Mac agent's settings carry over as they are, with the
//! password from Apple's `agent/controller-password` file. Flags on the command line win.

use std::path::Path;

use xgrid_protocol::plist::Value;
use xgrid_protocol::preferences::{Authentication, Preferences, PreferencesError};

/// Apple's password file for the agent, relative to the password root (xgrid-wire.md §3).
pub const CONTROLLER_PASSWORD_FILE: &str = "agent/controller-password";

/// What an Apple agent plist says, read and checked.
#[derive(Debug, Clone)]
pub struct AppleAgentConfig {
    prefs: Preferences,
    /// `Enabled`; Apple's agent does not run when it is `NO`.
    pub enabled: bool,
    /// `ControllerName`: a host name, or a Bonjour name with `ResolveNameAsNetService`.
    pub controller_name: Option<String>,
    pub controller_authentication: Option<Authentication>,
    pub bind_to_first_available: Option<bool>,
    pub resolve_name_as_net_service: Option<bool>,
    pub only_when_idle: Option<bool>,
    pub suspend_when_not_idle: Option<bool>,
    /// `MaximumTaskCount`; 0 is taken to mean "as many as processors", as no task could run
    /// otherwise ([guess]: Apple's meaning of 0 is not known).
    pub maximum_task_count: Option<u32>,
    pub agent_name: Option<String>,
    pub agent_custom: Option<Value>,
    pub processor_count: Option<u32>,
    /// `ProcessorSpeed`: megahertz of one processor.
    pub processor_speed: Option<u32>,
    /// Keys this agent does not know, to be reported once and otherwise ignored.
    pub unknown_keys: Vec<String>,
}

impl AppleAgentConfig {
    /// Read the plist at `path` (XML, binary or old-style) and check every key we know.
    pub fn read(path: &Path) -> Result<AppleAgentConfig, PreferencesError> {
        let mut prefs = Preferences::read(path)?;
        let enabled = prefs.take_bool("Enabled")?.unwrap_or(true);
        let controller_name = prefs.take_string("ControllerName")?;
        let controller_authentication =
            prefs.take_authentication("ControllerAuthentication", false)?;
        let bind_to_first_available = prefs.take_bool("BindToFirstAvailable")?;
        let resolve_name_as_net_service = prefs.take_bool("ResolveNameAsNetService")?;
        let only_when_idle = prefs.take_bool("OnlyWhenIdle")?;
        let suspend_when_not_idle = prefs.take_bool("SuspendWhenNotIdle")?;
        let maximum_task_count = prefs.take_number("MaximumTaskCount", 0)?;
        let agent_name = prefs.take_string("AgentName")?;
        let agent_custom = prefs.take_value("AgentCustom");
        let processor_count = prefs.take_number("ProcessorCount", 1)?;
        let processor_speed = prefs.take_number("ProcessorSpeed", 1)?;
        let unknown_keys = prefs.remaining_keys();
        Ok(AppleAgentConfig {
            prefs,
            enabled,
            controller_name,
            controller_authentication,
            bind_to_first_available,
            resolve_name_as_net_service,
            only_when_idle,
            suspend_when_not_idle,
            maximum_task_count,
            agent_name,
            agent_custom,
            processor_count,
            processor_speed,
            unknown_keys,
        })
    }

    /// The plist's path.
    pub fn path(&self) -> &Path {
        self.prefs.path()
    }

    /// The password `ControllerAuthentication` asks for, from Apple's password file.
    pub fn password(&self) -> Result<Option<String>, PreferencesError> {
        match self.controller_authentication {
            Some(auth) => {
                self.prefs
                    .password("ControllerAuthentication", auth, CONTROLLER_PASSWORD_FILE)
            }
            None => Ok(None),
        }
    }

    /// Lines for the log about what was read but will not be acted on: unknown keys, and
    /// idle settings this agent cannot honour because it cannot tell when its machine is idle.
    pub fn warnings(&self) -> Vec<String> {
        let file = self.path().display();
        let mut lines = Vec::new();
        if !self.unknown_keys.is_empty() {
            lines.push(format!(
                "ignoring unknown keys in {file}: {}",
                self.unknown_keys.join(", ")
            ));
        }
        for (key, value) in [
            ("OnlyWhenIdle", self.only_when_idle),
            ("SuspendWhenNotIdle", self.suspend_when_not_idle),
        ] {
            if value == Some(true) {
                lines.push(format!(
                    "ignoring {key} = YES in {file}: this agent cannot tell when its machine \
                     is idle, so it takes tasks at any time"
                ));
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use xgrid_protocol::plist::{self, Dictionary};

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("xgrid-apple-agent-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn every_key_in_every_format() {
        let dir = scratch("formats");
        let mut custom = Dictionary::new();
        custom.insert("room".into(), "B12".into());
        let mut d = Dictionary::new();
        d.insert("Enabled".into(), Value::Boolean(true));
        d.insert("ControllerName".into(), "xserve.example.com".into());
        d.insert("ControllerAuthentication".into(), "Password".into());
        d.insert("BindToFirstAvailable".into(), Value::Boolean(false));
        d.insert("ResolveNameAsNetService".into(), Value::Boolean(false));
        d.insert("OnlyWhenIdle".into(), Value::Boolean(true));
        d.insert("SuspendWhenNotIdle".into(), Value::Boolean(false));
        d.insert("MaximumTaskCount".into(), Value::Integer(3));
        d.insert("AgentName".into(), "lab-imac-4".into());
        d.insert("AgentCustom".into(), Value::Dictionary(custom.clone()));
        d.insert("ProcessorCount".into(), Value::Integer(2));
        d.insert("ProcessorSpeed".into(), Value::Integer(1420));
        d.insert("PrefsVersion".into(), Value::Integer(2));
        let value = Value::Dictionary(d);
        let old_style = plist::to_old_style(&value);
        for (name, bytes) in [
            ("xml", plist::to_xml(&value)),
            ("binary", plist::to_binary(&value)),
            ("old-style", old_style.into_bytes()),
        ] {
            let path = dir.join(format!("{name}.plist"));
            std::fs::write(&path, bytes).expect("write");
            let apple = AppleAgentConfig::read(&path).expect(name);
            assert!(apple.enabled, "{name}");
            assert_eq!(apple.controller_name.as_deref(), Some("xserve.example.com"));
            assert_eq!(
                apple.controller_authentication,
                Some(Authentication::Password)
            );
            assert_eq!(apple.bind_to_first_available, Some(false));
            assert_eq!(apple.resolve_name_as_net_service, Some(false));
            assert_eq!(apple.only_when_idle, Some(true));
            assert_eq!(apple.suspend_when_not_idle, Some(false));
            assert_eq!(apple.maximum_task_count, Some(3));
            assert_eq!(apple.agent_name.as_deref(), Some("lab-imac-4"));
            assert_eq!(apple.processor_count, Some(2));
            assert_eq!(apple.processor_speed, Some(1420));
            assert_eq!(apple.unknown_keys, vec!["PrefsVersion".to_string()]);
            // Old-style plists have no integers: compare the custom dictionary leniently.
            let room = apple
                .agent_custom
                .as_ref()
                .and_then(Value::as_dictionary)
                .and_then(|c| c.get("room"))
                .and_then(Value::as_str);
            assert_eq!(room, Some("B12"), "{name}");
            let warnings = apple.warnings();
            assert_eq!(warnings.len(), 2, "{warnings:?}");
            assert!(warnings[0].contains("PrefsVersion"));
            assert!(warnings[1].contains("OnlyWhenIdle"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn password_from_apples_file_beside_the_plist() {
        let dir = scratch("password");
        let path = dir.join("com.apple.xgrid.agent.plist");
        std::fs::write(&path, "{ ControllerAuthentication = Password; }").expect("write");
        let apple = AppleAgentConfig::read(&path).expect("read");
        let err = apple.password().expect_err("no file yet");
        assert!(
            err.to_string().contains("agent/controller-password"),
            "{err}"
        );
        xgrid_protocol::password::write_password_file(
            &dir.join(CONTROLLER_PASSWORD_FILE),
            "agent-secret",
        )
        .expect("write password");
        assert_eq!(
            apple.password().expect("password").as_deref(),
            Some("agent-secret")
        );
        std::fs::write(&path, "{ ControllerAuthentication = Any; }").expect("write");
        assert!(
            AppleAgentConfig::read(&path).is_err(),
            "Any is a controller value"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
