//! Health checks: the status enum, the stored/wire form ([`HealthCheck`]) and the definition an agent runs
//! ([`CheckDefinition`], the body of `PUT /v1/agent/check/register` and of a service's `Check`/`Checks`).

use crate::duration::opt_go;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Passing,
    Warning,
    #[default]
    Critical,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }

    /// The worse of two statuses: critical beats warning beats passing.
    pub fn worst(self, other: CheckStatus) -> CheckStatus {
        self.max(other)
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CheckStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "passing" => Ok(CheckStatus::Passing),
            "warning" => Ok(CheckStatus::Warning),
            "critical" => Ok(CheckStatus::Critical),
            _ => Err(()),
        }
    }
}

/// What a check is configured to run, as shown in `HealthCheck.Definition` (every field omitted when empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthCheckDefinition {
    #[serde(rename = "HTTP", skip_serializing_if = "String::is_empty")]
    pub http: String,
    #[serde(rename = "TLSServerName", skip_serializing_if = "String::is_empty")]
    pub tls_server_name: String,
    #[serde(rename = "TLSSkipVerify", skip_serializing_if = "std::ops::Not::not")]
    pub tls_skip_verify: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub method: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub body: String,
    #[serde(rename = "TCP", skip_serializing_if = "String::is_empty")]
    pub tcp: String,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_go")]
    pub interval: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_go")]
    pub timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_go")]
    pub deregister_critical_service_after: Option<Duration>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub alias_node: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub alias_service: String,
    #[serde(
        rename = "TTL",
        skip_serializing_if = "Option::is_none",
        with = "opt_go"
    )]
    pub ttl: Option<Duration>,
}

/// A check as the catalog stores and returns it (Consul's `structs.HealthCheck`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthCheck {
    pub node: String,
    #[serde(rename = "CheckID", alias = "ID")]
    pub check_id: String,
    pub name: String,
    pub status: CheckStatus,
    pub notes: String,
    pub output: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    #[serde(rename = "Type")]
    pub check_type: String,
    pub interval: String,
    pub timeout: String,
    pub exposed_port: u16,
    pub definition: HealthCheckDefinition,
    pub create_index: u64,
    pub modify_index: u64,
}

/// The kind of probe a definition asks for, decided (as in Consul) by which field is set.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    Ttl(Duration),
    Http {
        url: String,
        interval: Duration,
    },
    Tcp {
        address: String,
        interval: Duration,
    },
    /// One datagram to `address` (`host:port`): silence or an answer passing, an error critical.
    Udp {
        address: String,
        interval: Duration,
    },
    AliasService(String),
    /// Runs `args` (no shell) every `interval`: exit 0 passing, 1 warning, anything else critical.
    Script {
        args: Vec<String>,
        interval: Duration,
    },
    /// `shell -c "args..."` inside a running container, through the Docker daemon: exit codes as for scripts.
    Docker {
        container: String,
        shell: String,
        args: Vec<String>,
        interval: Duration,
    },
    /// One HTTP/2 PING to `target` (`host:port`).
    H2Ping {
        target: String,
        interval: Duration,
    },
    /// The standard gRPC health protocol (`grpc.health.v1.Health/Check`) at `target` (`host:port[/service]`).
    Grpc {
        target: String,
        interval: Duration,
    },
    /// Set and updated only through the API (catalog checks, maintenance checks).
    Manual,
}

impl CheckKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            CheckKind::Ttl(_) => "ttl",
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Udp { .. } => "udp",
            CheckKind::AliasService(_) => "alias",
            CheckKind::Script { .. } => "script",
            CheckKind::Docker { .. } => "docker",
            CheckKind::Grpc { .. } => "grpc",
            CheckKind::H2Ping { .. } => "h2ping",
            CheckKind::Manual => "",
        }
    }
}

/// A check definition: what an agent is asked to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckDefinition {
    #[serde(rename = "CheckID", alias = "ID")]
    pub check_id: String,
    pub name: String,
    pub notes: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub status: Option<String>,
    pub output: String,
    #[serde(with = "opt_go")]
    pub interval: Option<Duration>,
    #[serde(with = "opt_go")]
    pub timeout: Option<Duration>,
    #[serde(rename = "TTL", with = "opt_go")]
    pub ttl: Option<Duration>,
    #[serde(rename = "HTTP")]
    pub http: String,
    pub header: BTreeMap<String, Vec<String>>,
    pub method: String,
    pub body: String,
    pub disable_redirects: bool,
    #[serde(rename = "TCP")]
    pub tcp: String,
    #[serde(rename = "TLSServerName")]
    pub tls_server_name: String,
    #[serde(rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    pub alias_node: String,
    pub alias_service: String,
    pub script_args: Vec<String>,
    #[serde(rename = "GRPC")]
    pub grpc: String,
    #[serde(rename = "GRPCUseTLS")]
    pub grpc_use_tls: bool,
    #[serde(rename = "UDP")]
    pub udp: String,
    #[serde(rename = "H2PING")]
    pub h2ping: String,
    /// H2PING over TLS (Consul's default) or in the clear (`false`).
    #[serde(rename = "H2PingUseTLS")]
    pub h2ping_use_tls: Option<bool>,
    #[serde(rename = "DockerContainerID")]
    pub docker_container_id: String,
    /// The shell a Docker check's `Args` run under (`/bin/sh` by default).
    pub shell: String,
    #[serde(rename = "OSService")]
    pub os_service: String,
    pub output_max_size: usize,
    #[serde(with = "opt_go")]
    pub deregister_critical_service_after: Option<Duration>,
    pub success_before_passing: u32,
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
}

