//! What the extension's unit tests and its integration tests share: a scripted OTLP/HTTP
//! backend ([`otlp_backend`]) and a plain HTTP/1.1 client ([`http`]).

// A test fake: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod http;
pub mod otlp_backend;
