//! The server RPC listener: TCP, or TLS when the agent has RPC certificates. Handshakes run in their own tasks, so a
//! peer that connects and says nothing (a follower's leader watch, a port scanner) never stalls other accepts; a
//! handshake that fails (no client certificate, another CA, plain HTTP) is logged and the connection dropped.

use crate::tls::{RpcStream, RpcTls};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub struct RpcListener {
    accepted: Accepted,
    local: Option<SocketAddr>,
}

enum Accepted {
    Plain(TcpListener),
    /// Connections whose TLS handshake has completed, with who the certificate says they are.
    Tls(mpsc::Receiver<(RpcStream, RpcPeer)>),
}

/// What a peer's certificate says it is. Only TLS with client certificates tells; plain connections are anonymous
/// (they prove membership with the gossip key instead, see `auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// `server.<dc>.weft`: may speak Raft, join, and everything a client may.
    Server,
    /// `client.<dc>.weft`: may read its replica stream and pass on its own requests.
    Client,
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
    if names.iter().any(|n| n == server_name) {
        PeerRole::Server
    } else if names.contains(&client_name) {
        PeerRole::Client
    } else {
        PeerRole::Anonymous
    }
}

const HANDSHAKE: Duration = Duration::from_secs(5);

impl RpcListener {
    /// Call within the runtime: with TLS, accepting and handshaking start at once in the background.
    pub fn new(tcp: TcpListener, tls: Option<&RpcTls>) -> RpcListener {
        let local = tcp.local_addr().ok();
        let accepted = match tls {
            None => Accepted::Plain(tcp),
            Some(t) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(t.server.clone());
                let (tx, rx) = mpsc::channel(64);
                let server_name = match &t.server_name {
                    rustls::pki_types::ServerName::DnsName(n) => n.as_ref().to_ascii_lowercase(),
                    _ => String::new(),
                };
                tokio::spawn(handshakes(tcp, acceptor, server_name, tx));
                Accepted::Tls(rx)
            }
        };
        RpcListener { accepted, local }
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

/// Accepts connections and hands each completed TLS session to the listener, until the listener is dropped.
async fn handshakes(
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    server_name: String,
    tx: mpsc::Sender<(RpcStream, RpcPeer)>,
) {
    loop {
        let (stream, addr) = tokio::select! {
            accepted = accept_tcp(&tcp) => accepted,
            _ = tx.closed() => return,
        };
        let (acceptor, tx, server_name) = (acceptor.clone(), tx.clone(), server_name.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let peer = RpcPeer {
                        addr,
                        role: role_of(&tls, &server_name),
                    };
                    let _ = tx.send((RpcStream::Server(Box::new(tls)), peer)).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(peer = %addr, error = %e, "refused a server RPC connection: TLS handshake failed")
                }
                // Silent peers: followers watching the leader's port, probes.
                Err(_) => {
                    tracing::debug!(peer = %addr, "closed a server RPC connection that sent no TLS handshake")
                }
            }
        });
    }
}

impl axum::serve::Listener for RpcListener {
    type Io = RpcStream;
    type Addr = RpcPeer;

    async fn accept(&mut self) -> (RpcStream, RpcPeer) {
        match &mut self.accepted {
            Accepted::Plain(tcp) => {
                let (stream, addr) = accept_tcp(tcp).await;
                let peer = RpcPeer {
                    addr,
                    role: PeerRole::Anonymous,
                };
                (RpcStream::Plain(stream), peer)
            }
            Accepted::Tls(rx) => match rx.recv().await {
                Some(accepted) => accepted,
                // The accepting task ended (it only does when this listener is gone): nothing more will come.
                None => std::future::pending().await,
            },
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
