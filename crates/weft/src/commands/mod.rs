//! The CLI commands that talk to an agent over HTTP, one file per area.

pub mod acl;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod connect;
pub mod demo;
pub mod event;
pub mod intention;
pub mod keyring;
pub mod kv;
pub mod misc;
pub mod operator;
pub mod rtt;
pub mod services;
pub mod snapshot;
pub mod tls;
