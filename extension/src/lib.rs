//! Contrail: an AWS Lambda extension that turns what the Lambda Telemetry API reports into
//! OpenTelemetry traces, metrics and logs, and exports them as OTLP.
//!
//! # The data flow
//!
//! ```text
//! Telemetry API ──POST JSON batch──▶ listener ──(decode each record alone, answer 200 at once)──┐
//!                                                                                              ▼
//! function SDK ──OTLP/HTTP──▶ local receiver (127.0.0.1:4318) ───────────────────────▶ intake queue
//!                                                                                              │
//!                                 processing task: mapper (pure: records → OTLP, per request id)
//!                                                                                              ▼
//!                                buffer (bounded in bytes, encoded, drop oldest, drop counters)
//!                                                                                              ▼
//!                      exporter (OTLP/HTTP protobuf or JSON, gzip, keep-alive, deadline-bounded)
//!                                                                                              ▲
//! lifecycle loop ── register, subscribe, GET next ── flush policy decides when ─── Control ─────┘
//! ```
//!
//! The tasks and channels (`docs/adr/0005-process-model.md`):
//!
//! ```text
//! listener ──┐  Intake (bounded mpsc, 64 units; try_send, drop + count when full)
//! receiver ──┴──────────────────────────────▶ processing task ── owns Mapper + Delivery
//! lifecycle ── Control (unbounded mpsc) ────▶   (biased select: control first)
//!           ◀─ oneshot replies ──────────────
//! every task ── "ended/panicked" ─▶ fatal channel ─▶ lifecycle (checked before each next)
//! ```
//!
//! # Where a change goes
//!
//! | to change | edit |
//! |---|---|
//! | a configuration variable | the owning module's `from_env` (`config`, `receiver::config`, `mapping::config`, `export::config`), and `README.md` |
//! | a new Telemetry API event type | `telemetry::event` (the model and the decoder), then `mapping` |
//! | how a record becomes a span, a metric or a log | `mapping` (`mapping::logs` for log lines, `mapping::metrics` for instruments) |
//! | what the local OTLP receiver accepts or answers | `receiver` |
//! | the intake queue and what a full queue does | `pipeline` |
//! | the order of work in the processing task | `processing` |
//! | the export buffer's bound or drop policy | `buffer` |
//! | retries, timeouts, the HTTP client | `export` (`export::conn` for connections) |
//! | when to flush | `flush` (the policy), `lifecycle` (driving it) |
//! | a drop reason or a self-telemetry metric | `stats`, `selftel` |
//! | start-up order, tasks, degrading | `app`, `lifecycle` |

// Lints for this crate beyond the workspace's: every public item is documented, and `pub`
// means reachable from outside (see the public surface below).
#![warn(missing_docs, unreachable_pub)]

// Configuration: every variable, read once at start-up (bootstrap first, the rest after register).
mod config;
// The Extensions API: register, next, error reports, and the subscription call.
mod lambda_api;
// Intake: the accept loop, the Telemetry API (subscription, listener, decoder, model), the local
// OTLP receiver.
mod intake;
// Pipeline: the one currency, the intake queue, the worker that owns mapping and delivery.
mod pipeline;
// Mapping: Telemetry API records to OTLP spans, metrics and logs.
mod mapping;
// Export: the buffer, delivery, the exporter, retry classification, self-telemetry.
mod export;
// Lifecycle: the next loop, the flush policy (pure), the degraded path.
mod lifecycle;
// Diagnostics: Contrail's own stderr lines and counters.
mod diag;
// Wiring: start-up order and the tasks.
mod app;

// The public surface: what the `contrail` binary and the criterion bench
// (`benches/pipeline.rs`) use. Everything else is private to the crate and tested from inside.
pub use app::main;
pub use config::env::{ConfigError, Env};
pub use diag::Stats;
pub use export::{
    Batch, Buffer, Chunks, Compression, DEFAULT_BUFFER_MAX_BYTES, EncodeError, MAX_REQUEST_BYTES,
    Protocol, encode_entries,
};
pub use intake::receiver::merge_resource;
pub use intake::telemetry::{DecodedBatch, TelemetryRecord, decode_batch};
pub use mapping::{InvokeInfo, Mapper, MappingConfig, lambda_resource};
pub use pipeline::{Item, OtlpPayload, Signal, Signals};
