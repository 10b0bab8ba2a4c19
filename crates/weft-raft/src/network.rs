//! Raft's transport: JSON over HTTP/1.1 to the peer's RPC port (`POST /v1/internal/raft/{append,vote,snapshot}`).
//! The receiving side is [`crate::RaftNode::handle`], mounted by the RPC listener.

use crate::tls::{RpcConnector, RpcTls};
use crate::TypeConfig;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

pub type HttpClient = Client<RpcConnector, Full<Bytes>>;

/// The RPC client: HTTP/1.1 with pooled connections, inside TLS when `tls` is given; shared by every peer.
pub fn http_client(tls: Option<&RpcTls>) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(RpcConnector::new(connector, tls))
}

/// Builds one [`Peer`] per target node.
#[derive(Clone)]
pub struct Network {
    client: HttpClient,
}

impl Network {
    pub fn new(client: HttpClient) -> Network {
        Network { client }
    }
}

pub struct Peer {
    target: u64,
    addr: String,
    client: HttpClient,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

/// Sends one JSON request and decodes the peer's `Result` answer. `Ok(Err(e))` is the peer's own refusal.
pub async fn post_json<Req: Serialize, Resp: DeserializeOwned>(
    client: &HttpClient,
    addr: &str,
    path: &str,
    body: &Req,
    timeout: Duration,
) -> Result<Resp, String> {
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let request = hyper::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            // Keep the cause: "connection refused" tells an operator more than "client error".
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg = format!("{msg}: {s}");
                source = s.source();
            }
            msg
        })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("undecodable answer from {addr}: {e}"))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer from {addr} within {timeout:?}"))?
}

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<u64, E>> = post_json(
            &self.client,
            &self.addr,
            path,
            req,
            option.hard_ttl().max(Duration::from_millis(500)),
        )
        .await
        .map_err(|e| {
            let e = TransportError(e);
            if e.0.contains("refused") || e.0.contains("no answer") {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            client: self.client.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call("/v1/internal/raft/append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call("/v1/internal/raft/snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call("/v1/internal/raft/vote", &rpc, &option).await
    }
}
