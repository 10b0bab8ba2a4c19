//! [`UdpDelay`]: a UDP relay on 127.0.0.1 that hands every datagram on to one target after a fixed delay, for
//! tests that need real network delay where the kernel offers no `tc netem` (this machine's kernel has no
//! `sch_netem`). An agent that advertises the relay's address (`advertise_addrs.serf_lan`) receives everything
//! sent to it that much later, as over a slower link.

use anyhow::Result;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

/// Datagrams held at once; more are dropped, as a full link queue drops them.
const MAX_IN_FLIGHT: usize = 4096;

pub struct UdpDelay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl UdpDelay {
    /// Relays datagrams that reach the returned address to `target`, each `delay` after it arrived.
    pub async fn start(target: SocketAddr, delay: Duration) -> Result<UdpDelay> {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = socket.local_addr()?;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, _)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
                    continue;
                }
                in_flight.fetch_add(1, Ordering::Relaxed);
                let (packet, socket, in_flight) =
                    (buf[..n].to_vec(), socket.clone(), in_flight.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = socket.send_to(&packet, target).await;
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        Ok(UdpDelay { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for UdpDelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
