//! The Telemetry API: the subscription, the HTTP listener that receives the records, their
//! decoder, and the event model they are decoded into.

pub(crate) mod decode;
pub(crate) mod event;
pub(crate) mod listener;
pub(crate) mod subscription;
pub(crate) mod time;

pub use decode::{DecodedBatch, decode_batch};
pub use event::TelemetryRecord;

#[cfg(test)]
mod tests;
