//! What can stop a run.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a run could not start or complete. Each message is one line a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("extension {0} does not exist")]
    ExtensionNotFound(PathBuf),
    #[error("extension {0} is not an executable file (chmod +x?)")]
    ExtensionNotExecutable(PathBuf),
    #[error("cannot read extensions folder {dir}: {source}")]
    ExtensionsDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} extensions: Lambda allows at most 10")]
    TooManyExtensions(usize),
    #[error("no runtime command given")]
    NoRuntimeCommand,
    #[error("runtime command {0:?} not found")]
    RuntimeNotFound(String),
    #[error("runtime command {0:?} is not executable")]
    RuntimeNotExecutable(String),
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("address {0} is already in use (choose another with --listen)")]
    PortInUse(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("extension {name} crashed during init ({status}): Extension.Crash")]
    ExtensionCrashedDuringInit { name: String, status: String },
    #[error("extension {name} reported an init error: {error_type}")]
    ExtensionInitError { name: String, error_type: String },
    #[error("runtime init error: {error_type}")]
    RuntimeInitError { error_type: String },
    #[error("runtime exited during init ({status}): Runtime.ExitError")]
    RuntimeExitedDuringInit { status: String },
    #[error("init did not finish within {limit_ms} ms: still waiting for {waiting_for}")]
    InitTimeout { limit_ms: u128, waiting_for: String },
    #[error("snapshot restore failed: {error_type}")]
    RestoreError { error_type: String },
}
