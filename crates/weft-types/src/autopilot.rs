//! Autopilot's settings as `/v1/operator/autopilot/configuration` carries them (Consul's `AutopilotConfig`): kept
//! in the servers' Raft state once written, and until then taken from the leader's agent configuration.

use crate::duration::opt_go;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AutopilotConfig {
    /// Remove servers that have failed once a replacement has joined.
    pub cleanup_dead_servers: bool,
    /// A server not heard from for longer is unhealthy.
    #[serde(with = "opt_go")]
    pub last_contact_threshold: Option<Duration>,
    /// A server whose log trails the leader's by more entries is unhealthy.
    pub max_trailing_logs: u64,
    /// Dead servers are never removed below this many voters.
    pub min_quorum: u32,
    /// How long a server must stay failed before cleanup may remove it (Weft's reading; see the README).
    #[serde(with = "opt_go")]
    pub server_stabilization_time: Option<Duration>,
    /// Enterprise settings: kept and returned, not acted on (as in Consul's open-source build).
    pub redundancy_zone_tag: String,
    pub disable_upgrade_migration: bool,
    pub upgrade_version_tag: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// The settings' names, in Consul's order (`operator autopilot get-config` prints them so).
pub const SETTINGS: &[&str] = &[
    "CleanupDeadServers",
    "LastContactThreshold",
    "MaxTrailingLogs",
    "MinQuorum",
    "ServerStabilizationTime",
    "RedundancyZoneTag",
    "DisableUpgradeMigration",
    "UpgradeVersionTag",
];

/// Consul's defaults, except the contact threshold: Weft's leader probes each server once a second, so contact is
/// only known to that precision.
pub const DEFAULT_LAST_CONTACT_THRESHOLD: Duration = Duration::from_secs(3);
pub const DEFAULT_SERVER_STABILIZATION_TIME: Duration = Duration::from_secs(10);

impl Default for AutopilotConfig {
    fn default() -> Self {
        AutopilotConfig {
            cleanup_dead_servers: true,
            last_contact_threshold: Some(DEFAULT_LAST_CONTACT_THRESHOLD),
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time: Some(DEFAULT_SERVER_STABILIZATION_TIME),
            redundancy_zone_tag: String::new(),
            disable_upgrade_migration: false,
            upgrade_version_tag: String::new(),
            create_index: 0,
            modify_index: 0,
        }
    }
}

impl AutopilotConfig {
    /// The contact threshold in force.
    pub fn last_contact_threshold(&self) -> Duration {
        self.last_contact_threshold
            .unwrap_or(DEFAULT_LAST_CONTACT_THRESHOLD)
    }

    /// How long a failed server waits before cleanup may remove it.
    pub fn server_stabilization_time(&self) -> Duration {
        self.server_stabilization_time
            .unwrap_or(DEFAULT_SERVER_STABILIZATION_TIME)
    }
}
