//! Contrail's own diagnostics: its stderr lines and its counters.
//!
//! - Lines: `diag::warn!("…")` (also `error!`, `info!`, `debug!`), and for anything that can
//!   repeat a static [`Once`] or [`Every`]. The level is `CONTRAIL_LOG_LEVEL`
//!   ([`Level::from_env`]).
//! - Counters: [`Stats`], what Contrail received, exported and dropped ([`DropReason`]).
//!
//! Lambda sends an extension's stderr back to it as `extension` records: never a line per
//! record.

mod log;
mod stats;

pub use log::{Every, LOG_LEVEL_VAR, Level, Once, enabled, level, set_level};
pub(crate) use log::{debug, error, info, warn, write};
pub use stats::{DropReason, Stats};
