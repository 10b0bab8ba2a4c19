//! Server RPC (port 8300): how servers and agents talk to each other. HTTP/1.1 with pooled connections, inside TLS
//! when the agent has RPC certificates.
//!
//! One home for both ends: the [`RpcListener`] servers accept on (plain TCP or TLS, handshakes in their own tasks),
//! the [`HttpClient`] every caller shares ([`http_client`], [`post_json`]) and the TLS settings both use
//! ([`RpcTls`]). Raft's network, request forwarding, joins, leaf signing and the replica stream all ride on it; what
//! is said over it is defined by its users (`weft-raft`, `weft-server`, `weft-http`).

pub mod auth;
mod client;
pub mod conn_limit;
mod listener;
mod tls;

pub use auth::{AuthError, KeySource, RpcAuth};
pub use client::{get_json, http_client, post_json, HttpClient, RpcError};
pub use conn_limit::Connections;
pub use listener::{PeerRole, RpcConnection, RpcListener, RpcPeer};
pub use tls::{server_name, Pem, RpcConnector, RpcStream, RpcTls, TlsError};
