//! Gossip addresses as operators write them (`-retry-join`, `weft join`): `host`, `ip`, or either with `:port`,
//! 8301 when no port is given.

use std::net::{IpAddr, SocketAddr};

/// Consul's serf LAN port, used when an address names none.
pub const DEFAULT_PORT: u16 = 8301;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot resolve {target:?}: {reason}")]
    Lookup { target: String, reason: String },
    #[error("{0:?} resolves to no address")]
    Nothing(String),
}

/// The socket addresses `target` names.
pub async fn resolve(target: &str) -> Result<Vec<SocketAddr>, ResolveError> {
    let target = target.trim();
    if let Ok(a) = target.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    let bare = target.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, DEFAULT_PORT)]);
    }
    let with_port = if target
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        target.to_string()
    } else {
        format!("{target}:{DEFAULT_PORT}")
    };
    let found: Vec<SocketAddr> = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| ResolveError::Lookup {
            target: target.to_string(),
            reason: e.to_string(),
        })?
        .collect();
    if found.is_empty() {
        return Err(ResolveError::Nothing(target.to_string()));
    }
    Ok(found)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn default_port_is_filled_in() {
        assert_eq!(
            resolve("10.0.0.1").await.unwrap(),
            ["10.0.0.1:8301".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve("10.0.0.1:9000").await.unwrap(),
            ["10.0.0.1:9000".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve("::1").await.unwrap(),
            ["[::1]:8301".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve("[::1]").await.unwrap(),
            ["[::1]:8301".parse::<SocketAddr>().unwrap()]
        );
        assert!(resolve("localhost")
            .await
            .unwrap()
            .iter()
            .all(|a| a.port() == 8301));
    }
}
