//! Intake: what comes into Contrail, decoded and queued without waiting.

pub mod receiver;
pub mod server;
pub mod telemetry;
