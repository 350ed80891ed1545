//! Export: the buffer, delivery, the exporter and Contrail's own telemetry.

pub(crate) mod body;
pub(crate) mod buffer;
pub(crate) mod config;
pub(crate) mod conn;
pub(crate) mod delivery;
pub(crate) mod exporter;
pub(crate) mod request;
pub(crate) mod retry;
pub(crate) mod self_telemetry;

pub use body::{Chunks, EncodeError, encode_entries};
pub use buffer::{Batch, Buffer};
pub use config::{Compression, DEFAULT_BUFFER_MAX_BYTES, MAX_REQUEST_BYTES, Protocol};
pub(crate) use delivery::FlushOutcome;
pub(crate) use exporter::{ExportResult, Exporter, LatencySink};

#[cfg(test)]
mod tests;
