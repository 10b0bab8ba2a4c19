//! Runs the `weft` CLI as a user would: a separate process with arguments, optional stdin and environment, its
//! exit code and output captured. The environment is scrubbed of `CONSUL_HTTP_ADDR`/`WEFT_HTTP_ADDR` so only what a
//! test sets decides which agent a command talks to.

use crate::agent::DevAgent;
use crate::binary::weft_binary;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// No CLI command in the tests should take longer than this.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variables that would point the CLI at some other agent.
const ADDR_VARS: [&str; 4] = [
    "CONSUL_HTTP_ADDR",
    "WEFT_HTTP_ADDR",
    "CONSUL_HTTP_TOKEN",
    "WEFT_HTTP_TOKEN",
];

/// What a CLI run produced.
#[derive(Debug, Clone)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// The exit code (-1 when killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

/// Runs `weft <args>` against `agent`, adding `-http-addr=<agent>` right after the (sub)command words.
pub fn cli(agent: &DevAgent, args: &[&str]) -> Result<CliOutput> {
    Cli::new().agent(agent).args(args).run()
}

/// A CLI invocation with full control over flags, stdin and environment.
#[derive(Default)]
pub struct Cli {
    args: Vec<String>,
    addr: Option<String>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
}

impl Cli {
    pub fn new() -> Cli {
        Cli::default()
    }

    /// Points the command at `agent` with `-http-addr=127.0.0.1:PORT` after the subcommand words.
    pub fn agent(mut self, agent: &DevAgent) -> Cli {
        self.addr = Some(agent.addr().to_string());
        self
    }

    pub fn args(mut self, args: &[&str]) -> Cli {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Cli {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Bytes fed to the command's stdin (default: no stdin at all).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cli {
        self.stdin = Some(bytes.into());
        self
    }

    /// The argument list that will run, with `-http-addr` inserted where the subcommand takes flags.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = self.args.clone();
        if let Some(addr) = &self.addr {
            let depth = match argv.first().map(String::as_str) {
                Some("catalog" | "services" | "kv" | "snapshot") => 2,
                Some("operator") => 3,
                Some("version" | "agent" | "tls" | "keygen") | None => 0,
                Some(_) => 1,
            };
            if depth > 0 {
                let at = depth.min(argv.len());
                argv.insert(at, format!("-http-addr={addr}"));
            }
        }
        argv
    }

    pub fn run(self) -> Result<CliOutput> {
        let bin = weft_binary()?;
        let argv = self.argv();
        let mut cmd = Command::new(&bin);
        cmd.args(&argv);
        for var in ADDR_VARS {
            cmd.env_remove(var);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot run {} {argv:?}", bin.display()))?;
        if let (Some(bytes), Some(mut pipe)) = (self.stdin, child.stdin.take()) {
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        let read_all = |stream: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut s) = stream {
                    let _ = s.read_to_end(&mut buf);
                }
                String::from_utf8_lossy(&buf).into_owned()
            })
        };
        let out = read_all(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let err = read_all(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let deadline = Instant::now() + CLI_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().context("cannot poll the CLI process")? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("`weft {argv:?}` did not finish within {CLI_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        Ok(CliOutput {
            status,
            stdout,
            stderr,
        })
    }
}

/// A CA and certificates made with `weft tls` in `dir`: `weft-agent-ca.pem` (and its key), and one certificate per
/// role (`-server`: `dc1-server-weft-0.pem`, `-client`: `dc1-client-weft-0.pem`, each with its `-key.pem`).
pub fn make_tls_certs(dir: &std::path::Path, roles: &[&str]) -> Result<()> {
    let d = dir.display().to_string();
    let ca = Cli::new()
        .args(&["tls", "ca", "create", "-dir", &d])
        .run()?;
    anyhow::ensure!(ca.code() == 0, "weft tls ca create: {}", ca.stderr);
    for role in roles {
        make_tls_cert(dir, &[role])?;
    }
    Ok(())
}

/// One more certificate from the CA [`make_tls_certs`] made in `dir`: `weft tls cert create` with `args`
/// (`-server -dc dc2` makes `dc2-server-weft-0.pem`).
pub fn make_tls_cert(dir: &std::path::Path, args: &[&str]) -> Result<()> {
    let d = dir.display().to_string();
    let (ca, key) = (
        format!("{d}/weft-agent-ca.pem"),
        format!("{d}/weft-agent-ca-key.pem"),
    );
    let mut all = vec!["tls", "cert", "create"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-dir", &d, "-ca", &ca, "-key", &key]);
    let out = Cli::new().args(&all).run()?;
    anyhow::ensure!(
        out.code() == 0,
        "weft tls cert create {args:?}: {}",
        out.stderr
    );
    Ok(())
}
