//! Apple's Xgrid password files (xgrid-wire.md §3): the password is stored obfuscated, not
//! hashed, by XOR-ing each byte with a fixed 11-byte key. Reading, writing and the paths
//! Apple's controller and agent use.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Password the controller requires of clients.
pub const CONTROLLER_CLIENT_PASSWORD_PATH: &str = "/etc/xgrid/controller/client-password";
/// Password the controller requires of agents.
pub const CONTROLLER_AGENT_PASSWORD_PATH: &str = "/etc/xgrid/controller/agent-password";
/// Password an agent presents to its controller.
pub const AGENT_CONTROLLER_PASSWORD_PATH: &str = "/etc/xgrid/agent/controller-password";

/// Apple's obfuscation key. Only the first 11 bytes of a password are known to use it; going
/// round the key again for longer passwords is a guess (xgrid-wire.md §3 tags it [guess]).
pub const OBFUSCATION_KEY: [u8; 11] = [
    0x7D, 0x89, 0x52, 0x23, 0xD2, 0xBC, 0xDD, 0xEA, 0xA3, 0xB9, 0x1F,
];

/// A password file that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    #[error("no password file at {0}: set a password first")]
    Missing(PathBuf),
    #[error("cannot read the password file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the password file {0} does not decode to UTF-8 text: is it an Xgrid password file?")]
    NotUtf8(PathBuf),
    #[error("the password file {0} holds an empty password")]
    Empty(PathBuf),
    #[error("cannot write the password file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Obfuscate password bytes the way Apple stores them.
pub fn obfuscate(clear: &[u8]) -> Vec<u8> {
    clear
        .iter()
        .zip(OBFUSCATION_KEY.iter().cycle())
        .map(|(b, k)| b ^ k)
        .collect()
}

/// Recover password bytes from Apple's stored form (XOR undoes itself).
pub fn deobfuscate(stored: &[u8]) -> Vec<u8> {
    obfuscate(stored)
}

/// Read and decode a password file. Trailing NUL bytes are dropped: a writer that stored a
/// C string's terminator must not change the password, and no real password ends in NUL.
pub fn read_password_file(path: &Path) -> Result<String, PasswordFileError> {
    let stored = fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => PasswordFileError::Missing(path.to_path_buf()),
        _ => PasswordFileError::Read {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let mut clear = deobfuscate(&stored);
    while clear.last() == Some(&0) {
        clear.pop();
    }
    if clear.is_empty() {
        return Err(PasswordFileError::Empty(path.to_path_buf()));
    }
    String::from_utf8(clear).map_err(|_| PasswordFileError::NotUtf8(path.to_path_buf()))
}

/// Write `password` obfuscated to `path`, creating parent directories; the file is made
/// readable by its owner only (0600) before the secret goes in.
pub fn write_password_file(path: &Path, password: &str) -> Result<(), PasswordFileError> {
    let failed = |source| PasswordFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(failed)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(failed)?;
    // `mode` only applies to a new file; an existing one may have looser permissions.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(failed)?;
    }
    file.write_all(&obfuscate(password.as_bytes()))
        .map_err(failed)?;
    file.sync_all().map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("xgrid-password-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn known_bytes_worked_out_by_hand() {
        // "secret" = 73 65 63 72 65 74, XOR 7D 89 52 23 D2 BC.
        assert_eq!(obfuscate(b"secret"), [0x0E, 0xEC, 0x31, 0x51, 0xB7, 0xC8]);
        // Twelve 'A's (0x41): the twelfth byte uses the key's first byte again (0x41^0x7D).
        let stored = obfuscate(&[0x41; 12]);
        assert_eq!(stored[0], 0x3C);
        assert_eq!(stored[10], 0x41 ^ 0x1F);
        assert_eq!(stored[11], 0x3C);
        assert_eq!(
            deobfuscate(&[0x0E, 0xEC, 0x31, 0x51, 0xB7, 0xC8]),
            b"secret"
        );
    }

    #[test]
    fn round_trip() {
        for clear in [
            &b""[..],
            b"x",
            b"exactly11ch",
            b"a much longer password than the key",
            b"\xff\x00\x7d",
        ] {
            let stored = obfuscate(clear);
            assert_eq!(deobfuscate(&stored), clear);
            if !clear.is_empty() {
                assert_ne!(stored, clear);
            }
        }
    }

    #[test]
    fn files_round_trip_with_private_mode() {
        let dir = scratch_dir("round-trip");
        let path = dir.join("controller").join("client-password");
        write_password_file(&path, "pässwörd longer than eleven").expect("write");
        let stored = fs::read(&path).expect("raw");
        assert_eq!(stored, obfuscate("pässwörd longer than eleven".as_bytes()));
        assert_eq!(
            read_password_file(&path).expect("read"),
            "pässwörd longer than eleven"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
            write_password_file(&path, "short").expect("overwrite");
            let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            assert_eq!(read_password_file(&path).expect("read"), "short");
        }
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn trailing_nul_is_ignored() {
        let dir = scratch_dir("nul");
        fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("agent-password");
        fs::write(&path, obfuscate(b"secret\0")).expect("write");
        assert_eq!(read_password_file(&path).expect("read"), "secret");
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = scratch_dir("errors");
        fs::create_dir_all(&dir).expect("mkdir");
        let missing = dir.join("nope");
        let err = read_password_file(&missing).expect_err("missing");
        assert!(matches!(err, PasswordFileError::Missing(_)));
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );

        let garbled = dir.join("garbled");
        fs::write(&garbled, obfuscate(b"\xff\xfe")).expect("write");
        let err = read_password_file(&garbled).expect_err("not utf-8");
        assert!(matches!(err, PasswordFileError::NotUtf8(_)));
        assert!(
            err.to_string().contains(&garbled.display().to_string()),
            "{err}"
        );

        let empty = dir.join("empty");
        fs::write(&empty, b"").expect("write");
        assert!(matches!(
            read_password_file(&empty),
            Err(PasswordFileError::Empty(_))
        ));

        // A directory cannot be read as a file.
        let err = read_password_file(&dir).expect_err("directory");
        assert!(matches!(err, PasswordFileError::Read { .. }));
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{err}"
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
