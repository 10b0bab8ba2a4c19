//! Configuration reload (`weft reload`, `PUT /v1/agent/reload`, SIGHUP): the files are read again through the same
//! builder as at start, and what Consul applies on reload is applied: services, checks, the log level and the
//! node's metadata. Settings that only a restart can change are named in the answer and logged, never silently
//! ignored.

use crate::config::{ConfigBuilder, ConfigError, RuntimeConfig};
use std::sync::Arc;
use weft_agent::Agent;

/// Sets the process's log filter (`info`, `debug`, ...).
type SetLevel = dyn Fn(&'static str) -> Result<(), ReloadError> + Send + Sync;

/// Why a reload did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The files have problems; nothing was changed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The new services or checks, or the node's metadata, could not be applied.
    #[error(transparent)]
    Agent(#[from] weft_agent::AgentError),
    #[error("cannot change the log level: {0}")]
    LogLevel(String),
}

/// Changes the process's log level; `None` where logging is not ours to change (tests). Also carries the stream
/// monitors read the log from.
#[derive(Clone, Default)]
pub struct LogControl(
    Option<Arc<SetLevel>>,
    Option<Arc<weft_http::monitor::LogStream>>,
);

impl LogControl {
    /// Sets the level with `set`; `stream` is what `/v1/agent/monitor` reads.
    pub fn with_stream(
        stream: Arc<weft_http::monitor::LogStream>,
        set: impl Fn(&'static str) -> Result<(), ReloadError> + Send + Sync + 'static,
    ) -> Self {
        LogControl(Some(Arc::new(set)), Some(stream))
    }

    pub fn stream(&self) -> Option<Arc<weft_http::monitor::LogStream>> {
        self.1.clone()
    }

    fn set(&self, filter: &'static str) -> Result<(), ReloadError> {
        match &self.0 {
            Some(set) => set(filter),
            None => Ok(()),
        }
    }
}

pub struct Reloader {
    /// The settings the process started with: what a restart-only setting is compared against.
    started: Arc<RuntimeConfig>,
    agent: Agent,
    logs: LogControl,
    /// One reload at a time: two overlapping reloads could apply their registrations interleaved.
    running: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(started: Arc<RuntimeConfig>, agent: Agent, logs: LogControl) -> Reloader {
        Reloader {
            started,
            agent,
            logs,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Reads the configuration again and applies it; answers the settings that changed but need a restart, or
    /// every problem that stopped the reload (then nothing was changed).
    pub async fn reload(&self) -> Result<Vec<String>, ReloadError> {
        let _one = self.running.lock().await;
        let new = ConfigBuilder::from_flags(&self.started.sources).build_and_validate()?;
        self.agent
            .apply_config(&new.config_services(), &new.checks)
            .await?;
        self.logs.set(new.log_filter)?;
        self.agent.set_node_meta(new.node_meta.clone()).await?;
        let restart = needs_restart(&self.started, &new);
        for key in &restart {
            tracing::warn!(setting = %key, "changed in the config files; it takes effect only after a restart");
        }
        tracing::info!(
            services = new.services.len(),
            checks = new.checks.len(),
            log_level = %new.log_level,
            "configuration reloaded"
        );
        Ok(restart)
    }
}

/// The settings that differ between `old` and `new` and that a running agent cannot change.
pub fn needs_restart(old: &RuntimeConfig, new: &RuntimeConfig) -> Vec<String> {
    let mut changed = Vec::new();
    let mut check = |key: &str, differs: bool| {
        if differs {
            changed.push(key.to_string());
        }
    };
    check("datacenter", old.datacenter != new.datacenter);
    check("node_name", old.node_name != new.node_name);
    check("node_id", old.node_id != new.node_id);
    check("server", old.server != new.server);
    check(
        "bootstrap_expect",
        old.bootstrap_expect != new.bootstrap_expect,
    );
    check("data_dir", old.data_dir != new.data_dir);
    check("bind_addr", old.bind_addr != new.bind_addr);
    check("advertise_addr", old.advertise_addr != new.advertise_addr);
    check("client_addr", old.client_addr != new.client_addr);
    check("ports.http", old.http_addr != new.http_addr);
    check("ports.dns", old.dns_addr != new.dns_addr);
    check("ports.server", old.server_port != new.server_port);
    check("ports.serf_lan", old.serf_lan_port != new.serf_lan_port);
    check(
        "advertise_addrs.serf_lan",
        old.serf_lan_advertise != new.serf_lan_advertise,
    );
    check("retry_join", old.retry_join != new.retry_join);
    check("ports.serf_wan / retry_join_wan", old.wan != new.wan);
    check("encrypt", old.encrypt != new.encrypt);
    check("tls", old.rpc_tls != new.rpc_tls);
    check("connect.ca_config", old.ca_config != new.ca_config);
    check(
        "connect.ca_seal_key_file",
        old.ca_seal_key != new.ca_seal_key,
    );
    check(
        "connect.leaf_cache_idle_expiry",
        old.leaf_idle_expiry != new.leaf_idle_expiry,
    );
    check(
        "acl.default_policy",
        old.default_policy != new.default_policy,
    );
    check(
        "limits.rpc_max_conns_per_client",
        old.rpc_max_conns_per_client != new.rpc_max_conns_per_client,
    );
    check(
        "limits.rpc_handshake_timeout",
        old.rpc_handshake_timeout != new.rpc_handshake_timeout,
    );
    check(
        "limits.kv_max_value_size",
        old.kv_max_value_size != new.kv_max_value_size,
    );
    check(
        "session_ttl_min",
        old.session_ttl_min != new.session_ttl_min,
    );
    check(
        "leave_on_terminate",
        old.leave_on_terminate != new.leave_on_terminate,
    );
    changed
}
