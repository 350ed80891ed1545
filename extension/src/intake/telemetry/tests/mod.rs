//! The Telemetry API decoder over the fixtures, and the listener over loopback.

mod decode;
mod listener;
