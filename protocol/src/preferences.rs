//! Apple's Xgrid preference files (`com.apple.xgrid.controller.plist`,
//! `com.apple.xgrid.agent.plist`, xgrid-wire.md §7): a property list in any of the three
//! formats, read into a dictionary whose keys the controller and the agent take one by one
//! with the kind they expect, so that whatever is left is known to be unknown. Also finds the
//! password file an `…Authentication = Password` setting refers to.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::password::{read_password_file, PasswordFileError};
use crate::plist::{self, Dictionary, PlistError, Value};

/// Where Apple keeps the Xgrid password files; `controller/client-password` and the like
/// live below it (xgrid-wire.md §3).
pub const APPLE_PASSWORD_ROOT: &str = "/etc/xgrid";

/// A preference file that cannot be used; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PreferencesError {
    #[error("cannot read the Xgrid preference file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the Xgrid preference file {path} is not a valid property list: {source}")]
    Malformed { path: PathBuf, source: PlistError },
    #[error("the Xgrid preference file {path} holds {found}, not a dictionary of settings")]
    NotADictionary { path: PathBuf, found: &'static str },
    #[error("{key} in {path} must be {expected}, not {found}")]
    BadValue {
        path: PathBuf,
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("{key} = Kerberos in {path}: Kerberos is not supported; use Password or None")]
    Kerberos { path: PathBuf, key: String },
    #[error(
        "{key} asks for a password in {path}, but there is no password file at {}: copy \
         Apple's file there or give the password on the command line",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" or ")
    )]
    NoPasswordFile {
        path: PathBuf,
        key: String,
        tried: Vec<PathBuf>,
    },
    #[error(transparent)]
    PasswordFile(#[from] PasswordFileError),
}

/// How an `…Authentication` key says peers prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    None,
    Password,
    Kerberos,
    /// Password or Kerberos, whichever the peer offers (controller keys only).
    Any,
}

/// The settings of one preference file, minus those already taken.
#[derive(Debug, Clone)]
pub struct Preferences {
    path: PathBuf,
    entries: Dictionary,
}

