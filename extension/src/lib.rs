//! Contrail: an AWS Lambda extension that turns what the Lambda Telemetry API reports into
//! OpenTelemetry traces, metrics and logs, and exports them as OTLP.

pub mod env;
pub mod pipeline;
pub mod stats;
pub mod telemetry;
