//! Forming and joining the server cluster over the RPC port.
//!
//! Each server asks the `-retry-join` addresses who they are (`POST /v1/internal/hello`). If one of them already
//! belongs to a cluster with a leader, this server asks that leader to add it (`POST /v1/internal/join`; the leader
//! adds it as a learner, waits until it has caught up, then makes it a voter). Otherwise, once `-bootstrap-expect`
//! fresh servers (this one included) have met, the one with the lowest Raft id starts the cluster with all of
//! them, so exactly one `initialize` happens. A server with Raft state on disk never bootstraps again: it rejoins
//! its cluster from the log.

use crate::{Mode, Server};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// What a server says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// Always "weft": tells a Weft RPC port from anything else listening there.
    pub product: String,
    pub id: u64,
    pub addr: String,
    pub node_name: String,
    pub datacenter: String,
    pub bootstrap_expect: u32,
    /// True once it has Raft state (it belongs to a cluster).
    pub has_state: bool,
    pub leader: Option<String>,
    pub servers: Vec<String>,
    #[serde(default)]
    pub term: u64,
    #[serde(default)]
    pub last_index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub id: u64,
    pub addr: String,
    pub node_name: String,
}

/// Why a server was not added to the cluster; travels back over server RPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum JoinRefusal {
    #[error("not a server")]
    NotAServer,
    #[error("{0}")]
    Failed(String),
}

/// `-bootstrap-expect`, and server RPC addresses to ask besides those gossip finds.
#[derive(Debug, Clone, Default)]
pub struct Bootstrap {
    pub expect: u32,
    pub retry_join: Vec<String>,
}

const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the leader waits for gossip to show a joining server.
const GOSSIP_CONFIRM_WAIT: Duration = Duration::from_secs(5);
/// How long a new server may take to catch up with the log as a learner before the join is undone.
const CATCH_UP_WAIT: Duration = Duration::from_secs(60);

impl Server {
    /// This member's answer to `hello`.
    pub fn hello(&self) -> Option<Hello> {
        let node = self.raft_node()?;
        Some(Hello {
            product: "weft".into(),
            id: node.id(),
            addr: node.addr().to_string(),
            node_name: self.config().node_name.clone(),
            datacenter: self.config().datacenter.clone(),
            bootstrap_expect: self.config().bootstrap_expect,
            has_state: node.has_state(),
            leader: self.leader(),
            servers: self.peers(),
            term: node.term(),
            last_index: node.last_log_index(),
        })
    }

    /// Serves `POST /v1/internal/join`: the leader adds the server; a follower passes the request to the leader.
    pub async fn handle_join(&self, req: JoinRequest) -> Result<(), JoinRefusal> {
        let Mode::Raft(node) = self.mode() else {
            return Err(JoinRefusal::NotAServer);
        };
        if node.is_leader() {
            self.check_joiner(&req).await?;
            tracing::info!(server = %req.node_name, addr = %req.addr, "adding a server to the cluster");
            return node
                .add_server(req.id, &req.addr, CATCH_UP_WAIT)
                .await
                .map_err(|e| JoinRefusal::Failed(e.to_string()));
        }
        self.call_leader("/v1/internal/join", &req)
            .await
            .map_err(|e| JoinRefusal::Failed(e.to_string()))?
    }

    /// A server is added only when its RPC address answers as that very server of this datacenter: a join naming an
    /// address nobody answers at would add a voter that never votes, and could cost the cluster its quorum.
    async fn check_joiner(&self, req: &JoinRequest) -> Result<(), JoinRefusal> {
        let hello: Hello = weft_rpc::post_json(
            self.http(),
            &req.addr,
            "/v1/internal/hello",
            &(),
            HELLO_TIMEOUT,
        )
        .await
        .map_err(|e| {
            JoinRefusal::Failed(format!(
                "the server to add does not answer at {}: {e}",
                req.addr
            ))
        })?;
        if hello.product != "weft"
            || hello.id != req.id
            || hello.datacenter != self.config().datacenter
        {
            return Err(JoinRefusal::Failed(format!(
                "{} answers as another server (id {}, datacenter {:?}), not the one asking to join",
                req.addr, hello.id, hello.datacenter
            )));
        }
        self.gossip_confirms(req).await
    }

