//! contrail-sim: a local AWS Lambda execution environment.
//!
//! It starts extensions and a runtime as child processes, serves the Runtime, Extensions and
//! Telemetry APIs on loopback with the platform's wire formats, gives the environment Lambda's
//! resources (a CPU share proportional to memory, a memory limit), freezes it between
//! invocations, enforces the init, invoke and shutdown deadlines, and reports what each
//! extension cost. [`run`] takes a [`RunConfig`] and returns a [`RunReport`]; the
//! `contrail-sim` binary is a command line over it, with an embedded OTLP backend ([`sink`]).
//!
//! # Crate map
//!
//! ```text
//!             RunConfig ──▶ lifecycle::run ──▶ RunReport
//!                              │  plan → init (restore) → invoke … → shutdown
//!                              ▼
//!   child processes ◀── process (spawn, capture output, SIGSTOP/SIGCONT, /proc)
//!        │  HTTP on AWS_LAMBDA_RUNTIME_API
//!        ▼
//!   api (runtime, extensions, telemetry) ──▶ state (what the environment knows)
//!                                               │ platform events (events), output lines
//!                                               ▼
//!                              telemetry: hub ──▶ subscriber ──▶ transport ──▶ extension
//! ```
//!
//! | Lambda phase or API | module |
//! |---|---|
//! | the launch plan: programs, extensions, variables | `lifecycle::plan` |
//! | INIT and SnapStart RESTORE | `lifecycle::init` |
//! | INVOKE, freeze and thaw between invocations | `lifecycle::invoke`, `lifecycle::environment` |
//! | SHUTDOWN | `lifecycle::shutdown` |
//! | Runtime API (`/2018-06-01/runtime`) | `api::runtime` |
//! | the container credentials endpoint (SnapStart) | `api::credentials` |
//! | Extensions API (`/2020-01-01/extension`) | `api::extensions` |
//! | Telemetry API (`/2022-07-01/telemetry`): subscribing | `api::telemetry`, `telemetry::subscription` |
//! | Telemetry API: the records, by schema version | `events`, `telemetry` |
//! | Telemetry API: fan-out, buffering, freeze, retries, drops | `telemetry::hub`, `telemetry::subscriber` |
//! | Telemetry API: HTTP and TCP destinations | `telemetry::transport` |
//! | one environment's shared state | `state` |
//! | child processes and their measurement | `process` |
//! | Lambda's resource model: CPU share, memory limit, cgroup freezer | `resources` |
//! | request ids, trace headers, timestamps | `ids` |
//! | what a run measured | [`report`] |
//! | an OTLP/HTTP backend to export to (and a scripted one for tests) | [`sink`] |
//! | `contrail-sim tune`: per memory size, durations, the extensions' share and the cost | [`tune`] |
//! | `contrail-sim scale`: many environments under a load profile, concurrency limits, throttles | [`fleet`], `lifecycle::fleet` |
//!
//! To change what a phase does, edit its `lifecycle` file; a platform record, `events`; what an
//! API answers, its `api` file; how telemetry reaches a subscriber, `telemetry`.

#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod api;
mod config;
mod error;
mod events;
pub mod fleet;
mod ids;
mod lifecycle;
pub mod ports;
mod process;
pub mod report;
mod resources;
pub mod sink;
mod state;
mod telemetry;
pub mod tune;

pub use config::{AwsCredentials, InitType, LogFormat, RunConfig, Schedule};
pub use error::SimError;
pub use lifecycle::{run, run_fleet};
pub use report::RunReport;
pub use resources::{CgroupUse, CgroupVersion, FreezeWith, InitCpu, ResourceModel};
pub use telemetry::Schema;
