//! Locates the binaries tests and benchmarks drive. Tests never build them themselves (cargo is not re-entrant under
//! the shared lock): `cargo build -p weft` must have run, or `WEFT_BIN` must point at a binary. Benchmarks measure
//! release builds whatever profile they were built with themselves, hence [`binary`] takes the profile.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// A Cargo build profile: which `<target>/<profile>` directory a binary is looked for in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    /// The directory under `<target>` that Cargo builds this profile into.
    pub fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }

    /// The `cargo build` option that selects this profile (for error messages).
    fn cargo_flag(self) -> &'static str {
        match self {
            Profile::Debug => "",
            Profile::Release => " --release",
        }
    }
}

/// The `weft` binary: `$WEFT_BIN` if set, else `<target>/debug/weft` found by walking up from the running test
/// executable (`<target>/debug/deps/<test>-<hash>`).
pub fn weft_binary() -> Result<PathBuf> {
    weft_binary_of(Profile::Debug)
}

/// The `weft` binary: `$WEFT_BIN` if set, else `weft` of `profile` in the running executable's target directory.
pub fn weft_binary_of(profile: Profile) -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("WEFT_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("WEFT_BIN={} does not name a file", bin.display());
        }
        return Ok(bin);
    }
    binary("weft", profile).context("no weft binary to run (WEFT_BIN may name one)")
}

/// The binary `name` built with `profile`: `<target>/<profile>/<name>`, where `<target>` is the target directory
/// the running executable was built into (a test's `<target>/debug/deps/<test>-<hash>`, a benchmark's
/// `<target>/release/weft-bench`). Fails if the file is not there.
pub fn binary(name: &str, profile: Profile) -> Result<PathBuf> {
    let bin = target_dir()?.join(profile.dir()).join(name);
    if !bin.is_file() {
        bail!(
            "{name} is missing at {}: run `cargo build{} --bin {name}` first",
            bin.display(),
            profile.cargo_flag()
        );
    }
    Ok(bin)
}

/// The target directory of the running executable: the parent of its nearest `debug` or `release` ancestor.
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    exe.ancestors()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n == Profile::Debug.dir() || n == Profile::Release.dir())
        })
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .with_context(|| {
            format!(
                "cannot find a `debug` or `release` directory above {}",
                exe.display()
            )
        })
}

/// The `weft-sidecar` executable next to the `weft` binary: `weft connect proxy|ingress` hands over to it.
pub fn sidecar_binary() -> Result<PathBuf> {
    let bin = weft_binary()?.with_file_name("weft-sidecar");
    if !bin.is_file() {
        bail!(
            "weft-sidecar is missing at {}: run `cargo build -p weft -p weft-sidecar` first",
            bin.display()
        );
    }
    Ok(bin)
}

/// The executable a running process was started from (`/proc/PID/exe`).
pub fn executable_of(pid: u32) -> Result<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .with_context(|| format!("cannot read /proc/{pid}/exe"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_is_looked_for_in_the_profile_directory_of_the_target() -> Result<()> {
        let target = target_dir()?;
        let exe = std::env::current_exe()?;
        assert!(
            exe.starts_with(&target),
            "{} not under {}",
            exe.display(),
            target.display()
        );
        let err = binary("weft-testkit-no-such-binary", Profile::Release)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let expected = target.join("release").join("weft-testkit-no-such-binary");
        assert!(err.contains(&expected.display().to_string()), "{err}");
        assert!(
            err.contains("cargo build --release --bin weft-testkit-no-such-binary"),
            "{err}"
        );
        Ok(())
    }
}
