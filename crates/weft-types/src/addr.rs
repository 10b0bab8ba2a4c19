//! `host:port` strings, written and read in one place (IPv6 hosts go in brackets).

use std::net::SocketAddr;

/// `host:port`, with an IPv6 host in brackets.
pub fn join_host_port(host: &str, port: impl std::fmt::Display) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The host of `host:port` (brackets removed); the whole text when it carries no port.
pub fn host_of(addr: &str) -> &str {
    let addr = addr.trim();
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match addr.rsplit_once(':') {
        // One colon: host and port. More: a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        _ => addr,
    }
}

/// `host` or `host:port` with `port` filled in when missing.
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
        _ => join_host_port(addr, port),
    }
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
        assert_eq!(with_default_port("[::1]", 8300), "[::1]:8300");
        assert_eq!(with_default_port("[::1]:9", 8300), "[::1]:9");
    }

    #[test]
    fn hosts_and_ports_join_and_split() {
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(host_of("10.0.0.1:80"), "10.0.0.1");
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("example.com"), "example.com");
    }
}
