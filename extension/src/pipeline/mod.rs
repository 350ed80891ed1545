//! The pipeline between intake and export: the intake queue and the worker that owns mapping
//! and delivery.

pub(crate) mod otlp;
pub(crate) mod queue;
pub(crate) mod stages;
pub(crate) mod worker;

pub use otlp::{Item, OtlpPayload, Signal, Signals};
pub(crate) use queue::{Intake, IntakeSender, Offered, intake_queue};
