//! The Telemetry API: the subscription, the HTTP listener that receives the records, their
//! decoder (the batch in `decode.rs`, each record field by field in `record.rs`, times in
//! `time.rs`), and the event model they are decoded into.

pub(crate) mod decode;
pub(crate) mod event;
pub(crate) mod listener;
pub(crate) mod record;
pub(crate) mod subscription;
pub(crate) mod time;

pub use decode::{DecodedBatch, decode_batch};
pub use event::TelemetryRecord;
pub use record::FieldDrops;

#[cfg(test)]
mod tests;
