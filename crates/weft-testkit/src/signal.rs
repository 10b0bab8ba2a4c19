//! Signals to a process by PID, through kill(2) (rustix's safe wrapper) rather than by spawning the `kill` command:
//! no fork per signal, no dependence on which `kill` build is on `$PATH` (some read `-KILL -<pgid>` as `kill(-1)`),
//! and a real error when the signal cannot be delivered.

use anyhow::{bail, Context, Result};
use rustix::process::Pid;
use std::fmt;
use std::str::FromStr;

/// The signals tests and benchmarks send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: the orderly shutdown.
    Term,
    /// SIGKILL: cannot be caught; nothing is cleaned up.
    Kill,
    /// SIGINT: what Ctrl-C sends.
    Int,
    /// SIGHUP: Weft's agent reloads its configuration.
    Hup,
}

impl Signal {
    /// The name without `SIG` (`TERM`), as `kill -l` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
            Signal::Int => "INT",
            Signal::Hup => "HUP",
        }
    }

    fn to_rustix(self) -> rustix::process::Signal {
        match self {
            Signal::Term => rustix::process::Signal::TERM,
            Signal::Kill => rustix::process::Signal::KILL,
            Signal::Int => rustix::process::Signal::INT,
            Signal::Hup => rustix::process::Signal::HUP,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}", self.name())
    }
}

/// `TERM` or `SIGTERM`, in any case, as `kill -s` takes them.
impl FromStr for Signal {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Signal> {
        let upper = s.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        [Signal::Term, Signal::Kill, Signal::Int, Signal::Hup]
            .into_iter()
            .find(|sig| sig.name() == name)
            .with_context(|| format!("unknown signal {s:?} (expected TERM, KILL, INT or HUP)"))
    }
}

/// Sends `sig` to process `pid`. Fails when there is no such process (it may have ended meanwhile: callers that
/// only tidy up ignore the error) or it may not be signalled. PID 0 and PIDs beyond `i32::MAX` are refused, since
/// kill(2) would read them as a process group.
pub fn signal(pid: u32, sig: Signal) -> Result<()> {
    let Some(target) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        bail!("cannot send {sig} to pid {pid}: not a single process's ID");
    };
    rustix::process::kill_process(target, sig.to_rustix())
        .with_context(|| format!("cannot send {sig} to pid {pid}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    #[test]
    fn names_parse_as_kill_takes_them() -> Result<()> {
        assert_eq!("TERM".parse::<Signal>()?, Signal::Term);
        assert_eq!("sigkill".parse::<Signal>()?, Signal::Kill);
        assert_eq!("Int".parse::<Signal>()?, Signal::Int);
        assert_eq!("SIGHUP".parse::<Signal>()?, Signal::Hup);
        assert!("USR1".parse::<Signal>().is_err());
        assert!("".parse::<Signal>().is_err());
        assert_eq!(Signal::Term.to_string(), "SIGTERM");
        Ok(())
    }

    #[test]
    fn refuses_what_kill_would_read_as_a_group() {
        for pid in [0, u32::MAX, 1 << 31] {
            let err = signal(pid, Signal::Term).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("not a single process")),
                "pid {pid}: {err:?}"
            );
        }
    }

    #[test]
    fn terminates_a_child_and_reports_a_gone_one() -> Result<()> {
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()?;
        signal(child.id(), Signal::Term)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("sleep did not end on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.signal(), Some(15), "{status}");
        // Reaped: the PID names no process now (unless reused within these microseconds, which is rare enough).
        assert!(signal(child.id(), Signal::Term).is_err());
        Ok(())
    }
}
