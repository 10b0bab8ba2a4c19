//! The peers Weft's sidecars are compared with: nginx (`stream` module), HAProxy and stunnel, each as a pair
//! that does what a sidecar pair does. The upstream side accepts plaintext on 127.0.0.1 and dials the public side
//! over mutual TLS with a client certificate, verifying the server's chain and name; the public side requires and
//! verifies the client certificate and forwards plaintext to the backend. TLS 1.3 only, one throwaway CA with
//! ECDSA P-256 keys (the key type of Weft's own CA), and session resumption at each peer's default (on) on both
//! sides, as Weft has it (`--no-peer-resumption` turns it off), so a new connection costs the same kind of handshake
//! everywhere.
//!
//! Each peer runs as the current user from its own temporary directory (configuration, pid file, logs), in the
//! foreground, and is stopped when its guard drops. The Debian packages are found on `$PATH` (and the sbin
//! directories) and installed with apt-get only when the benchmark is run with `--install`.

use super::sys;
use crate::process::{self, Guard};
use anyhow::{anyhow, bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use weft_testkit::net::free_port;
use weft_testkit::{signal, Signal, TempDir};

/// The DNS name in the public side's certificate, checked by every upstream side.
pub const SERVER_NAME: &str = "backend";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Haproxy,
    Stunnel,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Nginx, Kind::Haproxy, Kind::Stunnel];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
            Kind::Stunnel => "stunnel",
        }
    }

    /// The Debian package(s) that provide it.
    fn packages(self) -> &'static [&'static str] {
        match self {
            Kind::Nginx => &["nginx-light", "libnginx-mod-stream"],
            Kind::Haproxy => &["haproxy"],
            Kind::Stunnel => &["stunnel4"],
        }
    }
}

/// Where each tool is, or why it cannot be used.
pub struct Tools {
    pub wrk: Option<PathBuf>,
    pub nginx: Result<Nginx, String>,
    pub haproxy: Result<PathBuf, String>,
    pub stunnel: Result<PathBuf, String>,
}

/// An nginx binary with a usable `stream` module.
#[derive(Clone, Debug)]
pub struct Nginx {
    pub bin: PathBuf,
    /// `load_module` needed: the module is dynamic (Debian's `libnginx-mod-stream`).
    pub module: Option<PathBuf>,
    pub version: String,
}

impl Tools {
    pub fn find() -> Tools {
        Tools {
            wrk: sys::find_program("wrk"),
            nginx: find_nginx(),
            haproxy: sys::find_program("haproxy").ok_or_else(|| "haproxy not installed".into()),
            stunnel: sys::find_program("stunnel4")
                .or_else(|| sys::find_program("stunnel"))
                .ok_or_else(|| "stunnel not installed".into()),
        }
    }

    /// The peer's binary, or why it is unusable.
    pub fn peer(&self, kind: Kind) -> Result<PathBuf, String> {
        match kind {
            Kind::Nginx => self
                .nginx
                .as_ref()
                .map(|n| n.bin.clone())
                .map_err(Clone::clone),
            Kind::Haproxy => self.haproxy.clone(),
            Kind::Stunnel => self.stunnel.clone(),
        }
    }

    /// Debian packages that would provide what is missing among `wanted`.
    pub fn missing_packages(&self, wanted: &[Kind]) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.wrk.is_none() {
            out.push("wrk");
        }
        for kind in wanted {
            if self.peer(*kind).is_err() {
                out.extend_from_slice(kind.packages());
            }
        }
        out
    }
}

fn find_nginx() -> Result<Nginx, String> {
    let Some(bin) = sys::find_program("nginx") else {
        return Err("nginx not installed".into());
    };
    let out = Command::new(&bin)
        .arg("-V")
        .output()
        .map_err(|e| format!("cannot run {} -V: {e}", bin.display()))?;
    // `nginx -V` writes to stderr.
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("nginx version: "))
        .unwrap_or("nginx")
        .to_string();
    let args: Vec<&str> = text.split_whitespace().collect();
    if args.contains(&"--with-stream") {
        return Ok(Nginx {
            bin,
            module: None,
            version,
        });
    }
    if !args.contains(&"--with-stream=dynamic") {
        return Err(format!("{version} is built without the stream module"));
    }
    let modules = args
        .iter()
        .find_map(|a| a.strip_prefix("--modules-path="))
        .map(PathBuf::from)
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--prefix="))
                .map(|p| PathBuf::from(p).join("modules"))
        })
        .unwrap_or_else(|| PathBuf::from("/usr/lib/nginx/modules"));
    let module = modules.join("ngx_stream_module.so");
    if !module.is_file() {
        return Err(format!(
            "{version} has no stream module ({} missing: Debian's libnginx-mod-stream provides it)",
            module.display()
        ));
    }
    Ok(Nginx {
        bin,
        module: Some(module),
        version,
    })
}

