//! `weft tls ca create` and `weft tls cert create -server|-client`: the certificates server RPC TLS needs, as
//! Consul's `consul tls` makes them (files written to the current directory, never overwritten; the keys readable by
//! their owner only).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum TlsCmd {
    /// The certificate authority.
    #[command(subcommand)]
    Ca(CaCmd),
    /// Server and client certificates.
    #[command(subcommand)]
    Cert(CertCmd),
}

#[derive(Subcommand, Debug)]
pub enum CaCmd {
    /// Creates weft-agent-ca.pem and weft-agent-ca-key.pem.
    Create(CaArgs),
}

#[derive(Subcommand, Debug)]
pub enum CertCmd {
    /// Creates <dc>-server-weft-N.pem (or -client-) and its key, signed by the CA.
    Create(CertArgs),
}

#[derive(Args, Debug)]
pub struct CaArgs {
    /// Days the CA is valid.
    #[arg(long, default_value_t = 1825)]
    pub days: u32,
    /// Where to write the files.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct CertArgs {
    /// A server certificate (names `server.<dc>.weft`).
    #[arg(long)]
    pub server: bool,
    /// A client agent certificate.
    #[arg(long)]
    pub client: bool,
    #[arg(long = "dc", default_value = "dc1")]
    pub datacenter: String,
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// The CA certificate.
    #[arg(long, default_value = "weft-agent-ca.pem")]
    pub ca: PathBuf,
    /// The CA's key.
    #[arg(long, default_value = "weft-agent-ca-key.pem")]
    pub key: PathBuf,
    /// Extra IP addresses for the certificate (repeatable).
    #[arg(long = "additional-ipaddress")]
    pub ips: Vec<std::net::IpAddr>,
    /// Extra DNS names (repeatable).
    #[arg(long = "additional-dnsname")]
    pub names: Vec<String>,
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

/// Certificates are public; a private key is readable by its owner only, from the moment the file exists.
#[derive(Clone, Copy)]
enum Secrecy {
    Public,
    Private,
}

/// Writes a file that must not exist yet (nothing is ever overwritten), created with the mode its secrecy asks for.
fn write_new(path: &Path, contents: &str, secrecy: Secrecy) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mode = match secrecy {
        // What any new file gets, less the umask.
        Secrecy::Public => 0o666,
        Secrecy::Private => weft_types::fsio::PRIVATE_FILE,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {} (it may exist already)", path.display()))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(i64::from(days));
}

pub fn run(cmd: TlsCmd) -> Result<i32> {
    match cmd {
        TlsCmd::Ca(CaCmd::Create(a)) => create_ca(a),
        TlsCmd::Cert(CertCmd::Create(a)) => create_cert(a),
    }
}

/// `weft tls ca create`: a CA for server RPC.
fn create_ca(a: CaArgs) -> Result<i32> {
    let key = KeyPair::generate().context("cannot generate a key")?;
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
        .distinguished_name
        .push(DnType::CommonName, "Weft Agent CA");
    validity(&mut params, a.days);
    let cert = params.self_signed(&key).context("cannot sign the CA")?;
    let (c, k) = (
        a.dir.join("weft-agent-ca.pem"),
        a.dir.join("weft-agent-ca-key.pem"),
    );
    write_new(&c, &cert.pem(), Secrecy::Public)?;
    write_new(&k, &key.serialize_pem(), Secrecy::Private)?;
    println!("==> Saved {}\n==> Saved {}", c.display(), k.display());
    Ok(0)
}

/// `weft tls cert create -server|-client`: a certificate signed by that CA.
fn create_cert(a: CertArgs) -> Result<i32> {
    let role = match (a.server, a.client) {
        (true, false) => "server",
        (false, true) => "client",
        _ => bail!("choose one of -server or -client"),
    };
    let ca_pem = std::fs::read_to_string(&a.ca)
        .with_context(|| format!("cannot read the CA {} (weft tls ca create)", a.ca.display()))?;
    let ca_key = std::fs::read_to_string(&a.key)
        .with_context(|| format!("cannot read the CA key {}", a.key.display()))?;
    let ca_key = KeyPair::from_pem(&ca_key).context("the CA key is not a PEM private key")?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("the CA certificate is not usable")?;
    let key = KeyPair::generate().context("cannot generate a key")?;
    let name = format!("{role}.{}.weft", a.datacenter);
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, name.clone());
    let mut sans = vec![
        SanType::DnsName(name.as_str().try_into()?),
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress("127.0.0.1".parse()?),
    ];
    for n in &a.names {
        sans.push(SanType::DnsName(n.as_str().try_into()?));
    }
    sans.extend(a.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity(&mut params, a.days);
    let cert = params
        .signed_by(&key, &issuer)
        .context("cannot sign the certificate")?;
    let base = format!("{}-{role}-weft", a.datacenter);
    let n = (0..1000)
        .find(|n| !a.dir.join(format!("{base}-{n}.pem")).exists())
        .unwrap_or(0);
    let (c, k) = (
        a.dir.join(format!("{base}-{n}.pem")),
        a.dir.join(format!("{base}-{n}-key.pem")),
    );
    write_new(&c, &cert.pem(), Secrecy::Public)?;
    write_new(&k, &key.serialize_pem(), Secrecy::Private)?;
    println!("==> Saved {}\n==> Saved {}", c.display(), k.display());
    Ok(0)
}
