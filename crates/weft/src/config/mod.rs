//! Agent configuration: one path from what the operator wrote to the settings the agent runs with.
//!
//! [`AgentFlags`] (the command line) names the files and directories to read and sets keys of its own;
//! [`ConfigBuilder`] reads every source, decodes each against Consul's schema ([`file::Config`], unknown keys
//! refused) and merges them; [`ConfigBuilder::build_and_validate`] fills in defaults and checks the whole into one
//! immutable [`RuntimeConfig`], built once and passed down. Nothing deeper reads files or the environment.

mod builder;
pub mod file;
mod flags;
mod runtime;
mod sockaddr;
mod sources;

pub use builder::{ConfigBuilder, ConfigError};
pub use flags::AgentFlags;
pub use runtime::{RuntimeConfig, WanSettings};

#[cfg(test)]
mod tests;
