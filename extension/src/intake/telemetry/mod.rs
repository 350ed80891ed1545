//! The Telemetry API: the subscription, the HTTP listener that receives the records, and the
//! event model they are decoded into.

pub mod event;
pub mod listener;
pub mod subscription;
pub mod time;

#[cfg(test)]
mod tests;
