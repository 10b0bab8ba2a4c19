//! The CA configuration (`/v1/connect/ca/configuration`), with Consul's defaults and validation.
//!
//! One departure, written down: `LeafCertTTL` may go below Consul's 1 h minimum when `AllowShortLeafTTL`-style test
//! overrides are wanted; we accept any TTL of at least 2 s but only when the agent runs in dev mode (the caller
//! passes `min_leaf_ttl`), so production keeps Consul's bounds.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use weft_types::duration::{format_duration, parse_duration};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaConfig {
    pub provider: String,
    pub leaf_cert_ttl: Duration,
    pub intermediate_cert_ttl: Duration,
    pub root_cert_ttl: Duration,
    pub private_key_type: String,
    pub private_key_bits: u32,
    /// A supplied CA key (PEM); empty means "generate one".
    pub private_key: String,
    /// A supplied root certificate (PEM), which needs `private_key`.
    pub root_cert: String,
    pub force_without_cross_signing: bool,
}

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            provider: "consul".into(),
            leaf_cert_ttl: Duration::from_secs(72 * 3600),
            intermediate_cert_ttl: Duration::from_secs(8760 * 3600),
            root_cert_ttl: Duration::from_secs(87600 * 3600),
            private_key_type: "ec".into(),
            private_key_bits: 256,
            private_key: String::new(),
            root_cert: String::new(),
            force_without_cross_signing: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// The JSON body of GET/PUT `/v1/connect/ca/configuration`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CaConfigWire {
    pub provider: String,
    pub config: serde_json::Map<String, serde_json::Value>,
    pub state: Option<serde_json::Value>,
    pub force_without_cross_signing: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

fn get_duration(
    map: &serde_json::Map<String, serde_json::Value>,
    keys: &[&str],
    default: Duration,
) -> Result<Duration, ConfigError> {
    match find(map, keys) {
        None => Ok(default),
        Some(serde_json::Value::String(s)) => {
            parse_duration(s).map_err(|_| err(format!("{}: invalid duration {s:?}", keys[0])))
        }
        Some(serde_json::Value::Number(n)) => Ok(Duration::from_nanos(n.as_u64().unwrap_or(0))),
        Some(other) => Err(err(format!(
            "{}: expected a duration, got {other}",
            keys[0]
        ))),
    }
}

/// Looks a config key up in CamelCase or snake_case.
fn find<'a>(
    map: &'a serde_json::Map<String, serde_json::Value>,
    keys: &[&str],
) -> Option<&'a serde_json::Value> {
    let canon = |k: &str| k.to_ascii_lowercase().replace('_', "");
    let wanted: Vec<String> = keys.iter().map(|k| canon(k)).collect();
    map.iter()
        .find(|(k, _)| wanted.contains(&canon(k)))
        .map(|(_, v)| v)
}

