//! The one go-sockaddr template Consul operators write for hosts whose address is not known in advance (an
//! auto-scaled instance, an ECS daemon on host networking): `{{ GetPrivateIP }}` in `bind_addr`, `advertise_addr`
//! or `-bind`. Other templates are refused by name rather than guessed at.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

/// `Some` when `text` is a template: the address it names, or why there is none.
pub fn template(text: &str) -> Option<Result<IpAddr, String>> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    Some(match inner {
        "GetPrivateIP" => private_ip(),
        other => Err(format!(
            "the go-sockaddr template {other:?} is not supported; use {{{{ GetPrivateIP }}}} or an address"
        )),
    })
}

/// The private IPv4 address this host reaches the rest of its network from: the source address of its default
/// route (found by connecting a UDP socket, which sends nothing).
pub fn private_ip() -> Result<IpAddr, String> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
    // TEST-NET-1: never answers, and only the routing decision matters.
    socket
        .connect((Ipv4Addr::new(192, 0, 2, 1), 9))
        .map_err(|e| format!("GetPrivateIP: no default route ({e})"))?;
    let ip = socket.local_addr().map_err(|e| e.to_string())?.ip();
    match ip {
        IpAddr::V4(v4) if is_private(v4) => Ok(ip),
        _ => Err(format!(
            "GetPrivateIP: the default route's address {ip} is not a private address"
        )),
    }
}

/// RFC 1918 and RFC 6598 (shared) space, as go-sockaddr counts private.
fn is_private(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private() || (a == 100 && (64..128).contains(&b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_get_private_ip_is_a_known_template() {
        assert!(template("10.0.0.1").is_none());
        let e = template(r#"{{ GetInterfaceIP "eth0" }}"#)
            .unwrap()
            .unwrap_err();
        assert!(
            e.contains("GetInterfaceIP") && e.contains("not supported"),
            "{e}"
        );
        // Whatever this host's routes are, the answer is a private address or a reason.
        match template("{{GetPrivateIP}}").unwrap() {
            Ok(IpAddr::V4(ip)) => assert!(is_private(ip), "{ip}"),
            Ok(other) => panic!("{other}"),
            Err(e) => assert!(e.starts_with("GetPrivateIP:"), "{e}"),
        }
    }

    #[test]
    fn private_space_is_rfc1918_and_shared() {
        for (ip, private) in [
            ("10.1.2.3", true),
            ("172.31.0.1", true),
            ("192.168.1.1", true),
            ("100.64.0.1", true),
            ("100.128.0.1", false),
            ("8.8.8.8", false),
        ] {
            assert_eq!(is_private(ip.parse().unwrap()), private, "{ip}");
        }
    }
}
