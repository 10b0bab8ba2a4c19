//! Batches writes on a Raft member: commands that arrive while the previous log entry is being written go into the
//! next entry together, so N concurrent writes cost one log append (one fsync on each server) instead of N. A lone
//! write goes out at once; batching only ever happens while the log is busy.

use crate::now_ms;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use weft_raft::{CommandResult, RaftNode, Request, WriteError};
use weft_state::Command;

/// The most commands one log entry carries.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<CommandResult, WriteError>>;

pub struct Batcher {
    tx: mpsc::Sender<(Command, Reply)>,
}

impl Batcher {
    pub fn start(node: Arc<RaftNode>) -> Batcher {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(node, rx));
        Batcher { tx }
    }

    /// Proposes one command (with whatever else is waiting) and answers its store index and result.
    pub async fn submit(&self, command: Command) -> Result<CommandResult, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((command, reply))
            .await
            .map_err(|_| WriteError::Fatal("the write batcher has stopped".into()))?;
        answer
            .await
            .map_err(|_| WriteError::Fatal("the write batcher has stopped".into()))?
    }
}

async fn run(node: Arc<RaftNode>, mut rx: mpsc::Receiver<(Command, Reply)>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
        let request = Request {
            now_ms: now_ms(),
            commands,
        };
        match node.write(request).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
