//! Writes that leave this process: a Raft follower sends them to the leader, a client agent to any server. Both use
//! the RPC port's `POST /v1/internal/apply`; the answer carries the log index and the store's verdict.

use crate::batcher::Batcher;
use crate::{replica::Replica, Server, LEADER_WAIT};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;
use weft_raft::WriteError;
use weft_state::{ApplyResult, Command, StoreError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub command: Command,
    /// False when the sender is itself a server that found this member to be the leader: do not pass it on.
    pub forward: bool,
    /// The sending agent's token (`acl.tokens.agent`, else its default): with ACLs on, a client agent's
    /// anti-entropy needs `node:write` on the node it writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyAnswer {
    pub index: u64,
    pub result: Result<ApplyResult, StoreError>,
}

/// `POST /v1/internal/ca/sign`: a leaf CSR for the leader to sign.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignRequest {
    pub csr: String,
    pub datacenter: String,
    /// The ACL token of whoever asked for the leaf: the leader checks it holds `service:write` on the service.
    #[serde(default)]
    pub token: Option<String>,
}

const RPC_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Proposes through Raft here, or at the leader; during an election, waits for one (up to [`LEADER_WAIT`]).
pub(crate) async fn write_through_raft(
    server: &Server,
    batcher: &Batcher,
    command: Command,
) -> (u64, Result<ApplyResult, StoreError>) {
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        // A leader cut off from its quorum cannot commit: give up at the deadline rather than hang. The entry may
        // still commit if the partition heals in time, as with any write whose answer was lost.
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(written) = tokio::time::timeout(left, batcher.submit(command.clone())).await else {
            return (
                0,
                Err(StoreError::Unavailable(
                    "the write was not committed in time: no quorum reachable".into(),
                )),
            );
        };
        match written {
            Ok(answer) => return answer,
            Err(WriteError::ForwardToLeader(Some((_, leader)))) => {
                let req = ApplyRequest {
                    command: command.clone(),
                    forward: false,
                    token: server.agent_token(),
                };
                match send_apply(server, &leader, &req).await {
                    Ok(Ok(answer)) => return (answer.index, answer.result),
                    Ok(Err(e)) => {
                        tracing::debug!(%leader, error = %e, "the leader refused a forwarded write; retrying")
                    }
                    Err(e) => {
                        tracing::debug!(%leader, error = %e, "forwarding a write failed; retrying")
                    }
                }
            }
            Err(WriteError::ForwardToLeader(None)) | Err(WriteError::NoLeader) => {}
            Err(WriteError::Fatal(e)) => return (0, Err(StoreError::Unavailable(e))),
        }
        if Instant::now() >= deadline {
            return (0, Err(StoreError::NoLeader));
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Applies a forwarded write on this member only (the sender already followed the leader here).
pub(crate) async fn apply_on_leader(
    batcher: &Batcher,
    command: Command,
) -> Result<(u64, Result<ApplyResult, StoreError>), StoreError> {
    batcher.submit(command).await.map_err(|e| match e {
        WriteError::Fatal(e) => StoreError::Unavailable(e),
        _ => StoreError::NoLeader,
    })
}

/// A client agent's write: to the server it last reached, then the others, until one answers.
pub(crate) async fn write_via_servers(
    server: &Server,
    replica: &Replica,
    command: Command,
) -> (u64, Result<ApplyResult, StoreError>) {
    let deadline = Instant::now() + LEADER_WAIT;
    let req = ApplyRequest {
        command,
        forward: true,
        token: server.agent_token(),
    };
    let mut last_error = StoreError::Unavailable("no servers known".into());
    loop {
        for addr in replica.servers() {
            match send_apply(server, &addr, &req).await {
                Ok(Ok(answer)) => {
                    replica.prefer(&addr);
                    return (answer.index, answer.result);
                }
                Ok(Err(refused)) => last_error = refused,
                Err(e) => last_error = StoreError::Unavailable(format!("no server reachable: {e}")),
            }
        }
        if Instant::now() >= deadline {
            tracing::warn!(error = %last_error, "no server accepted a write");
            return (0, Err(last_error));
        }
        tokio::time::sleep(RETRY_PAUSE * 4).await;
    }
}

/// Sends a write to a server: its answer, its typed refusal, or why it could not be asked.
async fn send_apply(
    server: &Server,
    addr: &str,
    req: &ApplyRequest,
) -> Result<Result<ApplyAnswer, StoreError>, weft_rpc::RpcError> {
    weft_rpc::post_json(server.http(), addr, "/v1/internal/apply", req, RPC_TIMEOUT).await
}

/// Why the leader could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum LeaderCallError {
    /// No leader was known before the wait ran out (Consul's words).
    #[error("No cluster leader")]
    NoLeader,
    #[error(transparent)]
    Rpc(#[from] weft_rpc::RpcError),
}

/// Serves `POST /v1/internal/apply` on the RPC port.
impl Server {
    pub async fn handle_apply(&self, req: ApplyRequest) -> Result<ApplyAnswer, StoreError> {
        match (&self.inner.mode, req.forward) {
            (crate::Mode::Raft(_), false) => {
                let batcher = self.batcher().ok_or(StoreError::NoLeader)?;
                let (index, result) = apply_on_leader(batcher, req.command).await?;
                Ok(ApplyAnswer { index, result })
            }
            _ => {
                let (index, result) = self.write_indexed(req.command).await;
                match result {
                    Err(StoreError::NoLeader) => Err(StoreError::NoLeader),
                    Err(StoreError::Unavailable(e)) => Err(StoreError::Unavailable(e)),
                    result => Ok(ApplyAnswer { index, result }),
                }
            }
        }
    }

    /// Sends a request to the leader's RPC port and decodes its answer (leader-only work such as leaf signing).
    pub async fn call_leader<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
    ) -> Result<Resp, LeaderCallError> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let target = match &self.inner.mode {
                crate::Mode::Client(replica) => replica.servers().into_iter().next(),
                _ => self.leader(),
            };
            if let Some(addr) = target {
                match weft_rpc::post_json(self.http(), &addr, path, req, RPC_TIMEOUT).await {
                    Ok(answer) => return Ok(answer),
                    Err(e) if Instant::now() >= deadline => return Err(LeaderCallError::Rpc(e)),
                    Err(e) => tracing::debug!(%addr, error = %e, "leader call failed; retrying"),
                }
            } else if Instant::now() >= deadline {
                return Err(LeaderCallError::NoLeader);
            }
            tokio::time::sleep(RETRY_PAUSE * 2).await;
        }
    }
}
