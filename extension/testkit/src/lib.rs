//! Fakes the extension's unit tests and its integration tests share.

// A test fake: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod otlp_backend;
