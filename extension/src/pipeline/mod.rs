//! The pipeline between intake and export.
//!
//! | file | role |
//! |---|---|
//! | `otlp.rs` | the one currency: [`Signal`], [`Signals`], [`Item`], [`OtlpPayload`], one unit for records |
//! | `queue.rs` | the bounded intake queue; its producers never wait |
//! | `held.rs` | the byte bound of the local receivers' requests, held until the worker has mapped them |
//! | `worker.rs` | the task that owns mapping and delivery: its control messages, handle and replies, the waits for `runtimeDone`/`report`, the buffer gauge |
//! | `stages.rs` | the production stages: the mapper, then delivery |

pub(crate) mod held;
pub(crate) mod otlp;
pub(crate) mod queue;
pub(crate) mod stages;
pub(crate) mod worker;

pub(crate) use held::{Held, IntakeBudget};
pub use otlp::{Item, OtlpPayload, Signal, Signals};
pub(crate) use queue::{Intake, IntakeSender, Offered, intake_queue};
