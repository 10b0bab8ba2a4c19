//! Raft for Weft's servers: openraft over an append-only log file and redb metadata (`log_store`), the state store as its state machine
//! (`state_machine`), JSON over HTTP between servers (`network`), and a [`RaftNode`] that ties them together.
//!
//! A log entry carries one [`weft_state::Command`] and the leader's clock at proposal time, so applying it gives
//! the same result on every server.

mod leader_watch;
mod log_file;
mod log_store;
mod network;
mod node;
mod state_machine;
mod transfer;

pub use log_store::{OpenError, FORMAT_VERSION};
pub use node::{NodeError, RaftNode, RaftRpcError, StartError, Timings, WriteError};
pub use state_machine::SnapshotFileError;
pub use transfer::TransferError;

use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::Arc;
use weft_state::{ApplyResult, Command, StoreError};

/// A log entry's payload: the commands that arrived together, applied in order. Batching concurrent writes into
/// one entry costs one log append (one fsync on each server) for all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The proposing leader's clock (Unix milliseconds): TTLs and lock-delays are computed from it, not from
    /// each server's own clock.
    pub now_ms: u64,
    pub commands: Vec<Command>,
}

/// One command's outcome: the store index it was applied at, and the store's verdict.
pub type CommandResult = (u64, Result<ApplyResult, StoreError>);

/// What applying an entry produced, one result per command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub results: Vec<CommandResult>,
}

openraft::declare_raft_types!(
    /// Weft's Raft types: commands in, apply results out, u64 ids, nodes addressed by their RPC address.
    pub TypeConfig:
        D = Request,
        R = Response,
);

pub type StorageResult<T> = Result<T, openraft::StorageError<u64>>;

/// What the state machine did, in order: fed to replica streams.
#[derive(Debug, Clone)]
pub enum Applied {
    Command {
        /// The store index the command was applied at (several commands of one log entry get consecutive
        /// store indexes, so store indexes run ahead of log indexes).
        index: u64,
        now_ms: u64,
        command: Arc<Command>,
    },
    /// A snapshot replaced the whole state: replicas must start over from a full copy.
    Restored,
}

/// A stable Raft id for a node: a hash of its node ID (a UUID), so ids need no coordination.
pub fn raft_id(node_id: &str) -> u64 {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in node_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[cfg(test)]
mod tests;
