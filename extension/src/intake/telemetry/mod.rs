//! The Telemetry API: the event model and the HTTP listener that receives it.

pub mod event;
pub mod listener;
pub mod time;

#[cfg(test)]
mod tests;
