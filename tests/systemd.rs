//! The systemd units in `dist/systemd/` pass `systemd-analyze verify` without a single
//! complaint: unit syntax, every key known, the binaries executable (pointed at the ones
//! this build made) and the `man:` pages they cite found (pointed at `man/`).

use std::path::{Path, PathBuf};
use std::process::Command;

use xgrid_grid_tests::{binary, scratch_dir};

const UNITS: [&str; 2] = ["xgridcontrollerd", "xgridagentd"];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What `systemd-analyze verify` says about `units` (exit status, everything it printed),
/// with the committed man pages as its man path; `None` when the tool is missing.
fn verify(units: &[PathBuf], man_root: &Path) -> Option<(bool, String)> {
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(units)
        .env("MANPATH", man_root)
        .output()
        .ok()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some((output.status.success(), said))
}

#[test]
fn the_units_verify_cleanly() {
    let dir = scratch_dir("systemd");
    // man(1) looks for pages in manN/ directories below each MANPATH entry.
    for page in std::fs::read_dir(repository().join("man")).expect("man/") {
        let page = page.expect("man page").path();
        let section = page
            .extension()
            .and_then(|e| e.to_str())
            .expect("a man page has its section as extension");
        let target = dir.join(format!("man/man{section}"));
        std::fs::create_dir_all(&target).expect("man dir");
        std::fs::copy(&page, target.join(page.file_name().expect("name"))).expect("copy page");
    }
    let mut units = Vec::new();
    for name in UNITS {
        let text =
            std::fs::read_to_string(repository().join(format!("dist/systemd/{name}.service")))
                .expect("unit file");
        assert!(text.contains(&format!("ExecStart=/usr/local/bin/{name} ")));
        let built = binary(name);
        let bin_dir = built.parent().expect("target dir").display().to_string();
        let unit = dir.join(format!("{name}.service"));
        std::fs::write(&unit, text.replace("/usr/local/bin", &bin_dir)).expect("write unit");
        units.push(unit);
    }
    let Some((ok, said)) = verify(&units, &dir.join("man")) else {
        // scripts/setup runs on Debian 12, where systemd (and so systemd-analyze) is part of
        // the base system; a machine without it cannot check unit files at all.
        eprintln!("skipped: systemd-analyze is not installed, so the units cannot be verified");
        return;
    };
    assert!(ok, "systemd-analyze verify failed:\n{said}");
    assert_eq!(said.trim(), "", "systemd-analyze verify complained");

    // The check can fail: a unit with a mistake in it is reported.
    let broken = dir.join("broken.service");
    let text = std::fs::read_to_string(&units[1]).expect("unit");
    std::fs::write(
        &broken,
        text.replace("KillMode=mixed", "KillMode=sometimes"),
    )
    .expect("write");
    let (_, said) = verify(&[broken], &dir.join("man")).expect("ran before");
    assert!(
        said.contains("KillMode") || said.contains("kill mode"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
