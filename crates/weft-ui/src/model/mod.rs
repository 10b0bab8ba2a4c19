//! View models: what each page shows, computed from the store into owned values (no HTML, no I/O), so templates
//! stay dumb and the rules (folding sidecars, health, edge decisions) are tested on their own.

pub mod catalog;
pub mod health;
pub mod intentions;
pub mod kv;
pub mod topology;
