//! What each route declares beside its handler: where it is answered, how large a body it takes, which listener
//! serves it, and who may call it. The dispatcher enforces the [`AclRule`]s whose subject it can see (the path, a
//! query parameter, this node, the whole resource; `caller::check_route`); handlers enforce those found in the
//! body, owned by an ID or listed item by item. A new route cannot be added without deciding all four.

/// Where a request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// By this agent, from its own state (`/v1/agent/...`, `/v1/status/...`).
    Local,
    /// By the leader, as Consul does; `?stale` reads are answered from this agent's copy.
    Leader,
    /// By the leader; `?stale` reads by any server, never by a client agent, whose replica holds no KV (KV, txn,
    /// snapshots).
    LeaderKv,
    /// Cluster-internal: answered where it arrives, on the server RPC listener only.
    Internal,
    /// By the agent asked, as [`Forward::Local`], unless `?dc=` names another datacenter: then by one of that
    /// datacenter's servers, so unlike `Local` it may arrive passed on (the keyring, user events, `/v1/status`).
    LocalOrDc,
}

/// The largest body a route reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// 4 MiB: registrations, intentions, config entries.
    Default,
    /// `limits.kv_max_value_size` (at least the default): KV values and transactions.
    KvValue,
    /// 64 MiB: Raft appends and snapshot chunks, snapshot restores.
    Large,
}

/// Which listener serves a route. Internal routes are mounted only on the server RPC listener; the public port's
/// table does not contain them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    RpcOnly,
}

/// The ACL resource a route touches (Consul's rule kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Needs no token (Consul's status endpoints, the agent's version).
    None,
    Agent,
    Node,
    Service,
    Key,
    Session,
    /// User events, by name.
    Event,
    /// Prepared queries, by name (Consul's `query` rules).
    PreparedQuery,
    /// Intentions (Consul checks `intentions` rules on the destination service).
    Intention,
    Operator,
    /// The gossip keyring (Consul's `keyring` rules).
    Keyring,
    /// The CA configuration and roots (Consul: `mesh`/`operator`).
    Mesh,
    Acl,
    /// Cluster members (servers and client agents): forwarded writes and leaf signing. Decided by the RPC
    /// listener's peer identity (certificate role, or the gossip key's HMAC), not by tokens.
    ClusterMember,
    /// Servers only: Raft, joins, `hello`. With TLS, a client agent's certificate is refused here.
    ClusterServer,
}

/// What the route does to the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    /// `GET` reads; every other method writes.
    ByMethod,
}

/// Which instance of the resource the rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// Every instance: the route lists, and its answer is filtered item by item.
    Each,
    /// The path's remainder (`/v1/kv/{key}`, `/v1/catalog/service/{name}`).
    Path,
    /// A query parameter (`?destination=`, `?node=`).
    Query(&'static str),
    /// Named in the request body (registrations), checked once it is decoded.
    Body,
    /// The path names an object by ID (a service instance, a check, a session, an intention): the rule applies to
    /// what owns it (the service, the node, the destination), found by the handler.
    Owner,
    /// KV: the path's key; with `?recurse`/`?keys` every key listed (filtered), and a recursive delete needs write
    /// on every key below.
    Keys,
    /// This agent's own node.
    ThisNode,
    /// The resource has no instances (operator, ACL, cluster).
    Whole,
}

/// Consul's `resource:access on subject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclRule {
    pub resource: Resource,
    pub access: Access,
    pub subject: Subject,
}

impl AclRule {
    pub const NONE: AclRule = AclRule {
        resource: Resource::None,
        access: Access::Read,
        subject: Subject::Whole,
    };

    pub const fn new(resource: Resource, access: Access, subject: Subject) -> AclRule {
        AclRule {
            resource,
            access,
            subject,
        }
    }

    /// The access a request with `method` needs.
    pub fn access_for(&self, method: &axum::http::Method) -> Access {
        match self.access {
            Access::ByMethod if method == axum::http::Method::GET => Access::Read,
            Access::ByMethod => Access::Write,
            other => other,
        }
    }
}

/// Everything a route declares besides its path, methods and handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub forward: Forward,
    pub body: BodyLimit,
    pub listener: Listener,
    pub acl: AclRule,
}
