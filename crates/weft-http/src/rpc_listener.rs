//! The server RPC listener: TCP, or TLS when the agent has RPC certificates. A handshake that fails (no client
//! certificate, another CA, plain HTTP) is logged and the connection dropped; it never stalls other accepts for
//! long, since each handshake has a deadline.

use std::time::Duration;
use tokio::net::TcpListener;
use weft_raft::{RpcStream, RpcTls};

pub struct RpcListener {
    tcp: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

const HANDSHAKE: Duration = Duration::from_secs(5);

impl RpcListener {
    pub fn new(tcp: TcpListener, tls: Option<&RpcTls>) -> RpcListener {
        RpcListener {
            tcp,
            tls: tls.map(|t| tokio_rustls::TlsAcceptor::from(t.server.clone())),
        }
    }
}

impl axum::serve::Listener for RpcListener {
    type Io = RpcStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (RpcStream, std::net::SocketAddr) {
        loop {
            let (tcp, addr) = match self.tcp.accept().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "server RPC accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let Some(acceptor) = &self.tls else {
                return (RpcStream::Plain(tcp), addr);
            };
            match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => return (RpcStream::Server(Box::new(tls)), addr),
                Ok(Err(e)) => {
                    tracing::warn!(peer = %addr, error = %e, "refused a server RPC connection: TLS handshake failed")
                }
                Err(_) => {
                    tracing::warn!(peer = %addr, "refused a server RPC connection: TLS handshake timed out")
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.tcp.local_addr()
    }
}
