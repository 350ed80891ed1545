//! The pipeline between intake and export: the intake queue and the worker that owns mapping
//! and delivery.

pub mod queue;
pub mod worker;

pub use queue::{Intake, IntakeSender, Offered, OtlpPayload, Signals, intake_queue};
