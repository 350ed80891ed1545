//! Intake: what comes into Contrail, decoded and queued without waiting on anything
//! downstream.
//!
//! | module | role |
//! |---|---|
//! | `telemetry` | the Telemetry API: the subscription, the listener Lambda POSTs to, the decoder, the event model |
//! | `receiver` | the local OTLP receivers a function's own SDK exports to: HTTP, and gRPC in `receiver/grpc` |
//! | `environment` | what the environment's processes use, read from `/proc` at the start and end of each invocation |
//! | `server.rs` | the accept loop they all share |

pub(crate) mod environment;
pub(crate) mod receiver;
pub(crate) mod server;
pub(crate) mod telemetry;
