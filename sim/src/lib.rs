//! contrail-sim: a local AWS Lambda execution environment.

#![deny(unreachable_pub)]

mod api;
mod config;
mod error;
mod events;
mod ids;
mod lifecycle;
mod process;
pub mod report;
pub mod sink;
mod state;
mod telemetry;

pub use config::{InitType, LogFormat, RunConfig, Schedule};
pub use error::SimError;
pub use lifecycle::run;
pub use report::RunReport;
pub use telemetry::Schema;
