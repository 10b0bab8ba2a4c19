//! Why the agent refused a request. The HTTP layer maps each variant to Consul's status code once.

use weft_state::StoreError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AgentError {
    /// 400: the request is malformed or invalid.
    #[error("{0}")]
    BadRequest(String),
    /// 404: the named service, check or session is not known here.
    #[error("{0}")]
    NotFound(String),
    /// 500: the request was valid but could not be carried out.
    #[error("{0}")]
    Internal(String),
    /// 500: no server leads the cluster (an election is running, or a quorum is gone); Consul's text.
    #[error("No cluster leader")]
    NoLeader,
}

impl From<StoreError> for AgentError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::MissingNode
            | StoreError::MissingAddress
            | StoreError::MissingServiceName
            | StoreError::MissingCheckName
            | StoreError::MissingKey => AgentError::BadRequest(e.to_string()),
            StoreError::NoLeader => AgentError::NoLeader,
            other => AgentError::Internal(other.to_string()),
        }
    }
}
