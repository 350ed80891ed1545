//! Delivery against real backends on loopback.

mod backend;
mod tls;