impl Preferences {
    /// Read `path` as a property list (XML, binary or old-style) holding a dictionary.
    pub fn read(path: &Path) -> Result<Preferences, PreferencesError> {
        let bytes = fs::read(path).map_err(|source| PreferencesError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let value = plist::parse(&bytes).map_err(|source| PreferencesError::Malformed {
            path: path.to_path_buf(),
            source,
        })?;
        match value {
            Value::Dictionary(entries) => Ok(Preferences {
                path: path.to_path_buf(),
                entries,
            }),
            other => Err(PreferencesError::NotADictionary {
                path: path.to_path_buf(),
                found: other.kind_name(),
            }),
        }
    }

    /// The file the settings came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keys nobody has taken, sorted: the caller reports them as unknown.
    pub fn remaining_keys(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Take `key` as it is.
    pub fn take_value(&mut self, key: &str) -> Option<Value> {
        self.entries.remove(key)
    }

    /// Take `key` as a boolean (`<true/>`, `YES`/`NO`, `1`/`0`).
    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>, PreferencesError> {
        self.take_with(key, "YES or NO", Value::to_bool)
    }

    /// Take `key` as text; numbers are accepted in their plain form. Surrounding blanks are
    /// dropped and an empty string counts as absent, as Apple's tools leave unset names empty.
    pub fn take_string(&mut self, key: &str) -> Result<Option<String>, PreferencesError> {
        let text = self.take_with(key, "a string", Value::to_string_lenient)?;
        Ok(text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
    }

    /// Take `key` as a whole number no smaller than `min` (an integer or a numeric string).
    pub fn take_number(&mut self, key: &str, min: u32) -> Result<Option<u32>, PreferencesError> {
        self.take_with(key, "a whole number", |v| {
            let n = match v {
                Value::Real(r) if r.fract() != 0.0 => return None,
                Value::Boolean(_) => return None,
                _ => v.to_i64()?,
            };
            u32::try_from(n).ok().filter(|n| *n >= min)
        })
    }

    /// Take an `…Authentication` key; `Any` is refused unless `any_allowed`.
    pub fn take_authentication(
        &mut self,
        key: &str,
        any_allowed: bool,
    ) -> Result<Option<Authentication>, PreferencesError> {
        let expected = if any_allowed {
            "Password, Kerberos, Any or None"
        } else {
            "Password, Kerberos or None"
        };
        self.take_with(key, expected, |v| {
            match v.as_str()?.trim().to_ascii_lowercase().as_str() {
                "none" => Some(Authentication::None),
                "password" => Some(Authentication::Password),
                "kerberos" => Some(Authentication::Kerberos),
                "any" if any_allowed => Some(Authentication::Any),
                _ => None,
            }
        })
    }

    /// The password an `…Authentication` setting asks for, read from Apple's password file
    /// `relative` (e.g. `controller/client-password`). The file is looked for first in the
    /// directory of the preference file (so a plist kept in /etc/xgrid finds Apple's own
    /// layout, and a copied set of files works anywhere), then under [`APPLE_PASSWORD_ROOT`].
    /// `None` when the setting needs no password. Kerberos is refused: we cannot serve it,
    /// and quietly accepting everyone instead would open the grid.
    pub fn password(
        &self,
        key: &str,
        authentication: Authentication,
        relative: &str,
    ) -> Result<Option<String>, PreferencesError> {
        match authentication {
            Authentication::None => Ok(None),
            Authentication::Kerberos => Err(PreferencesError::Kerberos {
                path: self.path.clone(),
                key: key.to_string(),
            }),
            Authentication::Password | Authentication::Any => {
                let tried = self.password_file_candidates(relative);
                match tried.iter().find(|p| p.exists()) {
                    Some(file) => Ok(Some(read_password_file(file)?)),
                    None => Err(PreferencesError::NoPasswordFile {
                        path: self.path.clone(),
                        key: key.to_string(),
                        tried,
                    }),
                }
            }
        }
    }

    /// Where [`Preferences::password`] looks for `relative`, in order, without duplicates.
    pub fn password_file_candidates(&self, relative: &str) -> Vec<PathBuf> {
        let beside = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join(relative);
        let apple = Path::new(APPLE_PASSWORD_ROOT).join(relative);
        if beside == apple {
            vec![apple]
        } else {
            vec![beside, apple]
        }
    }

    fn take_with<T>(
        &mut self,
        key: &str,
        expected: &'static str,
        read: impl Fn(&Value) -> Option<T>,
    ) -> Result<Option<T>, PreferencesError> {
        let Some(value) = self.entries.remove(key) else {
            return Ok(None);
        };
        read(&value)
            .map(Some)
            .ok_or_else(|| PreferencesError::BadValue {
                path: self.path.clone(),
                key: key.to_string(),
                expected,
                found: describe(&value),
            })
    }
}

/// A value as an error message shows it: strings quoted, other kinds by name.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(i) => i.to_string(),
        other => other.kind_name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::write_password_file;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "xgrid-preferences-test-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn write(dir: &Path, text: &str) -> Preferences {
        let path = dir.join("com.apple.xgrid.controller.plist");
        fs::write(&path, text).expect("write plist");
        Preferences::read(&path).expect("read plist")
    }

    #[test]
    fn typed_keys_and_what_is_left() {
        let dir = scratch("typed");
        let mut prefs = write(
            &dir,
            "{ On = YES; Off = 0; Name = \" node \"; Empty = \"\"; Count = 4; \
             Auth = password; Extra = x; }",
        );
        assert_eq!(prefs.take_bool("On").expect("bool"), Some(true));
        assert_eq!(prefs.take_bool("Off").expect("bool"), Some(false));
        assert_eq!(prefs.take_bool("Missing").expect("absent"), None);
        assert_eq!(
            prefs.take_string("Name").expect("string").as_deref(),
            Some("node")
        );
        assert_eq!(prefs.take_string("Empty").expect("string"), None);
        assert_eq!(prefs.take_number("Count", 1).expect("number"), Some(4));
        assert_eq!(
            prefs.take_authentication("Auth", false).expect("auth"),
            Some(Authentication::Password)
        );
        assert_eq!(prefs.remaining_keys(), vec!["Extra".to_string()]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn wrong_kinds_name_the_key_and_the_file() {
        let dir = scratch("wrong");
        let mut prefs = write(
            &dir,
            "{ On = maybe; Count = 0; Auth = Any; List = (a); Big = 99999999999; }",
        );
        let message = prefs.take_bool("On").expect_err("not a bool").to_string();
        assert!(message.contains("On in "), "{message}");
        assert!(
            message.contains("com.apple.xgrid.controller.plist"),
            "{message}"
        );
        assert!(message.contains("\"maybe\""), "{message}");
        assert!(prefs.take_number("Count", 1).is_err());
        assert!(prefs.take_authentication("Auth", false).is_err());
        assert!(prefs.take_string("List").is_err());
        assert!(prefs.take_number("Big", 0).is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn malformed_files_are_named() {
        let dir = scratch("malformed");
        let path = dir.join("broken.plist");
        fs::write(&path, "{ Enabled = YES; ").expect("write");
        let err = Preferences::read(&path).expect_err("malformed");
        assert!(matches!(err, PreferencesError::Malformed { .. }));
        assert!(err.to_string().contains(&path.display().to_string()));
        fs::write(&path, "(a, b)").expect("write");
        assert!(matches!(
            Preferences::read(&path),
            Err(PreferencesError::NotADictionary { .. })
        ));
        assert!(matches!(
            Preferences::read(&dir.join("absent.plist")),
            Err(PreferencesError::Read { .. })
        ));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn password_files_beside_the_plist() {
        let dir = scratch("password");
        let prefs = write(&dir, "{}");
        assert_eq!(
            prefs
                .password(
                    "ClientAuthentication",
                    Authentication::None,
                    "controller/client-password"
                )
                .expect("none"),
            None
        );
        assert!(matches!(
            prefs.password(
                "ClientAuthentication",
                Authentication::Kerberos,
                "controller/x"
            ),
            Err(PreferencesError::Kerberos { .. })
        ));
        let missing = prefs
            .password(
                "ClientAuthentication",
                Authentication::Password,
                "controller/nothing-here",
            )
            .expect_err("no file");
        let message = missing.to_string();
        assert!(message.contains(&dir.join("controller/nothing-here").display().to_string()));
        assert!(
            message.contains("/etc/xgrid/controller/nothing-here"),
            "{message}"
        );
        write_password_file(&dir.join("controller/client-password"), "s3cret").expect("write");
        for auth in [Authentication::Password, Authentication::Any] {
            assert_eq!(
                prefs
                    .password("ClientAuthentication", auth, "controller/client-password")
                    .expect("password")
                    .as_deref(),
                Some("s3cret")
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
