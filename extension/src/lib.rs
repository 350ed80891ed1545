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

// Configuration: every variable, read once at start-up (bootstrap first, the rest after register).
pub mod config;
// The Extensions API and the Telemetry API subscription: register, next, errors.
pub mod lambda_api;
// Intake: the accept loop, the Telemetry API listener and model, the local OTLP receiver.
pub mod intake;
// Pipeline: the intake queue and the processing task that owns mapping and delivery.
pub mod pipeline;
// Mapping: Telemetry API records to OTLP spans, metrics and logs (pure).
pub mod mapping;
// Export: the buffer, delivery, the exporter and Contrail's own telemetry.
pub mod export;
// Lifecycle: the flush policy (pure) and the next loop that drives it.
pub mod lifecycle;
// Diagnostics: Contrail's own stderr lines and counters.
pub mod diag;
// Wiring: start-up order and the tasks.
pub mod app;
