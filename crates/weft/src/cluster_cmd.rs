//! Cluster plumbing for `weft agent`: the node ID kept in the data dir, and server addresses.

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::Path;

/// The node ID saved in `<data-dir>/node-id`, created on first start: a restarted agent is the same node.
pub fn persisted_node_id(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim().to_string();
            if !weft_types::ids::is_uuid(&id) {
                bail!(
                    "{} does not hold a node ID (a UUID); is this a Weft data dir?",
                    path.display()
                );
            }
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
            let id = weft_types::ids::new_uuid();
            std::fs::write(&path, format!("{id}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// `host` or `host:port` (IPv6 in brackets) with `port` filled in when missing.
pub fn with_default_port(addr: &str, port: u16) -> String {
    let addr = addr.trim();
    if addr.parse::<SocketAddr>().is_ok() {
        return addr.to_string();
    }
    if addr.starts_with('[') && addr.ends_with(']') {
        return format!("{addr}:{port}");
    }
    match addr.rsplit_once(':') {
        Some((_, p)) if !addr.contains("::") && p.parse::<u16>().is_ok() => addr.to_string(),
        _ if addr.contains("::") => format!("[{addr}]:{port}"),
        _ => format!("{addr}:{port}"),
    }
}

/// A socket address from an IP and a port.
pub fn socket_addr(ip: &str, port: u16) -> Result<SocketAddr> {
    format!("{ip}:{port}")
        .parse()
        .or_else(|_| format!("[{ip}]:{port}").parse())
        .with_context(|| format!("{ip:?} is not an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_are_filled_in() {
        assert_eq!(with_default_port("10.0.0.1", 8300), "10.0.0.1:8300");
        assert_eq!(with_default_port("10.0.0.1:9000", 8300), "10.0.0.1:9000");
        assert_eq!(with_default_port("server-1", 8300), "server-1:8300");
        assert_eq!(with_default_port("::1", 8300), "[::1]:8300");
        assert_eq!(with_default_port("[::1]:9", 8300), "[::1]:9");
    }
}
