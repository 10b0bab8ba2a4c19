//! Weft in Docker containers, for tests that need real network faults between hosts.
//!
//! No image can be pulled here, so the image is built `FROM scratch` out of the built `weft` binary and the shared
//! libraries `ldd` names (the dynamic loader, libc, libm, libgcc_s), plus an empty `/data`. Networks, containers and
//! the image are named after this process and removed on drop, also when the test fails.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("cannot run docker (is Docker installed and running?)")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The libraries a dynamically linked binary loads, from `ldd`.
fn libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = line
            .split("=>")
            .nth(1)
            .unwrap_or(line)
            .split_whitespace()
            .next()
            .unwrap_or("");
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// A `FROM scratch` image holding `bin` as `/weft`.
pub struct Image {
    pub tag: String,
}

impl Image {
    pub fn build(bin: &Path, tag: &str) -> Result<Image> {
        let ctx = crate::TempDir::new()?;
        let root = ctx.path().join("rootfs");
        std::fs::create_dir_all(root.join("data"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        std::fs::copy(bin, root.join("weft")).context("copying the weft binary")?;
        for lib in libraries(bin)? {
            let dest = root.join(lib.strip_prefix("/").unwrap_or(&lib));
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::copy(&lib, &dest).with_context(|| format!("copying {}", lib.display()))?;
        }
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/weft\"]\n",
        )?;
        let dir = ctx.path().display().to_string();
        docker(&["build", "-q", "-t", tag, &dir])?;
        Ok(Image { tag: tag.into() })
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.tag]);
    }
}

/// A user-defined bridge network with its own /24.
pub struct Network {
    pub name: String,
    /// "172.30.N" — hosts are `{prefix}.{host}`.
    pub prefix: String,
}

impl Network {
    /// Creates a network on the first free 172.30-31.x.0/24.
    pub fn create(name: &str) -> Result<Network> {
        let mut last = String::new();
        let start = (std::process::id() % 200) as u16;
        for i in 0..50u16 {
            let n = (start + i * 7) % 250 + 1;
            let prefix = format!("172.31.{n}");
            match docker(&[
                "network",
                "create",
                "--driver",
                "bridge",
                "--subnet",
                &format!("{prefix}.0/24"),
                name,
            ]) {
                Ok(_) => {
                    return Ok(Network {
                        name: name.into(),
                        prefix,
                    })
                }
                Err(e) => last = e.to_string(),
            }
        }
        bail!("no free subnet for a test network: {last}")
    }

    pub fn ip(&self, host: u8) -> String {
        format!("{}.{host}", self.prefix)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.name]);
    }
}

/// A running container, removed (with its anonymous volumes) on drop.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `docker run -d` on `network` at `ip`, with `args` after the image's `/weft` entry point.
    pub fn run(
        image: &Image,
        name: &str,
        network: &Network,
        ip: &str,
        args: &[String],
    ) -> Result<Container> {
        let mut all: Vec<String> = [
            "run",
            "-d",
            "--name",
            name,
            "--network",
            &network.name,
            "--ip",
            ip,
            &image.tag,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        all.extend(args.iter().cloned());
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        docker(&refs)?;
        Ok(Container { name: name.into() })
    }

    pub fn connect(&self, network: &Network, ip: &str) -> Result<()> {
        docker(&["network", "connect", "--ip", ip, &network.name, &self.name]).map(|_| ())
    }

    pub fn disconnect(&self, network: &Network) -> Result<()> {
        docker(&["network", "disconnect", "-f", &network.name, &self.name]).map(|_| ())
    }

    pub fn logs(&self) -> String {
        Command::new("docker")
            .args(["logs", "--tail", "30", &self.name])
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// True when a Docker daemon answers.
pub fn available() -> bool {
    docker(&["info", "--format", "{{.ServerVersion}}"]).is_ok()
}
