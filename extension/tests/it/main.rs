//! The `contrail` executable, run as Lambda runs it, against a fake Extensions API and a
//! scripted OTLP backend.

mod breaker;
mod environment;
mod export;
mod faults;
mod flood;
mod lifecycle;
mod support;
