//! The mapper over the Telemetry API fixtures.

mod invocation;