impl CaConfig {
    /// Parses a PUT body over `base` (unset keys keep their current values) and validates it.
    pub fn from_wire(
        wire: &CaConfigWire,
        base: &CaConfig,
        min_leaf_ttl: Duration,
    ) -> Result<CaConfig, ConfigError> {
        let provider = if wire.provider.is_empty() {
            base.provider.clone()
        } else {
            wire.provider.clone()
        };
        if provider != "consul" {
            return Err(err(format!("Unknown CA provider {provider:?}: only the built-in \"consul\" provider is available")));
        }
        let m = &wire.config;
        let string = |keys: &[&str]| -> Result<Option<String>, ConfigError> {
            match find(m, keys) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(err(format!("{}: expected a string, got {other}", keys[0]))),
            }
        };
        let bits = match find(m, &["PrivateKeyBits"]) {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| err(format!("PrivateKeyBits: expected a number, got {v}")))?
                    as u32,
            ),
        };
        let key_type = string(&["PrivateKeyType"])?;
        let cfg = CaConfig {
            provider,
            leaf_cert_ttl: get_duration(m, &["LeafCertTTL"], base.leaf_cert_ttl)?,
            intermediate_cert_ttl: get_duration(
                m,
                &["IntermediateCertTTL"],
                base.intermediate_cert_ttl,
            )?,
            root_cert_ttl: get_duration(m, &["RootCertTTL"], base.root_cert_ttl)?,
            private_key_bits: bits.unwrap_or(match key_type.as_deref() {
                Some("rsa") => 2048,
                Some(_) => 256,
                None => base.private_key_bits,
            }),
            private_key_type: key_type.unwrap_or_else(|| base.private_key_type.clone()),
            private_key: string(&["PrivateKey"])?.unwrap_or_default(),
            root_cert: string(&["RootCert"])?.unwrap_or_default(),
            force_without_cross_signing: wire.force_without_cross_signing,
        };
        cfg.validate(min_leaf_ttl)?;
        Ok(cfg)
    }

    pub fn validate(&self, min_leaf_ttl: Duration) -> Result<(), ConfigError> {
        let hours = |h: u64| Duration::from_secs(h * 3600);
        if self.leaf_cert_ttl < min_leaf_ttl {
            return Err(err(format!(
                "LeafCertTTL must be at least {}",
                format_duration(min_leaf_ttl)
            )));
        }
        if self.leaf_cert_ttl > hours(8760) {
            return Err(err("LeafCertTTL must be less than 8760h0m0s"));
        }
        if self.intermediate_cert_ttl < hours(3) {
            return Err(err("IntermediateCertTTL must be at least 3h0m0s"));
        }
        if self.intermediate_cert_ttl < self.leaf_cert_ttl * 3 {
            return Err(err(format!(
                "IntermediateCertTTL must be greater than 3 times LeafCertTTL ({}).",
                format_duration(self.leaf_cert_ttl * 3)
            )));
        }
        if self.root_cert_ttl < self.intermediate_cert_ttl {
            return Err(err(
                "RootCertTTL must be greater than or equal to IntermediateCertTTL",
            ));
        }
        match (self.private_key_type.as_str(), self.private_key_bits) {
            ("ec", 256 | 384) => {}
            ("ec", 224 | 521) => {
                return Err(err(format!(
                    "PrivateKeyBits {} for ec keys is not supported by this build (use 256 or 384)",
                    self.private_key_bits
                )))
            }
            ("ec", b) => return Err(err(format!("EC key length must be one of (224, 256, 384, 521) bits, got {b}"))),
            ("rsa", 2048 | 4096) if !self.private_key.is_empty() => {}
            ("rsa", 2048 | 4096) => {
                return Err(err("generating RSA CA keys is not supported by this build: supply PrivateKey and RootCert"))
            }
            ("rsa", b) => return Err(err(format!("RSA key length must be 2048 or 4096 bits, got {b}"))),
            (t, _) => return Err(err(format!("unknown private key type {t:?}: must be \"ec\" or \"rsa\""))),
        }
        if !self.root_cert.is_empty() && self.private_key.is_empty() {
            return Err(err(
                "must provide a private key when specifying a root certificate",
            ));
        }
        Ok(())
    }

    pub fn to_wire(&self, create_index: u64, modify_index: u64) -> CaConfigWire {
        let mut config = serde_json::Map::new();
        config.insert(
            "LeafCertTTL".into(),
            format_duration(self.leaf_cert_ttl).into(),
        );
        config.insert(
            "IntermediateCertTTL".into(),
            format_duration(self.intermediate_cert_ttl).into(),
        );
        config.insert(
            "RootCertTTL".into(),
            format_duration(self.root_cert_ttl).into(),
        );
        config.insert("RotationPeriod".into(), "2160h0m0s".into());
        config.insert(
            "PrivateKeyType".into(),
            self.private_key_type.clone().into(),
        );
        config.insert("PrivateKeyBits".into(), self.private_key_bits.into());
        CaConfigWire {
            provider: self.provider.clone(),
            config,
            state: None,
            force_without_cross_signing: self.force_without_cross_signing,
            create_index,
            modify_index,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wire(v: serde_json::Value) -> CaConfigWire {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_and_validation() {
        let base = CaConfig::default();
        let hour = Duration::from_secs(3600);
        let ok = CaConfig::from_wire(
            &wire(json!({"Provider":"consul","Config":{"LeafCertTTL":"24h"}})),
            &base,
            hour,
        );
        assert_eq!(ok.unwrap().leaf_cert_ttl, 24 * hour);
        for (cfg, want) in [
            (
                json!({"Config":{"LeafCertTTL":"10m"}}),
                "LeafCertTTL must be at least",
            ),
            (
                json!({"Config":{"LeafCertTTL":"9000h"}}),
                "LeafCertTTL must be less than",
            ),
            (
                json!({"Config":{"IntermediateCertTTL":"100h"}}),
                "3 times LeafCertTTL",
            ),
            (
                json!({"Config":{"RootCertTTL":"1000h"}}),
                "RootCertTTL must be greater",
            ),
            (
                json!({"Config":{"PrivateKeyType":"ec","PrivateKeyBits":123}}),
                "EC key length",
            ),
            (
                json!({"Config":{"PrivateKeyType":"dsa"}}),
                "unknown private key type",
            ),
            (
                json!({"Config":{"RootCert":"-----BEGIN CERTIFICATE-----"}}),
                "must provide a private key",
            ),
            (json!({"Provider":"vault"}), "Unknown CA provider"),
            (json!({"Config":{"LeafCertTTL":"soon"}}), "invalid duration"),
        ] {
            let e = CaConfig::from_wire(&wire(cfg.clone()), &base, hour)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{cfg}: {e}");
        }
        let short = CaConfig::from_wire(
            &wire(json!({"Config":{"leaf_cert_ttl":"5s"}})),
            &base,
            Duration::from_secs(2),
        );
        assert_eq!(short.unwrap().leaf_cert_ttl, Duration::from_secs(5));
    }
}
