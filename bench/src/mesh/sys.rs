//! What the mesh scenario reads from `/proc`: process trees, CPU time, listening sockets.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Clock ticks per second in `/proc/<pid>/stat` (USER_HZ, 100 on every Linux architecture in use).
const USER_HZ: f64 = 100.0;

/// `(ppid, utime + stime in ticks)` of `pid`, from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: the fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// `pid` followed by all its descendants (found by scanning `/proc` for parent PIDs).
pub fn tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, _)) = stat(p) {
                parents.push((p, ppid));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

/// CPU time (user + system) used by `pids` so far, including their threads that have ended.
pub fn cpu(pids: &[u32]) -> Duration {
    let ticks: u64 = pids.iter().filter_map(|p| stat(*p)).map(|(_, t)| t).sum();
    Duration::from_secs_f64(ticks as f64 / USER_HZ)
}

/// CPU time the whole machine spent in user and system mode so far (`/proc/stat`, interrupts excluded: they
/// are not charged to processes either).
pub fn machine_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(3) // user, nice, system
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Duration::from_secs_f64(ticks as f64 / USER_HZ)
}

/// CPU time of this process's children that have ended and been waited for (cutime + cstime of
/// `/proc/self/stat`): after a `wrk` run, that is wrk's CPU time.
pub fn reaped_children_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let ticks: u64 = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .unwrap_or("")
        .split_whitespace()
        .skip(13) // fields 16 and 17 (cutime, cstime): after state (3) and 12 more
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Duration::from_secs_f64(ticks as f64 / USER_HZ)
}

/// Context switches (voluntary and not) of each live thread of `pids`, by thread ID, from
/// `/proc/<pid>/task/*/status`.
pub fn context_switches(pids: &[u32]) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(text) = std::fs::read_to_string(task.path().join("status")) else {
                continue;
            };
            let n = text
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
            out.push((tid, n));
        }
    }
    out
}

/// The proportional set size of `pid` in bytes (`Pss` of `/proc/<pid>/smaps_rollup`: each shared page divided
/// among the processes that map it, e.g. the pages of a binary that several processes run).
pub fn pss(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// The command name of `pid` (`/proc/<pid>/comm`), if it is alive.
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Whether something listens on 127.0.0.1:`port` (or 0.0.0.0:`port`), from `/proc/net/tcp`.
pub fn listening(port: u16) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let wanted = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    text.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() > 3 && f[3] == "0A" && wanted.iter().any(|w| w == f[1])
    })
}

/// This process's effective user ID and name (`/proc/self/status`, `/etc/passwd`).
pub fn current_user() -> Result<(u32, String)> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let euid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
        .context("no Uid line in /proc/self/status")?;
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2].parse() == Ok(euid)).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| euid.to_string());
    Ok((euid, name))
}

/// Finds `name` on `$PATH`, then in the sbin directories a non-root `$PATH` often lacks.
pub fn find_program(name: &str) -> Option<PathBuf> {
    crate::process::which(name).or_else(|| {
        ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/local/bin"]
            .iter()
            .map(|d| PathBuf::from(d).join(name))
            .find(|p| p.is_file())
    })
}
