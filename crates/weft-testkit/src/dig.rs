//! Asking an agent's DNS interface with Debian's `dig`, as users do.

use anyhow::{ensure, Context, Result};
use std::net::SocketAddr;
use std::process::Command;

/// `dig @agent -p PORT <args>`: one try, two seconds; the whole output.
pub fn dig(at: SocketAddr, args: &[&str]) -> Result<String> {
    let out = Command::new("dig")
        .arg(format!("@{}", at.ip()))
        .args(["-p", &at.port().to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .context("cannot run dig (Debian's dnsutils)")?;
    ensure!(
        out.status.success(),
        "dig {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The lines of `dig +short`, sorted.
pub fn short(at: SocketAddr, args: &[&str]) -> Result<Vec<String>> {
    let mut all = vec!["+short"];
    all.extend_from_slice(args);
    let mut lines: Vec<String> = dig(at, &all)?
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    Ok(lines)
}
