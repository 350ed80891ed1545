//! The emulator's integration tests, one binary: everything that needs sockets, child
//! processes or the `contrail-sim` executable. Pure code is tested next to it, in `src`.
//!
//! Two tiers (see [`support`]): a plain `cargo test` runs what needs only what cargo builds
//! (the sink, the binary's errors, the Rust runtime and extension clients of `examples/`);
//! the tests marked `#[ignore = "needs scripts/install-test-deps.sh"]` also need the Python
//! venv (awslambdaric, the OpenTelemetry SDK, rotel) or Node's aws-lambda-ric, and run with
//! `cargo test -p contrail-sim -- --include-ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod cli;
mod fleet;
mod lifecycle;
mod modes;
mod resources;
mod runtimes;
mod sink_behaviour;
mod sink_http;
mod sink_render;
mod sink_rotel;