    /// The joiner must also be a live server of this datacenter in the gossip pool, announcing that RPC address:
    /// the leader's own view, not the caller's word. Gossip may lag a join by a moment, so it is given a few seconds.
    async fn gossip_confirms(&self, req: &JoinRequest) -> Result<(), JoinRefusal> {
        let Some(gossip) = self.gossip() else {
            return Ok(());
        };
        let dc = &self.config().datacenter;
        let confirmed = || {
            gossip.members().iter().any(|m| {
                m.status == weft_gossip::Status::Alive
                    && m.member.tags.role == weft_gossip::Role::Server
                    && &m.member.tags.datacenter == dc
                    && m.member.tags.rpc.as_deref() == Some(req.addr.as_str())
            })
        };
        let deadline = tokio::time::Instant::now() + GOSSIP_CONFIRM_WAIT;
        while !confirmed() {
            if tokio::time::Instant::now() >= deadline {
                return Err(JoinRefusal::Failed(format!(
                    "no live server of datacenter {dc} announces RPC address {} in the gossip pool: a server joins \
                     the pool (-retry-join) before the cluster",
                    req.addr
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Runs until this server belongs to a cluster with a leader: joins one, or bootstraps one with its peers.
    pub async fn form_cluster(&self, boot: Bootstrap) {
        let Some(node) = self.raft_node().cloned() else {
            return;
        };
        if node.has_state() {
            tracing::info!("Raft state found on disk: rejoining the cluster from the log");
            return;
        }
        let me = JoinRequest {
            id: node.id(),
            addr: node.addr().to_string(),
            node_name: self.config().node_name.clone(),
        };
        let mut warned: std::collections::BTreeSet<String> = Default::default();
        loop {
            if node.leader().is_some() {
                return;
            }
            let mut fresh: BTreeMap<u64, String> = BTreeMap::new();
            fresh.insert(me.id, me.addr.clone());
            // Candidates: the servers gossip knows (their RPC addresses are in their tags), plus any given here.
            let mut candidates: Vec<String> =
                self.gossip().map(|g| g.servers()).unwrap_or_default();
            for a in &boot.retry_join {
                if !candidates.contains(a) {
                    candidates.push(a.clone());
                }
            }
            for addr in &candidates {
                if *addr == me.addr {
                    continue;
                }
                let hello: Hello = match weft_rpc::post_json(
                    self.http(),
                    addr,
                    "/v1/internal/hello",
                    &(),
                    HELLO_TIMEOUT,
                )
                .await
                {
                    Ok(h) => h,
                    Err(e) => {
                        if warned.insert(format!("{addr}:{e}")) {
                            tracing::warn!(%addr, error = %e, "cannot reach a server to join (is it a Weft RPC port?); retrying");
                        }
                        continue;
                    }
                };
                if hello.product != "weft" {
                    continue;
                }
                if hello.datacenter != self.config().datacenter {
                    if warned.insert(format!("dc:{addr}")) {
                        tracing::error!(%addr, theirs = %hello.datacenter, ours = %self.config().datacenter, "not joining a server of another datacenter");
                    }
                    continue;
                }
                if let Some(leader) = hello.leader.clone() {
                    let answer: Result<Result<(), JoinRefusal>, weft_rpc::RpcError> =
                        weft_rpc::post_json(
                            self.http(),
                            &leader,
                            "/v1/internal/join",
                            &me,
                            Duration::from_secs(30),
                        )
                        .await;
                    match answer {
                        Ok(Ok(())) => {
                            tracing::info!(%leader, "joined the cluster");
                            // Appends from the leader follow; wait for them to name it.
                            for _ in 0..50 {
                                if node.leader().is_some() {
                                    return;
                                }
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(%leader, error = %e, "the leader did not add this server; retrying")
                        }
                        Err(e) => {
                            tracing::warn!(%leader, error = %e, "cannot reach the leader to join; retrying")
                        }
                    }
                    continue;
                }
                if hello.has_state {
                    continue;
                }
                if hello.bootstrap_expect != boot.expect {
                    if warned.insert(format!("expect:{addr}")) {
                        tracing::error!(%addr, theirs = hello.bootstrap_expect, ours = boot.expect, "servers disagree on -bootstrap-expect; not bootstrapping with it");
                    }
                    continue;
                }
                fresh.insert(hello.id, hello.addr);
            }
            let lowest = fresh.keys().next().copied();
            if boot.expect > 0
                && fresh.len() as u32 >= boot.expect
                && lowest == Some(me.id)
                && !node.has_state()
            {
                let members: BTreeMap<u64, String> =
                    fresh.into_iter().take(boot.expect as usize).collect();
                tracing::info!(servers = members.len(), "bootstrapping the cluster");
                if let Err(e) = node.initialize(members).await {
                    tracing::warn!(error = %e, "bootstrap failed");
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
