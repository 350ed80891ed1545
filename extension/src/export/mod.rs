//! Export: from the buffered OTLP data to the backend, one file per role, in the order a flush
//! goes through them.
//!
//! | file | role |
//! |---|---|
//! | `delivery.rs` | [`delivery::Delivery`]: push (never blocks), flush by a deadline, the last flush |
//! | `delivery/self_report.rs` | when the self-telemetry snapshot is due, the snapshot, its own request |
//! | `buffer.rs` | the bounded, encoded export buffer: drop policy, batches, accounting |
//! | `body.rs` | request bodies from buffered entries (protobuf, gzip, JSON); response bodies |
//! | `exporter.rs` | one request, retried while the deadline allows |
//! | `exporter/signed.rs` | its AWS side: secret values in headers, credentials, what follows a refusal of either |
//! | `breaker.rs` | per endpoint: health, round trips, and the circuit breaker (pure) |
//! | `cut.rs` | the stop signal of a flush that overlaps the function's work |
//! | `failure.rs` | what went wrong beyond the status code (a reset, a stall, a name that does not resolve, a bad `Retry-After`, a huge body): named, counted, said once |
//! | `retry.rs` | what an answer means (pure classification), `Retry-After`, backoff |
//! | `request.rs` | the request of an attempt: origin-form target, `Host`, headers |
//! | `conn.rs` | kept-alive HTTP/1.1 connections, TLS, closed at once when abandoned |
//! | `self_telemetry.rs` | Contrail's own `contrail.*` metrics and the drop warning |
//! | `config.rs` | `OTEL_EXPORTER_OTLP_*` and `CONTRAIL_BUFFER_MAX_BYTES` |
//! | `aws/` | SigV4, the function's credentials, AWS endpoint limits and refusals, secrets |

pub(crate) mod aws;
pub(crate) mod body;
pub(crate) mod breaker;
pub(crate) mod buffer;
pub(crate) mod config;
pub(crate) mod conn;
pub(crate) mod cut;
pub(crate) mod delivery;
pub(crate) mod exporter;
pub(crate) mod failure;
pub(crate) mod request;
pub(crate) mod retry;
pub(crate) mod self_telemetry;

pub use body::{Chunks, EncodeError, encode_entries};
pub use buffer::{Batch, Buffer};
pub use config::{Compression, DEFAULT_BUFFER_MAX_BYTES, MAX_REQUEST_BYTES, Protocol};
pub(crate) use delivery::FlushOutcome;
pub(crate) use exporter::{ExportResult, Exporter, LatencySink, Outcome};

#[cfg(test)]
mod tests;
