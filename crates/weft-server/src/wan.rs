//! WAN federation as a server sees it: the servers of every datacenter gossip in one WAN pool (Consul's serf WAN),
//! each member named `<node>.<datacenter>` and tagged with its RPC address. From the pool a server knows which
//! datacenters exist, where to send a request for another one (`?dc=`), and how far each is: the median of the
//! estimated round trips from this server's WAN coordinate to that datacenter's servers, as Consul sorts them.

use crate::Server;
use std::collections::BTreeMap;
use std::time::Duration;
use weft_gossip::{Gossip, Role, Status};

/// Consul's WAN gossip port.
pub const DEFAULT_PORT: u16 = 8302;

/// One datacenter in the WAN pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Datacenter {
    pub name: String,
    /// Alive servers' RPC addresses.
    pub servers: Vec<String>,
    /// The servers' WAN member names and last known coordinates (`None` before a first round trip).
    pub coordinates: Vec<(String, Option<weft_types::coordinate::Coordinate>)>,
    /// The median estimated round trip to its servers; zero for this server's own datacenter, `None` when no
    /// server of it has a coordinate yet.
    pub rtt: Option<Duration>,
}

/// The datacenters the WAN pool knows, nearest first: this server's own, then by estimated round trip (those
/// without an estimate last), then by name, as Consul's `GetDatacentersByDistance` orders them.
pub fn datacenters(wan: &Gossip, own: &str) -> Vec<Datacenter> {
    let mine = wan.coordinate();
    let mut by_name: BTreeMap<String, Datacenter> = BTreeMap::new();
    for m in wan.members() {
        if m.status != Status::Alive || m.member.tags.role != Role::Server {
            continue;
        }
        let dc = by_name
            .entry(m.member.tags.datacenter.clone())
            .or_insert_with(|| Datacenter {
                name: m.member.tags.datacenter.clone(),
                servers: Vec::new(),
                coordinates: Vec::new(),
                rtt: None,
            });
        if let Some(rpc) = &m.member.tags.rpc {
            dc.servers.push(rpc.clone());
        }
        let coord = if m.member.name == wan.local().name {
            Some(mine.clone())
        } else {
            wan.peer_coordinate(&m.member.name)
        };
        dc.coordinates.push((m.member.name.clone(), coord));
    }
    let mut list: Vec<Datacenter> = by_name
        .into_values()
        .map(|mut dc| {
            dc.rtt = if dc.name == own {
                Some(Duration::ZERO)
            } else {
                median(
                    dc.coordinates
                        .iter()
                        .filter_map(|(_, c)| c.as_ref())
                        .map(|c| mine.distance_to(c))
                        .collect(),
                )
            };
            dc
        })
        .collect();
    list.sort_by(|a, b| {
        (a.name != own)
            .cmp(&(b.name != own))
            .then(match (a.rtt, b.rtt) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then_with(|| a.name.cmp(&b.name))
    });
    list
}

fn median(mut samples: Vec<Duration>) -> Option<Duration> {
    samples.sort();
    samples.get(samples.len() / 2).copied()
}

impl Server {
    /// Attaches this server's WAN pool membership (servers that federate).
    pub fn set_wan(&self, wan: Gossip) {
        let _ = self.inner.wan.set(wan);
    }

    pub fn wan(&self) -> Option<&Gossip> {
        self.inner.wan.get()
    }

    /// The RPC client for `dc`'s servers: with TLS, one that checks they present `server.<dc>.weft` (made once per
    /// datacenter); otherwise this server's own.
    pub fn http_for(&self, dc: &str) -> weft_rpc::HttpClient {
        let config = &self.inner.config;
        let Some(tls) = config.rpc_tls.as_ref().filter(|_| dc != config.datacenter) else {
            return self.http().clone();
        };
        // Only datacenters the WAN pool knows get a client kept for them: names come from requests.
        if self.servers_in(dc).is_empty() {
            return self.http().clone();
        }
        let mut clients = self
            .inner
            .remote_http
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(dc) {
            return client.clone();
        }
        match tls.for_datacenter(dc) {
            Ok(remote) => {
                let client = weft_rpc::http_client(Some(&remote), config.rpc_auth.clone());
                clients.insert(dc.to_string(), client.clone());
                client
            }
            // A name that cannot be a server name reaches no server: this server's client then fails the check.
            Err(_) => self.http().clone(),
        }
    }

    /// Every known datacenter, nearest first; without federation, this one alone.
    pub fn datacenters(&self) -> Vec<Datacenter> {
        let own = &self.inner.config.datacenter;
        match self.wan() {
            Some(wan) => datacenters(wan, own),
            None => vec![Datacenter {
                name: own.clone(),
                servers: Vec::new(),
                coordinates: Vec::new(),
                rtt: Some(Duration::ZERO),
            }],
        }
    }

    /// The RPC addresses of `dc`'s alive servers, starting at a different one each time so that requests spread
    /// (empty: no path to that datacenter).
    pub fn servers_in(&self, dc: &str) -> Vec<String> {
        let mut servers = self
            .wan()
            .map(|wan| {
                datacenters(wan, &self.inner.config.datacenter)
                    .into_iter()
                    .find(|d| d.name == dc)
                    .map(|d| d.servers)
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        if !servers.is_empty() {
            let start = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() as usize);
            let n = servers.len();
            servers.rotate_left(start % n);
        }
        servers
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn median_of_samples() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![ms(5)]), Some(ms(5)));
        assert_eq!(median(vec![ms(9), ms(1), ms(5)]), Some(ms(5)));
    }
}
