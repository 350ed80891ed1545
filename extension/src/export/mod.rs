//! Export: the buffer, delivery, the exporter and Contrail's own telemetry.

pub mod body;
pub mod buffer;
pub mod config;
pub mod conn;
pub mod delivery;
pub mod exporter;
pub mod request;
pub mod retry;
pub mod self_telemetry;

pub use delivery::FlushOutcome;
pub use exporter::{ExportResult, Exporter, LatencySink};
pub use retry::{BACKOFF_MAX, BACKOFF_START};

#[cfg(test)]
mod tests;
