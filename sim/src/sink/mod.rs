//! An embedded OTLP/HTTP backend.
//!
//! It receives what extensions export (protobuf or JSON, optionally gzip), keeps it in memory,
//! optionally writes every accepted request as a line of OTLP JSON to a file, and renders what
//! arrived for a person: per trace a waterfall of spans with the trace's log lines underneath,
//! then a metrics summary.
//!
//! It doubles as a scripted backend for delivery tests: [`SinkHandle::set_behaviour`] makes it
//! answer with an error status (503, 429 with `Retry-After`), hold requests without answering,
//! or refuse connections altogether.
//!
//! | part | file |
//! |---|---|
//! | starting it, reading what it received, scripting its answers | `handle` ([`SinkHandle`]) |
//! | the listener, the scripted behaviour, each request's handling | `server` |
//! | the answers: success, `google.rpc.Status` errors | `response` |
//! | content type, content encoding, protobuf and JSON decoding | `decode` |
//! | what was received, its look-ups and duplicate checks | `received` |
//! | the text view: trace waterfalls and the metrics summary | `render` |
//! | a real collector in front of it, for tests | [`rotel`] |

mod decode;
mod handle;
mod received;
mod render;
mod response;
pub mod rotel;
mod server;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use handle::{BehaviourError, SinkHandle, WaitTimeout, start};
pub use received::{
    Attempt, Counters, DuplicateLog, DuplicateSpan, LogEntry, LogKey, MetricEntry, Received,
    SpanEntry, SpanKey,
};
pub use render::{render, render_environments};

/// Memory the sink may use for decoded requests before it stops keeping them (they are still
/// acknowledged and written to the JSON lines file, and counted in [`Counters::over_cap`]).
pub(crate) const DEFAULT_MAX_STORED_BYTES: usize = 256 * 1024 * 1024;

/// Largest request body accepted on the wire (compressed), and largest after decompression.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Where the sink listens and what it does with what it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Address to listen on; port 0 picks a free port.
    pub addr: SocketAddr,
    /// When set, the file is created (truncated if it exists) and every accepted request is
    /// appended to it as one line of JSON:
    /// `{"signal":"traces","received_unix_nano":..,"request":<OTLP JSON>}`.
    pub jsonl_path: Option<PathBuf>,
    /// Cap on the encoded size of all requests kept in memory.
    pub max_stored_bytes: usize,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            jsonl_path: None,
            max_stored_bytes: DEFAULT_MAX_STORED_BYTES,
        }
    }
}

/// How the sink answers, changeable at any time with [`SinkHandle::set_behaviour`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Decode, keep and acknowledge (200).
    #[default]
    Accept,
    /// Answer every export with this status (e.g. 503, or 429 with `Retry-After`) and keep
    /// nothing. The attempt is recorded in [`Received::attempts`].
    Status {
        /// The HTTP status, 300-599.
        code: u16,
        /// A `Retry-After` header, in whole seconds (rounded up).
        retry_after: Option<Duration>,
    },
    /// Read the request, then answer nothing until the behaviour changes (the held request is
    /// then answered according to the new behaviour) or the sink shuts down.
    Hang,
    /// Close the listener and every open connection, so that connecting fails with "connection
    /// refused". Changing to any other behaviour listens again on the same port.
    Refuse,
    /// Read the request, wait this long, then accept it as [`Behaviour::Accept`] does: a
    /// backend that is slow to answer. A request whose client closes the connection before the
    /// answer is neither kept nor answered (the backend processes a request as it answers it).
    Delay(Duration),
}

/// The three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// `/v1/traces`.
    Traces,
    /// `/v1/metrics`.
    Metrics,
    /// `/v1/logs`.
    Logs,
}

impl Signal {
    /// The name used in the JSON lines file: `traces`, `metrics` or `logs`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// The signal served at an OTLP/HTTP path.
    pub(crate) fn from_path(path: &str) -> Option<Signal> {
        match path {
            "/v1/traces" => Some(Signal::Traces),
            "/v1/metrics" => Some(Signal::Metrics),
            "/v1/logs" => Some(Signal::Logs),
            _ => None,
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
