//! contrail-sim: a local AWS Lambda execution environment.

pub mod api;
pub mod config;
pub mod error;
pub mod events;
pub mod ids;
pub mod lifecycle;
pub mod process;
pub mod report;
pub mod sink;
pub mod state;
pub mod telemetry;

pub use config::{InitType, LogFormat, RunConfig, Schedule};
pub use error::SimError;
pub use lifecycle::run;
pub use report::RunReport;
