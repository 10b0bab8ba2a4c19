//! The server RPC listener: TCP, or TLS when the agent has RPC certificates. Handshakes run in their own tasks, so a
//! peer that connects and says nothing (a follower's leader watch, a port scanner) never stalls other accepts; a
//! handshake that fails (no client certificate, another CA, plain HTTP) or does not complete within
//! `handshake_timeout` (without TLS: no first byte) is counted and the connection dropped. One client address holds
//! at most `max_conns_per_client` connections (see `conn_limit`).

use crate::conn_limit::{Connections, Slot};
use crate::tls::{RpcStream, RpcTls};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub struct RpcListener {
    accepted: mpsc::Receiver<(RpcConnection, RpcPeer)>,
    local: Option<SocketAddr>,
    connections: Arc<Connections>,
}

/// An accepted RPC connection; it holds its client's connection slot until it closes.
pub struct RpcConnection {
    stream: RpcStream,
    _slot: Slot,
}

impl AsyncRead for RpcConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for RpcConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// What a peer's certificate says it is. Only TLS with client certificates tells; plain connections are anonymous
/// (they prove membership with the gossip key instead, see `auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// `server.<dc>.weft`: may speak Raft, join, and everything a client may.
    Server,
    /// `client.<dc>.weft`: may read its replica stream and pass on its own requests.
    Client,
    /// `server.<other dc>.weft`: another datacenter's server (WAN federation), which may only pass on requests
    /// for this datacenter and run prepared queries failing over to it.
    RemoteServer,
    /// No certificate, or one naming neither.
    Anonymous,
}

/// One connection's peer: its address and role. Handlers read it as `ConnectInfo<RpcPeer>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcPeer {
    pub addr: SocketAddr,
    pub role: PeerRole,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, RpcListener>>
    for RpcPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, RpcListener>) -> RpcPeer {
        *stream.remote_addr()
    }
}

/// The role the first certificate's DNS names give, for the datacenter whose server name is `server_name`.
fn role_of(
    tls: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    server_name: &str,
) -> PeerRole {
    let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
        return PeerRole::Anonymous;
    };
    let names = weft_ca::leaf::cert_dns_names(cert.as_ref());
    let client_name = server_name.replacen("server.", "client.", 1);
    let other_server = |n: &String| {
        n.strip_prefix("server.")
            .and_then(|rest| rest.strip_suffix(".weft"))
            .is_some_and(|dc| !dc.is_empty() && !dc.contains('.'))
    };
    if names.iter().any(|n| n == server_name) {
        PeerRole::Server
    } else if names.contains(&client_name) {
        PeerRole::Client
    } else if names.iter().any(other_server) {
        PeerRole::RemoteServer
    } else {
        PeerRole::Anonymous
    }
}

impl RpcListener {
    /// Call within the runtime: accepting and handshaking start at once in the background. A connection must
    /// complete its handshake within `handshake_timeout` (`limits.rpc_handshake_timeout`, 5 s); `connections`
    /// holds the per-client limit (`limits.rpc_max_conns_per_client`, 100) and counts refusals.
    pub fn new(
        tcp: TcpListener,
        tls: Option<&RpcTls>,
        handshake_timeout: Duration,
        connections: Arc<Connections>,
    ) -> RpcListener {
        let local = tcp.local_addr().ok();
        let (tx, rx) = mpsc::channel(64);
        let handshake = match tls {
            None => Handshake::FirstByte,
            Some(t) => Handshake::Tls {
                acceptor: tokio_rustls::TlsAcceptor::from(t.server.clone()),
                server_name: match &t.server_name {
                    rustls::pki_types::ServerName::DnsName(n) => n.as_ref().to_ascii_lowercase(),
                    _ => String::new(),
                },
            },
        };
        tokio::spawn(accept_loop(
            tcp,
            handshake,
            handshake_timeout,
            connections.clone(),
            tx,
        ));
        RpcListener {
            accepted: rx,
            local,
            connections,
        }
    }

    /// This listener's connection counts (open, refused over the limit, failed handshakes).
    pub fn connections(&self) -> Arc<Connections> {
        self.connections.clone()
    }
}

async fn accept_tcp(tcp: &TcpListener) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match tcp.accept().await {
            Ok((stream, addr)) => {
                let _ = stream.set_nodelay(true);
                return (stream, addr);
            }
            Err(e) => {
                tracing::warn!(error = %e, "server RPC accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What a new connection must do before it is served.
#[derive(Clone)]
enum Handshake {
    /// Without TLS: send its first byte (so silent sockets do not hold slots).
    FirstByte,
    /// Complete a TLS handshake; the certificate names the peer's role.
    Tls {
        acceptor: tokio_rustls::TlsAcceptor,
        server_name: String,
    },
}

impl Handshake {
    async fn run(
        self,
        stream: tokio::net::TcpStream,
        addr: SocketAddr,
    ) -> std::io::Result<(RpcStream, RpcPeer)> {
        match self {
            Handshake::FirstByte => {
                // `peek` waits for a byte without taking it (`readable` may wake spuriously).
                stream.peek(&mut [0u8; 1]).await?;
                let peer = RpcPeer {
                    addr,
                    role: PeerRole::Anonymous,
                };
                Ok((RpcStream::Plain(stream), peer))
            }
            Handshake::Tls {
                acceptor,
                server_name,
            } => {
                let tls = acceptor.accept(stream).await?;
                let peer = RpcPeer {
                    addr,
                    role: role_of(&tls, &server_name),
                };
                Ok((RpcStream::Server(Box::new(tls)), peer))
            }
        }
    }
}

/// Accepts connections, refuses those over their client's limit, and hands each one that completes its handshake
/// in time to the listener, until the listener is dropped. Handshakes run in their own tasks.
async fn accept_loop(
    tcp: TcpListener,
    handshake: Handshake,
    timeout: Duration,
    connections: Arc<Connections>,
    tx: mpsc::Sender<(RpcConnection, RpcPeer)>,
) {
    loop {
        let (stream, addr) = tokio::select! {
            accepted = accept_tcp(&tcp) => accepted,
            _ = tx.closed() => return,
        };
        let Some(slot) = connections.take(addr.ip()) else {
            tracing::debug!(peer = %addr, "refused a server RPC connection: the client holds its limit");
            continue;
        };
        let (handshake, tx, connections) = (handshake.clone(), tx.clone(), connections.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, handshake.run(stream, addr)).await {
                Ok(Ok((stream, peer))) => {
                    let conn = RpcConnection {
                        stream,
                        _slot: slot,
                    };
                    let _ = tx.send((conn, peer)).await;
                }
                Ok(Err(e)) => {
                    connections.count_failed_handshake();
                    tracing::warn!(peer = %addr, error = %e, "refused a server RPC connection: handshake failed")
                }
                // Silent peers: followers watching the leader's port, probes.
                Err(_) => {
                    connections.count_failed_handshake();
                    tracing::debug!(peer = %addr, "closed a server RPC connection that did not complete its handshake in time")
                }
            }
        });
    }
}

impl axum::serve::Listener for RpcListener {
    type Io = RpcConnection;
    type Addr = RpcPeer;

    async fn accept(&mut self) -> (RpcConnection, RpcPeer) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended (it only does when this listener is gone): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<RpcPeer> {
        self.local
            .map(|addr| RpcPeer {
                addr,
                role: PeerRole::Anonymous,
            })
            .ok_or_else(|| std::io::Error::other("the RPC listener has no local address"))
    }
}
