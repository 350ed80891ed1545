//! Contrail: an AWS Lambda extension that turns what the Lambda Telemetry API reports into
//! OpenTelemetry traces, metrics and logs, and exports them as OTLP.

pub mod app;
pub mod buffer;
pub mod config;
pub mod delivery;
pub mod env;
pub mod export;
pub mod flush;
pub mod http_server;
pub mod lambda_api;
pub mod lifecycle;
pub mod log;
pub mod mapping;
pub mod pipeline;
pub mod processing;
pub mod receiver;
pub mod selftel;
pub mod stats;
pub mod telemetry;