/// Why a check definition was refused (Consul's `Invalid check: ...` family).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckError {
    #[error("Status for checks must 'passing', 'warning', 'critical'")]
    BadStatus,
    #[error("Invalid check: {0}")]
    Invalid(String),
}

/// The shortest interval a check runs at (Consul's `MinInterval`): a shorter one is raised to it, so a check of
/// `"1ns"` cannot spin a core.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

impl CheckDefinition {
    /// Decides the check's kind and validates what that kind needs.
    pub fn kind(&self) -> Result<CheckKind, CheckError> {
        let needs_interval = |what: &str| -> Result<Duration, CheckError> {
            match self.interval {
                Some(i) if !i.is_zero() => Ok(i.max(MIN_INTERVAL)),
                _ => Err(CheckError::Invalid(format!(
                    "Interval must be > 0 for {what} checks"
                ))),
            }
        };
        if !self.os_service.is_empty() {
            return Err(CheckError::Invalid(
                "OS service checks are not supported by this agent (they watch Windows services and systemd units)"
                    .into(),
            ));
        }
        if let Some(ttl) = self.ttl.filter(|t| !t.is_zero()) {
            return Ok(CheckKind::Ttl(ttl));
        }
        if !self.docker_container_id.is_empty() {
            let interval = needs_interval("Docker")?;
            if self.script_args.is_empty() {
                return Err(CheckError::Invalid(
                    "Args must be set for Docker checks (run in the container as Shell -c \"Args\")".into(),
                ));
            }
            return Ok(CheckKind::Docker {
                container: self.docker_container_id.clone(),
                shell: if self.shell.is_empty() {
                    "/bin/sh".into()
                } else {
                    self.shell.clone()
                },
                args: self.script_args.clone(),
                interval,
            });
        }
        if !self.script_args.is_empty() {
            let interval = needs_interval("script")?;
            if self.script_args[0].is_empty() {
                return Err(CheckError::Invalid(
                    "Args must name a program to run".into(),
                ));
            }
            return Ok(CheckKind::Script {
                args: self.script_args.clone(),
                interval,
            });
        }
        if !self.http.is_empty() {
            let interval = needs_interval("HTTP")?;
            if !(self.http.starts_with("http://") || self.http.starts_with("https://")) {
                return Err(CheckError::Invalid(format!(
                    "HTTP check URL must be http:// or https://: {:?}",
                    self.http
                )));
            }
            return Ok(CheckKind::Http {
                url: self.http.clone(),
                interval,
            });
        }
        if !self.h2ping.is_empty() {
            let interval = needs_interval("H2PING")?;
            return Ok(CheckKind::H2Ping {
                target: self.h2ping.clone(),
                interval,
            });
        }
        if !self.grpc.is_empty() {
            let interval = needs_interval("gRPC")?;
            return Ok(CheckKind::Grpc {
                target: self.grpc.clone(),
                interval,
            });
        }
        if !self.udp.is_empty() {
            let interval = needs_interval("UDP")?;
            return Ok(CheckKind::Udp {
                address: self.udp.clone(),
                interval,
            });
        }
        if !self.tcp.is_empty() {
            let interval = needs_interval("TCP")?;
            return Ok(CheckKind::Tcp {
                address: self.tcp.clone(),
                interval,
            });
        }
        if !self.alias_service.is_empty() {
            return Ok(CheckKind::AliasService(self.alias_service.clone()));
        }
        if !self.alias_node.is_empty() {
            return Err(CheckError::Invalid(
                "alias checks on nodes are not supported by this agent".into(),
            ));
        }
        if self.interval.is_some() || self.ttl.is_some() {
            return Err(CheckError::Invalid("TTL must be > 0 for TTL checks".into()));
        }
        Ok(CheckKind::Manual)
    }

    /// The initial status: `Status` when given (and valid), otherwise critical, as in Consul.
    pub fn initial_status(&self) -> Result<CheckStatus, CheckError> {
        match self.status.as_deref() {
            None | Some("") => Ok(CheckStatus::Critical),
            Some(s) => s.parse().map_err(|_| CheckError::BadStatus),
        }
    }

    pub fn to_definition(&self) -> HealthCheckDefinition {
        HealthCheckDefinition {
            http: self.http.clone(),
            tls_server_name: self.tls_server_name.clone(),
            tls_skip_verify: self.tls_skip_verify,
            header: self.header.clone(),
            method: self.method.clone(),
            body: self.body.clone(),
            tcp: self.tcp.clone(),
            interval: self.interval,
            timeout: self.timeout,
            deregister_critical_service_after: self.deregister_critical_service_after,
            alias_node: self.alias_node.clone(),
            alias_service: self.alias_service.clone(),
            ttl: self.ttl,
        }
    }
}
