//! Any other process a test runs (sidecar proxies, `greeter-demo` services): output kept in a file for error
//! messages, killed on drop so a failing test leaves nothing behind.

use crate::signal::{signal, Signal};
use crate::TempDir;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

pub struct Spawned {
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl Spawned {
    pub fn start(bin: &Path, args: &[String]) -> Result<Spawned> {
        Spawned::start_with_env(bin, args, &[])
    }

    /// [`Spawned::start`] with extra environment variables.
    pub fn start_with_env(bin: &Path, args: &[String], env: &[(&str, &str)]) -> Result<Spawned> {
        let dir = TempDir::new()?;
        let log = dir.path().join("out.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {} {args:?}", bin.display()))?;
        Ok(Spawned {
            child,
            log,
            _dir: dir,
        })
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, and the exit status within 5 s.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        // Already ended: its status, and no signal (once reaped, the PID may name another process).
        if let Some(s) = self.child.try_wait()? {
            return Ok(s);
        }
        signal(self.child.id(), Signal::Term)?;
        for _ in 0..200 {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!("did not exit within 5 s after SIGTERM:\n{}", self.output())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`), for tests that bound memory growth.
pub fn rss_kb(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}
