//! Contrail's own diagnostics: its stderr lines ([`log`]) and its counters ([`stats`]).

pub mod log;
pub mod stats;
