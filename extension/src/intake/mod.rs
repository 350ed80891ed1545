//! Intake: what comes into Contrail, decoded and queued without waiting.

pub(crate) mod receiver;
pub(crate) mod server;
pub(crate) mod telemetry;
