//! The CLI commands that talk to an agent over HTTP, one file per area.

pub mod catalog;
pub mod kv;
pub mod misc;
pub mod services;
