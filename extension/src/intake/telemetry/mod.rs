//! The Telemetry API: the subscription, the HTTP listener that receives the records, their
//! decoder, and the event model they are decoded into.

pub mod decode;
pub mod event;
pub mod listener;
pub mod subscription;
pub mod time;

#[cfg(test)]
mod tests;
