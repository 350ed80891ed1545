//! The emulator's integration tests, one binary: the socket and process suites.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod lifecycle;
mod modes;
mod runtimes;
mod sink_behaviour;
mod sink_http;
mod sink_render;
mod sink_rotel;
mod support;
