//! What can stop a run: a configuration Lambda would refuse, a program that cannot start, or
//! an init (or SnapStart restore) that fails the way Lambda's does.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a run could not start or complete. Each message is one line a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A setting Lambda would refuse (the message says which).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// An extension path that does not exist.
    #[error("extension {0} does not exist")]
    ExtensionNotFound(PathBuf),
    /// An extension that is not an executable file.
    #[error("extension {0} is not an executable file (chmod +x?)")]
    ExtensionNotExecutable(PathBuf),
    /// The extensions folder cannot be read.
    #[error("cannot read extensions folder {dir}: {source}")]
    ExtensionsDir {
        /// The folder.
        dir: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// More extensions than Lambda runs.
    #[error("{0} extensions: Lambda allows at most 10")]
    TooManyExtensions(usize),
    /// The runtime command is empty.
    #[error("no runtime command given")]
    NoRuntimeCommand,
    /// The runtime program is neither a path that exists nor on `PATH`.
    #[error("runtime command {0:?} not found")]
    RuntimeNotFound(String),
    /// The runtime program is not executable.
    #[error("runtime command {0:?} is not executable")]
    RuntimeNotExecutable(String),
    /// A child process could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// Which child (`extension PATH`, `runtime PROGRAM`).
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The APIs' address is taken.
    #[error("address {0} is already in use (choose another with --listen)")]
    PortInUse(SocketAddr),
    /// The APIs' address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An extension exited during init: `Extension.Crash`.
    #[error("extension {name} crashed during init ({status}): Extension.Crash")]
    ExtensionCrashedDuringInit {
        /// The extension.
        name: String,
        /// How it ended (`exit code 7`, `killed by SIGSEGV`).
        status: String,
    },
    /// An extension called `init/error`.
    #[error("extension {name} reported an init error: {error_type}")]
    ExtensionInitError {
        /// The extension.
        name: String,
        /// The error type it reported.
        error_type: String,
    },
    /// The runtime called `init/error`.
    #[error("runtime init error: {error_type}")]
    RuntimeInitError {
        /// The error type it reported.
        error_type: String,
    },
    /// The runtime exited during init: `Runtime.ExitError`.
    #[error("runtime exited during init ({status}): Runtime.ExitError")]
    RuntimeExitedDuringInit {
        /// How it ended.
        status: String,
    },
    /// Init did not end within its deadline.
    #[error("init did not finish within {limit_ms} ms: still waiting for {waiting_for}")]
    InitTimeout {
        /// The deadline.
        limit_ms: u128,
        /// Who init was still waiting for.
        waiting_for: String,
    },
    /// The resource model cannot be enforced as asked (`--cgroups require`), or a cgroup
    /// could not be set up.
    #[error("cgroups: {0}")]
    Cgroups(String),
    /// The SnapStart restore failed or timed out.
    #[error("snapshot restore failed: {error_type}")]
    RestoreError {
        /// The error type the runtime reported, or `timeout`.
        error_type: String,
    },
}

impl SimError {
    /// The `errorType` Lambda reports for an init that failed this way (`None` for errors
    /// that are the emulator's or the configuration's, not the function's).
    pub fn init_error_type(&self) -> Option<&str> {
        match self {
            SimError::ExtensionInitError { error_type, .. }
            | SimError::RuntimeInitError { error_type } => Some(error_type),
            SimError::ExtensionCrashedDuringInit { .. } => Some("Extension.Crash"),
            SimError::RuntimeExitedDuringInit { .. } => Some("Runtime.ExitError"),
            SimError::InitTimeout { .. } => Some("Sandbox.Timedout"),
            SimError::RestoreError { error_type } => Some(error_type),
            _ => None,
        }
    }
}
