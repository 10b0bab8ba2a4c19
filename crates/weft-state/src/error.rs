//! Why a command was refused. The messages are Consul's, since clients and people read them.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum StoreError {
    #[error("Missing node name")]
    MissingNode,
    #[error("Missing node address")]
    MissingAddress,
    #[error("Missing service name")]
    MissingServiceName,
    #[error("Missing check name")]
    MissingCheckName,
    #[error("Node \"{0}\" does not exist")]
    UnknownNode(String),
    #[error("Unknown service ID \"{0}\" for check")]
    UnknownServiceForCheck(String),
    #[error("Check \"{0}\" does not exist")]
    UnknownCheck(String),
    #[error("Invalid session \"{0}\"")]
    InvalidSession(String),
    #[error("Check '{0}' is in critical state")]
    CriticalCheck(String),
    #[error("Missing check '{0}' registration")]
    MissingSessionCheck(String),
    #[error("Missing key name")]
    MissingKey,
    #[error("{0}")]
    TxnFailed(String),
    /// No server is leader (an election is under way, or a quorum is lost): Consul's words.
    #[error("No cluster leader")]
    NoLeader,
    /// A CA set up under another cluster ID while one exists (two initialisations racing): the first one stands,
    /// since leaves already carry its trust domain.
    #[error("the cluster already has a CA (cluster ID {0})")]
    CaExists(String),
    /// Bootstrap was done at this index (Consul's reset index).
    #[error("ACL bootstrap no longer allowed (reset index: {0})")]
    AclBootstrapDone(u64),
    #[error("Cannot find {0}")]
    AclNotFound(String),
    #[error("Changing or deleting {0} is not permitted")]
    AclBuiltin(String),
    #[error("Invalid {0}: a {0} with Name \"{1}\" already exists")]
    AclNameTaken(String, String),
    #[error("Invalid Token: SecretID is already in use")]
    AclSecretTaken,
    #[error("Cannot modify non-existent prepared query: '{0}'")]
    QueryNotFound(String),
    #[error("name '{0}' aliases an existing query name")]
    QueryNameTaken(String),
    #[error("a query template with an empty name already exists")]
    QueryCatchAllTaken,
    #[error("name '{0}' aliases an existing query ID")]
    QueryNameIsId(String),
    #[error("failed compiling template: {0}")]
    QueryTemplate(String),
    /// The servers could not be reached or failed; the reason is for operators.
    #[error("{0}")]
    Unavailable(String),
}

/// Why a store serialisation cannot be restored ([`crate::Store::validate_snapshot`]).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a Weft state snapshot: {0}")]
    NotAStateSnapshot(#[source] serde_json::Error),
    #[error("the snapshot's index {0} is beyond any real cluster's: refusing a damaged or forged snapshot")]
    IndexTooLarge(u64),
    #[error("the snapshot holds no CA this cluster could sign with (no active root with its key): restoring it would leave the cluster unable to issue certificates")]
    NoCa,
}
