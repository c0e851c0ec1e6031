//! Apple's controller preferences, `com.apple.xgrid.controller.plist` (xgrid-wire.md §7),
//! mapped onto our [`Config`]: an old Mac controller's settings carry over as they are.
//! Passwords come from Apple's password files; flags given on the command line are applied
//! after this and win.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use xgrid_protocol::preferences::{Authentication, Preferences, PreferencesError};

use crate::Config;

/// Apple's client password file, relative to the password root (xgrid-wire.md §3).
pub const CLIENT_PASSWORD_FILE: &str = "controller/client-password";
/// Apple's agent password file, relative to the password root.
pub const AGENT_PASSWORD_FILE: &str = "controller/agent-password";

/// An agent silent for this many heartbeat intervals is taken for lost: Apple's default
/// interval of 60 s gives our default timeout of 300 s.
pub const HEARTBEATS_BEFORE_LOST: u32 = 5;

/// What an Apple controller plist says, read and checked but not yet applied.
#[derive(Debug, Clone)]
pub struct AppleControllerConfig {
    prefs: Preferences,
    /// `Enabled`; Apple's controller does not run when it is `NO`.
    pub enabled: bool,
    pub client_authentication: Option<Authentication>,
    pub agent_authentication: Option<Authentication>,
    pub advertise: Option<bool>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub heartbeat: Option<Duration>,
    pub service_domain: Option<String>,
    pub service_label: Option<String>,
    /// Keys this controller does not know, to be reported once and otherwise ignored.
    pub unknown_keys: Vec<String>,
}

impl AppleControllerConfig {
    /// Read the plist at `path` (XML, binary or old-style) and check every key we know.
    pub fn read(path: &Path) -> Result<AppleControllerConfig, PreferencesError> {
        let mut prefs = Preferences::read(path)?;
        let enabled = prefs.take_bool("Enabled")?.unwrap_or(true);
        let client_authentication = prefs.take_authentication("ClientAuthentication", true)?;
        let agent_authentication = prefs.take_authentication("AgentAuthentication", true)?;
        let advertise = prefs.take_bool("AdvertiseNetService")?;
        let hostname = prefs.take_string("ControllerHostname")?;
        // Port 0 picks a free port, as with --listen.
        let port = prefs
            .take_number("ControllerPortnumber", 0)?
            .map(|p| {
                u16::try_from(p).map_err(|_| PreferencesError::BadValue {
                    path: path.to_path_buf(),
                    key: "ControllerPortnumber".into(),
                    expected: "a port number up to 65535",
                    found: p.to_string(),
                })
            })
            .transpose()?;
        let heartbeat = prefs
            .take_number("HeartbeatUpdateInterval", 1)?
            .map(|s| Duration::from_secs(u64::from(s)));
        let service_domain = prefs.take_string("ServiceDomain")?;
        let service_label = prefs.take_string("ServiceLabel")?;
        let unknown_keys = prefs.remaining_keys();
        Ok(AppleControllerConfig {
            prefs,
            enabled,
            client_authentication,
            agent_authentication,
            advertise,
            hostname,
            port,
            heartbeat,
            service_domain,
            service_label,
            unknown_keys,
        })
    }

    /// The plist's path.
    pub fn path(&self) -> &Path {
        self.prefs.path()
    }

    /// Put every setting but the passwords into `config` (passwords wait until the command
    /// line has said whether it gives its own: see [`AppleControllerConfig::apply_passwords`]).
    pub fn apply(&self, config: &mut Config) {
        if let Some(port) = self.port {
            config.listen = SocketAddr::new(config.listen.ip(), port);
        }
        if let Some(hostname) = &self.hostname {
            config.hostname = hostname.clone();
        }
        if let Some(heartbeat) = self.heartbeat {
            config.agent_timeout = heartbeat * HEARTBEATS_BEFORE_LOST;
        }
        if let Some(advertise) = self.advertise {
            config.advertise = advertise;
        }
        if let Some(label) = &self.service_label {
            config.service_name = Some(label.clone());
        }
        if let Some(domain) = &self.service_domain {
            config.service_domain = Some(domain.clone());
        }
    }

    /// Read the passwords the plist asks for into `config`, leaving alone any password
    /// already there (given on the command line).
    pub fn apply_passwords(&self, config: &mut Config) -> Result<(), PreferencesError> {
        if config.client_password.is_none() {
            if let Some(auth) = self.client_authentication {
                config.client_password =
                    self.prefs
                        .password("ClientAuthentication", auth, CLIENT_PASSWORD_FILE)?;
            }
        }
        if config.agent_password.is_none() {
            if let Some(auth) = self.agent_authentication {
                config.agent_password =
                    self.prefs
                        .password("AgentAuthentication", auth, AGENT_PASSWORD_FILE)?;
            }
        }
        Ok(())
    }