/// `apt-get install -y <packages>` (after `apt-get update` if the first attempt fails), at most 10 minutes.
pub async fn install(packages: &[&str]) -> Result<()> {
    let (euid, _) = sys::current_user()?;
    if euid != 0 {
        bail!(
            "--install needs root (apt-get); install {} by hand",
            packages.join(" ")
        );
    }
    let apt = |args: Vec<String>| async move {
        println!("    running: apt-get {}", args.join(" "));
        let status = tokio::process::Command::new("apt-get")
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .status();
        match tokio::time::timeout(Duration::from_secs(600), status).await {
            Ok(Ok(s)) => Ok(s.success()),
            Ok(Err(e)) => Err(anyhow!("cannot run apt-get: {e}")),
            Err(_) => Err(anyhow!("apt-get took over 10 minutes")),
        }
    };
    let install: Vec<String> = ["install", "-y", "-q", "--no-install-recommends"]
        .iter()
        .map(|s| s.to_string())
        .chain(packages.iter().map(|s| s.to_string()))
        .collect();
    if apt(install.clone()).await? {
        return Ok(());
    }
    if !apt(vec!["update".into(), "-q".into()]).await? {
        bail!("apt-get update failed");
    }
    if !apt(install).await? {
        bail!("apt-get install {} failed", packages.join(" "));
    }
    Ok(())
}

/// The throwaway CA and the two identities, as PEM files in one directory.
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Certificate then key, in one file (HAProxy's `crt`).
    pub server_pem: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub client_pem: PathBuf,
}

impl Certs {
    pub fn generate(dir: &Path) -> Result<Certs> {
        let ca_key = KeyPair::generate().context("CA key")?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "weft-bench throwaway CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).context("CA certificate")?;
        let issuer = Issuer::new(ca, ca_key);
        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        };
        let ca_path = write("ca.pem", &ca_cert.pem())?;
        let leaf = |name: &str| -> Result<(PathBuf, PathBuf, PathBuf)> {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::new(vec![name.to_string()])?;
            p.distinguished_name.push(DnType::CommonName, name);
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = p.signed_by(&key, &issuer)?;
            let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
            Ok((
                write(&format!("{name}.crt"), &cert_pem)?,
                write(&format!("{name}.key"), &key_pem)?,
                write(&format!("{name}.pem"), &format!("{cert_pem}{key_pem}"))?,
            ))
        };
        let (server_cert, server_key, server_pem) = leaf(SERVER_NAME)?;
        let (client_cert, client_key, client_pem) = leaf("loadgen")?;
        Ok(Certs {
            ca: ca_path,
            server_cert,
            server_key,
            server_pem,
            client_cert,
            client_key,
            client_pem,
        })
    }
}

/// One running peer process (and, for nginx, its workers).
pub struct PeerProc {
    guard: Guard,
    /// The process and its children (nginx's workers), found once it is ready.
    pub pids: Vec<u32>,
    /// The peer's own log file, quoted when it fails to start.
    log: PathBuf,
    kind: Kind,
}

impl Drop for PeerProc {
    fn drop(&mut self) {
        if self.kind == Kind::Nginx {
            // The master stops its workers on TERM; a SIGKILLed master would leave them running.
            // Errors are ignored here and below: the process may have ended meanwhile.
            let _ = signal(self.guard.pid(), Signal::Term);
            let deadline = Instant::now() + Duration::from_secs(3);
            while self.guard.exit_status().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            for pid in self.pids.iter().skip(1) {
                if sys::comm(*pid).is_some_and(|c| c.starts_with("nginx")) {
                    let _ = signal(*pid, Signal::Kill);
                }
            }
        }
        // The guard's own Drop kills (SIGKILL) and reaps the main process.
    }
}

/// An nginx, HAProxy or stunnel pair: `entry` is the upstream side's plaintext listener.
pub struct Pair {
    pub upstream: PeerProc,
    pub public: PeerProc,
    pub entry: SocketAddr,
    pub config_note: String,
    _dir: TempDir,
}

/// What the configurations share.
pub struct PairSpec<'a> {
    pub certs: &'a Certs,
    pub backend: SocketAddr,
    /// Leave the peer's session resumption at its default (on) instead of turning it off.
    pub resumption: bool,
}

