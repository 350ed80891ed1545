//! The pipeline between intake and export: the intake queue and the worker that owns mapping
//! and delivery.

pub mod otlp;
pub mod queue;
pub mod stages;
pub mod worker;

pub use otlp::{Item, OtlpPayload, Signal, Signals};
pub use queue::{Intake, IntakeSender, Offered, intake_queue};