    /// One line naming the keys that were ignored, if any.
    pub fn unknown_keys_warning(&self) -> Option<String> {
        (!self.unknown_keys.is_empty()).then(|| {
            format!(
                "ignoring unknown keys in {}: {}",
                self.path().display(),
                self.unknown_keys.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use xgrid_protocol::password::write_password_file;
    use xgrid_protocol::plist::{self, Dictionary, Value};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "xgrid-apple-controller-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    /// The same settings as Apple's tools would write them, in any format.
    fn settings() -> Dictionary {
        let mut d = Dictionary::new();
        d.insert("Enabled".into(), Value::Boolean(true));
        d.insert("ClientAuthentication".into(), "Password".into());
        d.insert("AgentAuthentication".into(), "None".into());
        d.insert("AdvertiseNetService".into(), Value::Boolean(false));
        d.insert("ControllerHostname".into(), "xserve.example.com".into());
        d.insert("ControllerPortnumber".into(), Value::Integer(4200));
        d.insert("HeartbeatUpdateInterval".into(), Value::Integer(20));
        d.insert("ServiceDomain".into(), "local.".into());
        d.insert("ServiceLabel".into(), "Render farm".into());
        d.insert("FailoverBehavior".into(), "Never".into());
        d
    }

    fn check(config: &Config, apple: &AppleControllerConfig) {
        assert!(apple.enabled);
        assert_eq!(config.listen, SocketAddr::from(([0, 0, 0, 0], 4200)));
        assert_eq!(config.hostname, "xserve.example.com");
        assert_eq!(config.agent_timeout, Duration::from_secs(100));
        assert!(!config.advertise);
        assert_eq!(config.service_name.as_deref(), Some("Render farm"));
        assert_eq!(config.service_domain.as_deref(), Some("local."));
        assert_eq!(config.client_password.as_deref(), Some("from-apple"));
        assert_eq!(config.agent_password, None);
        assert_eq!(apple.unknown_keys, vec!["FailoverBehavior".to_string()]);
        let warning = apple.unknown_keys_warning().expect("a warning");
        assert!(warning.contains("FailoverBehavior"), "{warning}");
    }

    #[test]
    fn every_format_gives_the_same_config() {
        let dir = scratch("formats");
        write_password_file(&dir.join(CLIENT_PASSWORD_FILE), "from-apple").expect("password");
        let value = Value::Dictionary(settings());
        // Old-style has no integers or booleans: the readers must take strings for them.
        let old_style = "{\n    Enabled = YES;\n    ClientAuthentication = Password;\n    \
            AgentAuthentication = None;\n    AdvertiseNetService = NO;\n    \
            ControllerHostname = \"xserve.example.com\";\n    ControllerPortnumber = 4200;\n    \
            HeartbeatUpdateInterval = 20;\n    ServiceDomain = \"local.\";\n    \
            ServiceLabel = \"Render farm\";\n    FailoverBehavior = Never;\n}\n";
        for (name, bytes) in [
            ("xml", plist::to_xml(&value)),
            ("binary", plist::to_binary(&value)),
            ("old-style", old_style.as_bytes().to_vec()),
        ] {
            let path = dir.join(format!("{name}.plist"));
            std::fs::write(&path, bytes).expect("write plist");
            let apple = AppleControllerConfig::read(&path).expect(name);
            let mut config = Config::new("/tmp/none");
            apple.apply(&mut config);
            apple.apply_passwords(&mut config).expect("passwords");
            check(&config, &apple);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_password_already_given_is_kept_and_no_file_is_needed() {
        let dir = scratch("given");
        let path = dir.join("c.plist");
        std::fs::write(
            &path,
            "{ ClientAuthentication = Password; AgentAuthentication = Any; }",
        )
        .expect("write");
        let apple = AppleControllerConfig::read(&path).expect("read");
        let mut config = Config::new("/tmp/none");
        config.client_password = Some("flag".into());
        config.agent_password = Some("flag2".into());
        apple.apply_passwords(&mut config).expect("no file needed");
        assert_eq!(config.client_password.as_deref(), Some("flag"));
        assert_eq!(config.agent_password.as_deref(), Some("flag2"));
        // Without passwords from the command line the missing files are an error.
        let mut bare = Config::new("/tmp/none");
        let err = apple.apply_passwords(&mut bare).expect_err("files missing");
        assert!(err.to_string().contains("client-password"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refusals_name_the_file() {
        let dir = scratch("refusals");
        let path = dir.join("c.plist");
        for text in [
            "{ ControllerPortnumber = 70000; }",
            "{ ClientAuthentication = Sometimes; }",
            "{ HeartbeatUpdateInterval = 0; }",
            "<plist><dict><key>Enabled</key>",
        ] {
            std::fs::write(&path, text).expect("write");
            let err = AppleControllerConfig::read(&path).expect_err(text);
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{text}: {err}"
            );
        }
        std::fs::write(&path, "{ AgentAuthentication = Kerberos; }").expect("write");
        let apple = AppleControllerConfig::read(&path).expect("read");
        assert!(matches!(
            apple.apply_passwords(&mut Config::new("/tmp/none")),
            Err(PreferencesError::Kerberos { .. })
        ));
        std::fs::write(&path, "{ Enabled = NO; }").expect("write");
        assert!(!AppleControllerConfig::read(&path).expect("read").enabled);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
