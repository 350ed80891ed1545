//! Contrail's own diagnostics: its stderr lines and its counters.
//!
//! - Lines: `diag::warn!("…")` (also `error!`, `info!`, `debug!`), and for anything that can
//!   repeat a static [`Once`] or [`Every`]. The level is `CONTRAIL_LOG_LEVEL`
//!   ([`Level::from_env`]).
//! - Counters: [`Stats`], what Contrail received, exported and dropped ([`DropReason`]), and
//!   the fields of records it had to give up ([`FieldReason`]).
//!
//! Lambda sends an extension's stderr back to it as `extension` records: never a line per
//! record.

mod log;
mod stats;

pub(crate) use log::{Every, Level, Once, set_level};
pub(crate) use log::{debug, error, info, warn, write};
pub use stats::Stats;
pub(crate) use stats::{DropReason, ExportFault, FieldReason};

// For the configuration tests, which check every variable against README.md, and the
// configuration fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use log::LOG_LEVEL_VAR;
