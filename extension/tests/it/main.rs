//! The `contrail` executable, run as Lambda runs it, against a fake Extensions API and a
//! scripted OTLP backend.

mod environment;
mod export;
mod lifecycle;
mod support;
