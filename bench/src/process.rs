//! Starting, watching and stopping the processes a benchmark measures.
//!
//! [`Agent::start`] spawns `weft agent -dev -http-port 0`, reads its stdout until the `HTTP API: http://...` line
//! and returns a guard that kills the process when dropped, so every process started here ends, also when a
//! scenario fails half-way. The agent's stderr (its log) goes to a temporary file that is quoted when start-up
//! fails and deleted with the guard. [`Rss`] reads a process's memory from `/proc/<pid>/status`.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long an agent may take to print its HTTP address before start-up counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running child process, killed (SIGKILL) and reaped when dropped.
pub struct Guard {
    child: Child,
    name: String,
    /// Files and directories to delete once the process is gone.
    cleanup: Vec<PathBuf>,
}

impl Guard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A one-line description of how the process ended, if it has.
    pub fn exit_status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited: {status}", self.name)),
            _ => None,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // WEFT_BENCH_KEEP_LOGS=1 keeps every process's log (stderr) in the temporary directory for a post-mortem.
        let keep_logs = std::env::var_os("WEFT_BENCH_KEEP_LOGS").is_some();
        for path in &self.cleanup {
            if keep_logs && path.extension().is_some_and(|e| e == "log") {
                continue;
            }
            if path.is_dir() {
                let _ = std::fs::remove_dir_all(path);
            } else {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// A fresh path in the temporary directory for this run's files.
pub fn temp_path(what: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("weft-bench-{}-{n}-{what}", std::process::id()))
}

/// A spawned command with stderr to a temporary file and stdout piped; the process is killed when the guard
/// drops.
pub fn spawn(name: &str, cmd: &mut Command) -> Result<(Guard, std::process::ChildStdout)> {
    let log = temp_path(&format!("{name}.log"));
    let stderr =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
    let stdout = child.stdout.take();
    let guard = Guard {
        child,
        name: name.to_string(),
        cleanup: vec![log],
    };
    let stdout = stdout.ok_or_else(|| anyhow!("{name}: no stdout pipe"))?;
    Ok((guard, stdout))
}

/// The last lines of the file a guard's stderr went to (for error messages).
pub fn stderr_tail(guard: &Guard) -> String {
    let Some(log) = guard.cleanup.first() else {
        return String::new();
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// A running `weft agent -dev`.
pub struct Agent {
    pub guard: Guard,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// When the process was spawned (taken just before `spawn`).
    pub spawned: Instant,
    /// When the `HTTP API:` line was read from its stdout.
    pub announced: Instant,
}

impl Agent {
    /// Starts `weft agent -dev -http-port 0` (DNS on a free port) and waits for it to print its HTTP address.
    pub async fn start(bin: &Path) -> Result<Agent> {
        Agent::start_dev(bin, "0", &[]).await
    }

    /// Starts `weft agent -dev -http-port 0 -node weft-bench -dns-port <dns>` with `extra` arguments after.
    pub async fn start_dev(bin: &Path, dns: &str, extra: &[&str]) -> Result<Agent> {
        let mut args: Vec<String> = ["agent", "-dev", "-http-port", "0", "-node", "weft-bench"]
            .map(String::from)
            .to_vec();
        args.extend(["-dns-port".to_string(), dns.to_string()]);
        args.extend(extra.iter().map(|a| a.to_string()));
        Agent::start_with(bin, &args).await
    }

    /// Starts `weft` with these arguments (an `agent` command with `-http-port 0`) and waits for its HTTP address.
    pub async fn start_with(bin: &Path, args: &[String]) -> Result<Agent> {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        let spawned = Instant::now();
        let (mut guard, stdout) = spawn("weft", &mut cmd)?;
        let (tx, rx) = tokio::sync::oneshot::channel::<(String, Instant)>();
        // A thread reads stdout: it sends the HTTP address once, then drains the pipe until the process ends.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.split("HTTP API: ").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send((url.trim().to_string(), Instant::now()));
                    }
                }
            }
        });
        let (url, announced) = match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(found)) => found,
            Ok(Err(_)) => {
                // stdout closed without the line: the agent died; give it a moment to be reaped.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let status = guard.exit_status().unwrap_or_default();
                bail!(
                    "weft agent ended without printing its HTTP address ({status}); its log:\n{}",
                    stderr_tail(&guard)
                );
            }
            Err(_) => bail!(
                "weft agent printed no HTTP address within {START_TIMEOUT:?}; its log:\n{}",
                stderr_tail(&guard)
            ),
        };
        let addr = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("unexpected HTTP API line: {url:?}"))?
            .trim_end_matches('/')
            .to_string();
        Ok(Agent {
            guard,
            url: url.trim_end_matches('/').to_string(),
            addr,
            spawned,
            announced,
        })
    }

    pub fn rss(&self) -> Result<Rss> {
        Rss::of(self.guard.pid())
    }
}

/// Memory figures of one process, in bytes, from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rss {
    pub rss: u64,
    pub anon: u64,
    pub file: u64,
    pub hwm: u64,
    pub threads: u64,
}

impl Rss {
    pub fn of(pid: u32) -> Result<Rss> {
        let path = format!("/proc/{pid}/status");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let mut rss = Rss::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let number: u64 = value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            match key {
                "VmRSS" => rss.rss = number * 1024,
                "RssAnon" => rss.anon = number * 1024,
                "RssFile" => rss.file = number * 1024,
                "VmHWM" => rss.hwm = number * 1024,
                "Threads" => rss.threads = number,
                _ => {}
            }
        }
        if rss.rss == 0 {
            bail!("no VmRSS in {path}");
        }
        Ok(rss)
    }

    /// `12.3 MB (anon 8.1 MB, file 4.2 MB, 4 threads)`
    pub fn describe(&self) -> String {
        format!(
            "{} (anon {}, file {}, peak {}, {} threads)",
            mb(self.rss),
            mb(self.anon),
            mb(self.file),
            mb(self.hwm),
            self.threads
        )
    }
}

/// CPU time used so far by the live threads of process `pid` (the sum of `/proc/<pid>/task/*/schedstat`, in
/// nanoseconds; threads that have ended are not counted).
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0u64;
    for task in std::fs::read_dir(&dir).with_context(|| format!("cannot read {dir}"))? {
        let path = task?.path().join("schedstat");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // the thread ended meanwhile
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(Duration::from_nanos(total))
}

/// Bytes as megabytes (10^6, as the targets are stated), e.g. `12.34 MB`.
pub fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// The soft limit on open files of this process (children inherit it).
pub fn open_file_limit() -> Result<u64> {
    let text =
        std::fs::read_to_string("/proc/self/limits").context("cannot read /proc/self/limits")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .ok_or_else(|| anyhow!("no 'Max open files' in /proc/self/limits"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()
        .ok_or_else(|| anyhow!("unreadable line {line:?}"))?;
    if soft == "unlimited" {
        return Ok(u64::MAX);
    }
    soft.parse()
        .with_context(|| format!("unreadable open-file limit {soft:?}"))
}

/// Finds `name` on `$PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Reads a child's stdout to the end so it never blocks on a full pipe.
pub fn drain(stdout: std::process::ChildStdout) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut { stdout }, &mut std::io::sink());
    });
}

/// Registers a guard's extra clean-up path (e.g. a peer's data directory).
pub fn also_remove(guard: &mut Guard, path: PathBuf) {
    guard.cleanup.push(path);
}
