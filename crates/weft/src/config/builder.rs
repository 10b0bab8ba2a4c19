//! Flags, files and fragments merged in one place, then validated once into a [`RuntimeConfig`].
//!
//! Order, later winning: the files (`-config-dir` contents in lexical order, then `-config-file`s), the `-hcl`
//! fragments, the environment's `WEFT_LOCAL_CONFIG` (or `CONSUL_LOCAL_CONFIG`, as Consul's container image reads it:
//! a JSON or HCL fragment, which keeps secrets such as the gossip key off the command line), then the command line's
//! flags. Lists append across sources.

use super::file::Config;
use super::flags::AgentFlags;
use super::runtime::{validate, RuntimeConfig};
use super::sources::{self, Decoded, Format};
use serde_json::{Map, Value};

/// Why a configuration was refused: every problem found, each naming its source and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// Environment variables holding a configuration fragment, read in this order.
const ENV_CONFIG: [&str; 2] = ["CONSUL_LOCAL_CONFIG", "WEFT_LOCAL_CONFIG"];

/// Gathers configuration sources; [`ConfigBuilder::build_and_validate`] turns them into a [`RuntimeConfig`].
pub struct ConfigBuilder {
    flags: AgentFlags,
    sources: Vec<Decoded>,
    errors: Vec<String>,
}

impl ConfigBuilder {
    /// Reads every source the flags name (files, directories, fragments), the environment, and the flags themselves.
    pub fn from_flags(flags: &AgentFlags) -> ConfigBuilder {
        ConfigBuilder::from_flags_and_env(flags, |name| std::env::var(name).ok())
    }

    /// [`ConfigBuilder::from_flags`] with the environment given (tests pass their own).
    pub fn from_flags_and_env(
        flags: &AgentFlags,
        env: impl Fn(&str) -> Option<String>,
    ) -> ConfigBuilder {
        let mut builder = ConfigBuilder {
            flags: flags.clone(),
            sources: Vec::new(),
            errors: Vec::new(),
        };
        let forced = match flags.config_format.as_deref().map(Format::parse) {
            None => None,
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => {
                builder.errors.push(e);
                None
            }
        };
        match sources::list_files(&flags.config_file, &flags.config_dir, forced) {
            Ok(paths) => {
                for path in paths {
                    builder.add(sources::read_file(&path, forced));
                }
            }
            Err(e) => builder.errors.push(e),
        }
        for (i, fragment) in flags.hcl.iter().enumerate() {
            builder.add(sources::decode_text(
                &format!("-hcl[{i}]"),
                fragment,
                Format::Hcl,
            ));
        }
        for name in ENV_CONFIG {
            if let Some(text) = env(name).filter(|t| !t.trim().is_empty()) {
                // JSON when it looks like JSON, else HCL (which also reads JSON objects).
                let format = if text.trim_start().starts_with('{') {
                    Format::Json
                } else {
                    Format::Hcl
                };
                builder.add(sources::decode_text(name, &text, format));
            }
        }
        match flags.to_source() {
            Ok(value) => builder.add(sources::decode_value_source("command line", value)),
            Err(e) => builder.errors.push(e),
        }
        builder
    }

    /// Adds one more source after those already read (tests and `weft validate` use it for loose files).
    pub fn add(&mut self, source: Result<Decoded, Vec<String>>) {
        match source {
            Ok(decoded) => self.sources.push(decoded),
            Err(errors) => self.errors.extend(errors),
        }
    }

    /// Merges the sources and validates the result; `Err` lists every problem found, in every source.
    pub fn build_and_validate(self) -> Result<RuntimeConfig, ConfigError> {
        self.build().map_err(|problems| ConfigError { problems })
    }

    fn build(self) -> Result<RuntimeConfig, Vec<String>> {
        let mut errors = self.errors;
        // A source that failed to decode is missing from the merge: checking the rest would report problems that
        // are only echoes of the first.
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut merged = Map::new();
        let mut definitions = Decoded::default();
        for source in self.sources {
            sources::merge(&mut merged, source.value);
            definitions.services.extend(source.services);
            definitions.checks.extend(source.checks);
        }
        let config: Config =
            match sources::decode_config("merged config", Value::Object(merged.clone())) {
                Ok(c) => c,
                Err(e) => {
                    errors.push(e);
                    Config::default()
                }
            };
        if !errors.is_empty() {
            return Err(errors);
        }
        validate(&self.flags, &merged, config, definitions)
    }
}
