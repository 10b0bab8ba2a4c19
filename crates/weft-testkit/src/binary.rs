//! Locates the `weft` binary the tests drive. Tests never build it themselves (cargo is not re-entrant under the
//! shared lock): `cargo build -p weft` must have run, or `WEFT_BIN` must point at a binary.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The `weft` binary: `$WEFT_BIN` if set, else `<target>/debug/weft` found by walking up from the running test
/// executable (`<target>/debug/deps/<test>-<hash>`).
pub fn weft_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("WEFT_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("WEFT_BIN={} does not name a file", bin.display());
        }
        return Ok(bin);
    }
    let exe = std::env::current_exe().context("cannot find the running test executable")?;
    let debug = exe
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "debug"))
        .map(Path::to_path_buf)
        .with_context(|| {
            format!(
                "cannot find a `debug` directory above {}; set WEFT_BIN to the weft binary",
                exe.display()
            )
        })?;
    let bin = debug.join("weft");
    if !bin.is_file() {
        bail!(
            "the weft binary is missing at {}: run `cargo build -p weft` first (or set WEFT_BIN)",
            bin.display()
        );
    }
    Ok(bin)
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
