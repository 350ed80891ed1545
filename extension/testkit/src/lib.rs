//! What the extension's unit tests and its integration tests share: a scripted OTLP/HTTP
//! backend ([`otlp_backend`]), a plain HTTP/1.1 client ([`http`]) and a gRPC client over
//! HTTP/2 ([`grpc`]).

// A test fake: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod grpc;
pub mod http;
pub mod otlp_backend;
