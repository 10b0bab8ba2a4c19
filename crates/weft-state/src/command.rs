//! Writes as data. Every change to the store is one [`Command`], applied by [`crate::Store::apply`] with the log
//! index that carries it. The same values go through Raft in a cluster and straight in for the dev agent and tests.

use serde::{Deserialize, Serialize};
use weft_types::{CheckStatus, HealthCheck, Node, NodeService, Session};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Upserts a node, and optionally one service and some checks on it (`/v1/catalog/register`, agent sync).
    Register(Box<Registration>),
    /// Removes a whole node, one service (with its checks) or one check (`/v1/catalog/deregister`).
    Deregister {
        node: String,
        service_id: Option<String>,
        check_id: Option<String>,
    },
    /// A check runner's verdict.
    UpdateCheck {
        node: String,
        check_id: String,
        status: CheckStatus,
        output: String,
    },
    Kv(KvOp),
    /// KV operations applied all-or-nothing.
    Txn(Vec<KvOp>),
    SessionCreate(Session),
    /// Destroy, TTL expiry or invalidation: the session's locks are released or deleted per its behaviour.
    SessionDestroy {
        id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Registration {
    pub node: Node,
    /// Leave the node record as it is when it exists (agent syncs of one service).
    pub skip_node_update: bool,
    pub service: Option<NodeService>,
    pub checks: Vec<HealthCheck>,
}

/// One KV operation, with Consul's verbs (`/v1/kv` and `/v1/txn`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KvOp {
    Set {
        key: String,
        value: Vec<u8>,
        flags: u64,
    },
    Cas {
        key: String,
        value: Vec<u8>,
        flags: u64,
        index: u64,
    },
    Lock {
        key: String,
        value: Vec<u8>,
        flags: u64,
        session: String,
    },
    Unlock {
        key: String,
        value: Vec<u8>,
        flags: u64,
        session: String,
    },
    Get {
        key: String,
    },
    GetOrEmpty {
        key: String,
    },
    GetTree {
        prefix: String,
    },
    CheckIndex {
        key: String,
        index: u64,
    },
    CheckSession {
        key: String,
        session: String,
    },
    CheckNotExists {
        key: String,
    },
    Delete {
        key: String,
    },
    DeleteTree {
        prefix: String,
    },
    DeleteCas {
        key: String,
        index: u64,
    },
}

impl KvOp {
    /// True for operations that change nothing.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            KvOp::Get { .. }
                | KvOp::GetOrEmpty { .. }
                | KvOp::GetTree { .. }
                | KvOp::CheckIndex { .. }
                | KvOp::CheckSession { .. }
                | KvOp::CheckNotExists { .. }
        )
    }
}
