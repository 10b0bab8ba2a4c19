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
    /// Connections whose TLS handshake has completed.
    Tls(mpsc::Receiver<(RpcStream, SocketAddr)>),
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
                tokio::spawn(handshakes(tcp, acceptor, tx));
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
    tx: mpsc::Sender<(RpcStream, SocketAddr)>,
) {
    loop {
        let (stream, addr) = tokio::select! {
            accepted = accept_tcp(&tcp) => accepted,
            _ = tx.closed() => return,
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((RpcStream::Server(Box::new(tls)), addr)).await;
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
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (RpcStream, SocketAddr) {
        match &mut self.accepted {
            Accepted::Plain(tcp) => {
                let (stream, addr) = accept_tcp(tcp).await;
                (RpcStream::Plain(stream), addr)
            }
            Accepted::Tls(rx) => match rx.recv().await {
                Some(accepted) => accepted,
                // The accepting task ended (it only does when this listener is gone): nothing more will come.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.local
            .ok_or_else(|| std::io::Error::other("the RPC listener has no local address"))
    }
}