pub async fn start_pair(kind: Kind, tools: &Tools, spec: &PairSpec<'_>) -> Result<Pair> {
    let dir = TempDir::new()?;
    let entry_port = free_port()?;
    let mid_port = free_port()?;
    let (up_conf, pub_conf, note) = match kind {
        Kind::Nginx => {
            let nginx = tools.nginx.as_ref().map_err(|e| anyhow!("{e}"))?;
            nginx_configs(nginx, dir.path(), spec, entry_port, mid_port)?
        }
        Kind::Haproxy => haproxy_configs(spec, entry_port, mid_port),
        Kind::Stunnel => stunnel_configs(dir.path(), spec, entry_port, mid_port),
    };
    let bin = tools.peer(kind).map_err(|e| anyhow!("{e}"))?;
    // The public side first, so the upstream side never dials a closed port.
    let public = start_one(kind, &bin, dir.path(), "public", &pub_conf, mid_port).await?;
    let upstream = start_one(kind, &bin, dir.path(), "upstream", &up_conf, entry_port).await?;
    Ok(Pair {
        upstream,
        public,
        entry: SocketAddr::from(([127, 0, 0, 1], entry_port)),
        config_note: note,
        _dir: dir,
    })
}

async fn start_one(
    kind: Kind,
    bin: &Path,
    dir: &Path,
    role: &str,
    config: &str,
    port: u16,
) -> Result<PeerProc> {
    let conf = dir.join(format!("{}-{role}.conf", kind.name()));
    std::fs::write(&conf, config).with_context(|| format!("cannot write {}", conf.display()))?;
    let log = dir.join(format!("{}-{role}.log", kind.name()));
    let mut cmd = Command::new(bin);
    match kind {
        Kind::Nginx => {
            cmd.arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(&log)
                .arg("-c")
                .arg(&conf);
        }
        Kind::Haproxy => {
            cmd.arg("-db").arg("-f").arg(&conf);
        }
        Kind::Stunnel => {
            cmd.arg(&conf);
        }
    }
    let name = format!("{}-{role}", kind.name());
    let (guard, stdout) = process::spawn(&name, &mut cmd)?;
    process::drain(stdout);
    let mut peer = PeerProc {
        guard,
        pids: Vec::new(),
        log,
        kind,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = peer.guard.exit_status() {
            bail!(
                "{name} did not start ({status}); {}",
                failure_text(&peer.guard, &peer.log)
            );
        }
        let workers_up = kind != Kind::Nginx || sys::tree(peer.guard.pid()).len() > 1;
        if sys::listening(port) && workers_up {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{name} was not listening on 127.0.0.1:{port} within 10 s; {}",
                failure_text(&peer.guard, &peer.log)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // nginx forks its workers one by one: give them a moment before taking the process tree.
    if kind == Kind::Nginx {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    peer.pids = sys::tree(peer.guard.pid());
    Ok(peer)
}

fn failure_text(guard: &Guard, log: &Path) -> String {
    let own = std::fs::read_to_string(log).unwrap_or_default();
    let own: Vec<&str> = own.lines().collect();
    format!(
        "stderr:\n{}\nlog:\n{}",
        process::stderr_tail(guard),
        own[own.len().saturating_sub(10)..].join("\n")
    )
}

fn nginx_configs(
    nginx: &Nginx,
    dir: &Path,
    spec: &PairSpec<'_>,
    entry: u16,
    mid: u16,
) -> Result<(String, String, String)> {
    let (euid, user) = sys::current_user()?;
    let c = spec.certs;
    let head = |role: &str| {
        let mut s = String::new();
        let _ = writeln!(s, "# weft-bench: nginx stream mutual-TLS pair, {role} side");
        if let Some(m) = &nginx.module {
            let _ = writeln!(s, "load_module {};", m.display());
        }
        // As root, nginx would switch its workers to `nobody`: keep them as the user running the benchmark.
        if euid == 0 {
            let _ = writeln!(s, "user {user};");
        }
        let _ = writeln!(
            s,
            "daemon off;\nworker_processes auto;\npid {dir}/nginx-{role}.pid;\n\
             error_log {dir}/nginx-{role}.log warn;\nevents {{ worker_connections 4096; }}",
            dir = dir.display()
        );
        s
    };
    let (client_reuse, server_cache) = if spec.resumption {
        ("", "")
    } else {
        (
            "        proxy_ssl_session_reuse off;\n",
            "        ssl_session_cache off;\n        ssl_session_tickets off;\n",
        )
    };
    let upstream = format!(
        "{head}stream {{\n    server {{\n        listen 127.0.0.1:{entry};\n        proxy_pass 127.0.0.1:{mid};\n\
         \x20       proxy_ssl on;\n        proxy_ssl_protocols TLSv1.3;\n\
         \x20       proxy_ssl_certificate {cc};\n        proxy_ssl_certificate_key {ck};\n\
         \x20       proxy_ssl_trusted_certificate {ca};\n        proxy_ssl_verify on;\n\
         \x20       proxy_ssl_name {SERVER_NAME};\n        proxy_ssl_server_name on;\n{client_reuse}    }}\n}}\n",
        head = head("upstream"),
        cc = c.client_cert.display(),
        ck = c.client_key.display(),
        ca = c.ca.display(),
    );
    let public = format!(
        "{head}stream {{\n    server {{\n        listen 127.0.0.1:{mid} ssl;\n        proxy_pass {backend};\n\
         \x20       ssl_protocols TLSv1.3;\n        ssl_certificate {sc};\n        ssl_certificate_key {sk};\n\
         \x20       ssl_client_certificate {ca};\n        ssl_verify_client on;\n{server_cache}    }}\n}}\n",
        head = head("public"),
        backend = spec.backend,
        sc = c.server_cert.display(),
        sk = c.server_key.display(),
        ca = c.ca.display(),
    );
    let note = format!(
        "{} (stream module{}), master + `worker_processes auto` per side, TLS 1.3, {}",
        nginx.version,
        if nginx.module.is_some() {
            ", dynamic"
        } else {
            ""
        },
        if spec.resumption {
            "session reuse/tickets at their defaults"
        } else {
            "proxy_ssl_session_reuse off, ssl_session_cache off, ssl_session_tickets off"
        }
    );
    Ok((upstream, public, note))
}

fn haproxy_configs(spec: &PairSpec<'_>, entry: u16, mid: u16) -> (String, String, String) {
    let c = spec.certs;
    let global = if spec.resumption {
        "global\n".to_string()
    } else {
        "global\n    tune.ssl.cachesize 0\n".to_string()
    };
    let defaults = "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n";
    let upstream = format!(
        "# weft-bench: HAProxy mutual-TLS pair, upstream side\n{global}{defaults}\
         frontend entry\n    bind 127.0.0.1:{entry}\n    default_backend public\n\
         backend public\n    server public 127.0.0.1:{mid} ssl ssl-min-ver TLSv1.3 crt {cp} ca-file {ca} \
         verify required verifyhost {SERVER_NAME} sni str({SERVER_NAME}){reuse}\n",
        cp = c.client_pem.display(),
        ca = c.ca.display(),
        reuse = if spec.resumption { "" } else { " no-ssl-reuse" },
    );
    let public = format!(
        "# weft-bench: HAProxy mutual-TLS pair, public side\n{global}{defaults}\
         frontend mtls\n    bind 127.0.0.1:{mid} ssl ssl-min-ver TLSv1.3 crt {sp} ca-file {ca} verify required{tickets}\n\
         \x20   default_backend app\n\
         backend app\n    server app {backend}\n",
        sp = c.server_pem.display(),
        ca = c.ca.display(),
        backend = spec.backend,
        tickets = if spec.resumption { "" } else { " no-tls-tickets" },
    );
    let note = format!(
        "`haproxy -db`, one process per side, default threads (nbthread = cores), mode tcp, TLS 1.3, {}",
        if spec.resumption {
            "session reuse/tickets at their defaults"
        } else {
            "no-ssl-reuse, no-tls-tickets, tune.ssl.cachesize 0"
        }
    );
    (upstream, public, note)
}

fn stunnel_configs(
    dir: &Path,
    spec: &PairSpec<'_>,
    entry: u16,
    mid: u16,
) -> (String, String, String) {
    let c = spec.certs;
    let global = |role: &str| {
        format!(
            "; weft-bench: stunnel mutual-TLS pair, {role} side\nforeground = yes\npid = {dir}/stunnel-{role}.pid\n\
             output = {dir}/stunnel-{role}.log\ndebug = warning\n",
            dir = dir.display()
        )
    };
    let resume = if spec.resumption {
        ""
    } else {
        "sessionResume = no\noptions = NO_TICKET\n"
    };
    let common = format!(
        "sslVersionMin = TLSv1.3\nCAfile = {ca}\nverifyChain = yes\nsocket = l:TCP_NODELAY=1\n\
         socket = r:TCP_NODELAY=1\n{resume}",
        ca = c.ca.display()
    );
    let upstream = format!(
        "{g}[upstream]\nclient = yes\naccept = 127.0.0.1:{entry}\nconnect = 127.0.0.1:{mid}\n\
         cert = {cc}\nkey = {ck}\ncheckHost = {SERVER_NAME}\nsni = {SERVER_NAME}\n{common}",
        g = global("upstream"),
        cc = c.client_cert.display(),
        ck = c.client_key.display(),
    );
    let public = format!(
        "{g}[public]\naccept = 127.0.0.1:{mid}\nconnect = {backend}\ncert = {sc}\nkey = {sk}\n{common}",
        g = global("public"),
        backend = spec.backend,
        sc = c.server_cert.display(),
        sk = c.server_key.display(),
    );
    let note = format!(
        "foreground, one process per side (a thread per connection), TLS 1.3, verifyChain both ways, checkHost, \
         TCP_NODELAY, {}",
        if spec.resumption {
            "session resumption at its default"
        } else {
            "sessionResume = no, options = NO_TICKET"
        }
    );
    (upstream, public, note)
}
