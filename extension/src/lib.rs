//! Contrail: an AWS Lambda extension that turns what the Lambda Telemetry API reports into
//! OpenTelemetry traces, metrics and logs, and exports them as OTLP.
//!
//! # The data flow
//!
//! One folder per stage, declared below in this order (`docs/adr/0008-source-layout.md`):
//!
//! ```text
//!   intake                                  pipeline               mapping     export
//! Telemetry API ─POST─▶ listener ──────┐
//!   (each record alone; 200 at once)   │
//! function SDK ─OTLP/HTTP─▶ receiver ──┼──▶ queue ───▶ worker ───▶ Mapper ───▶ Delivery ───▶ backend
//! function SDK ─OTLP/gRPC─▶ receiver ──┘   (bounded,    (owns       (records    (buffer, exporter,
//!                                          try_send)    mapping     → OTLP,     retry, request,
//!                                                       and         no I/O)     self-telemetry)
//!                                                       delivery)
//!                                                      ▲
//! lifecycle (next loop, flush policy) ── Control ──────┘
//! ```
//!
//! The tasks and channels (`docs/adr/0005-process-model.md`):
//!
//! ```text
//! listener ──┐  Intake (bounded mpsc, 64 units; try_send, drop + count when full)
//! receivers ─┴──────────────────────────────▶ worker ── owns Mapper + Delivery
//! lifecycle ── Control (unbounded mpsc) ────▶   (biased select: control first)
//!           ◀─ oneshot replies, buffer gauge ─
//! every task ── "ended/panicked" ─▶ fatal channel ─▶ lifecycle (checked before each next)
//! ```
//!
//! # Where a change goes
//!
//! | to change | edit |
//! |---|---|
//! | a configuration variable | the owning component's `from_env` (listed in `config/mod.rs`), and `README.md` (a test checks) |
//! | what is subscribed to | `intake/telemetry/subscription.rs` |
//! | a new Telemetry API event type | `intake/telemetry/event.rs` (the model), then one file in `mapping/` |
//! | how a record becomes a span, a metric or a log | `mapping/` (`invocation.rs`, `spans.rs`, `phases.rs`, `log_context.rs`, `platform_logs.rs`, `logs.rs`, `instruments.rs`, `metrics.rs`) |
//! | how a cost is estimated, and its price variables | `mapping/cost.rs` (pure); the list prices in `mapping/prices.rs` (shared with `contrail-sim tune`) |
//! | how environment utilization, idle gaps and unused init are counted | `mapping/utilization.rs` (pure) |
//! | the cold-start breakdown under the init span | `mapping/cold_start.rs` (pure); Contrail's own start and first `next` come from `app.rs` and `lifecycle/mod.rs` |
//! | when cost and utilization are recorded | `mapping/environment.rs` |
//! | what the local OTLP receiver accepts or answers | `intake/receiver/handler.rs` (HTTP), `intake/receiver/grpc/call.rs` (gRPC) |
//! | how the gRPC receiver treats a connection (HTTP/2 settings, HTTP/1.1 or TLS spoken to it) | `intake/receiver/grpc/mod.rs` |
//! | the intake queue and what a full queue does | `pipeline/queue.rs` |
//! | the order of work between intake, mapping and export | `pipeline/worker.rs` |
//! | the export buffer's bound or drop policy | `export/buffer.rs` |
//! | which answers are retried, and how long to wait | `export/retry.rs` |
//! | when a sick backend stops costing invocations, probes, backoff (ADR 0014) | `export/breaker.rs` (pure), `export/delivery.rs` |
//! | the request line, `Host` and headers of an export | `export/request.rs` |
//! | SigV4, credentials, AWS endpoint limits and refusals, secrets from Secrets Manager/SSM | `export/aws/` |
//! | connections and TLS | `export/conn.rs` |
//! | what is read from `/proc` of the function's processes (CPU, memory, connections), and which processes are the function's | `intake/environment/` (`procfs.rs` parses, `mod.rs` discovers and reads); its span attributes and metrics in `mapping/usage.rs` |
//! | when to flush | `lifecycle/policy.rs` (pure; its variables too) |
//! | what happens after an internal failure | `lifecycle/degrade.rs` |
//! | a drop reason or a self-telemetry metric | `diag/stats.rs`, `export/self_telemetry.rs` |
//! | start-up order, the tasks | `app.rs` |
//!
//! Tests of private code sit beside it inside `src` (`…/tests.rs`, `…/tests/`); `tests/it` runs
//! the real binary; tests that need tools from `scripts/install-test-deps.sh` are `#[ignore]`d
//! and run with `--include-ignored`.

// Lints for this crate beyond the workspace's: every public item is documented, and `pub`
// means reachable from outside (see the public surface below).
#![warn(missing_docs, unreachable_pub)]

// Configuration: every variable, read once at start-up (bootstrap first, the rest after register).
mod config;
// The Extensions API: register, next, error reports, and the subscription call.
mod lambda_api;
// Intake: the accept loop, the Telemetry API (subscription, listener, decoder, model), the local
// OTLP receivers (HTTP and gRPC).
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
// The fuzz targets' entry points (`fuzz/`), only with the `fuzzing` feature.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

// The public surface: what the `contrail` binary and the criterion bench
// (`benches/pipeline.rs`) use. Everything else is private to the crate and tested from inside.
pub use app::main;
pub use config::env::{ConfigError, Env};
pub use diag::Stats;
pub use export::aws::sigv4::{Credentials, Signed, Signer, sha256_hex};
pub use export::{
    Batch, Buffer, Chunks, Compression, DEFAULT_BUFFER_MAX_BYTES, EncodeError, MAX_REQUEST_BYTES,
    Protocol, encode_entries,
};
pub use intake::environment::{ByPort, Connections, EnvironmentConfig, InitUsage, Sampler, Usage};
pub use intake::receiver::merge_resource;
pub use intake::telemetry::{DecodedBatch, FieldDrops, TelemetryRecord, decode_batch};
pub use mapping::{InvokeInfo, Mapper, MappingConfig, lambda_resource};
pub use pipeline::{Item, OtlpPayload, Signal, Signals};
