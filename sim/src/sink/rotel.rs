//! Runs the rotel OTLP collector as a child process, forwarding to an OTLP/HTTP endpoint
//! (typically the sink), for tests that want a real collector in the path.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Environment variable naming the `rotel-agent` binary, overriding the project's venv.
pub(crate) const ROTEL_AGENT_ENV: &str = "ROTEL_AGENT";

/// How long rotel may take to listen on its ports.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const READY_POLL: Duration = Duration::from_millis(20);
/// Attempts with fresh ports if rotel exits at start (e.g. a port was taken meanwhile).
const START_ATTEMPTS: usize = 3;

/// Flags beyond receivers and exporter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotelOptions {
    /// `--batch-timeout`: how long rotel may hold data before forwarding it.
    pub batch_timeout: Duration,
    /// `--otlp-exporter-compression`: gzip (rotel's default) or not.
    pub gzip: bool,
    /// `--otlp-exporter-retry-initial-backoff`.
    pub retry_initial_backoff: Duration,
    /// `--otlp-exporter-retry-max-backoff`.
    pub retry_max_backoff: Duration,
    /// Further arguments appended to `rotel-agent start`.
    pub extra_args: Vec<String>,
    /// The binary to run instead of `$ROTEL_AGENT` or the one in the workspace's
    /// `.tools/venv`.
    pub binary: Option<PathBuf>,
}

impl Default for RotelOptions {
    fn default() -> Self {
        Self {
            batch_timeout: Duration::from_millis(50),
            gzip: true,
            retry_initial_backoff: Duration::from_millis(100),
            retry_max_backoff: Duration::from_secs(1),
            extra_args: Vec::new(),
            binary: None,
        }
    }
}

/// Why rotel could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RotelError {
    /// There is no `rotel-agent` where it was looked for.
    #[error(
        "rotel-agent not found at {0} (install it with `pip install rotel` in .tools/venv, or set {ROTEL_AGENT_ENV})"
    )]
    NotFound(PathBuf),
    /// Setting it up failed (a port, its folder, its output file, running it).
    #[error("cannot {what}: {source}")]
    Io {
        /// What could not be done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It exited before listening.
    #[error("rotel-agent exited at start ({status}); its output:\n{output}")]
    Exited {
        /// How it ended.
        status: ExitStatus,
        /// What it printed.
        output: String,
    },
    /// It did not listen in time.
    #[error("rotel-agent did not listen on {addr} within {timeout:?}; its output:\n{output}")]
    NotReady {
        /// The address it did not listen on.
        addr: SocketAddr,
        /// How long it was given.
        timeout: Duration,
        /// What it printed.
        output: String,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RotelError {
    let what = what.into();
    move |source| RotelError::Io { what, source }
}

/// A running rotel collector. Killed when dropped.
#[derive(Debug)]
pub struct RotelCollector {
    child: Child,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    dir: PathBuf,
}

impl RotelCollector {
    /// The `rotel-agent` binary: `$ROTEL_AGENT`, else the one in the workspace's
    /// `.tools/venv` (`lib/python*/site-packages/rotel/rotel-agent`).
    fn binary_path() -> PathBuf {
        if let Some(path) = std::env::var_os(ROTEL_AGENT_ENV) {
            return PathBuf::from(path);
        }
        let lib = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(".tools")
            .join("venv")
            .join("lib");
        let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    e.path()
                        .join("site-packages")
                        .join("rotel")
                        .join("rotel-agent")
                })
                .find(|p| p.is_file())
        });
        found.unwrap_or_else(|| {
            lib.join("python3")
                .join("site-packages")
                .join("rotel")
                .join("rotel-agent")
        })
    }

    /// Starts rotel receiving OTLP on free loopback ports and forwarding everything as OTLP/HTTP
    /// (protobuf, gzip) to `forward_to` (a base URL such as `http://127.0.0.1:4318`).
    pub async fn start(forward_to: &str) -> Result<RotelCollector, RotelError> {
        Self::start_with(forward_to, RotelOptions::default()).await
    }

    /// Like [`RotelCollector::start`], with other flags or another binary.
    pub async fn start_with(
        forward_to: &str,
        options: RotelOptions,
    ) -> Result<RotelCollector, RotelError> {
        let binary = options.binary.clone().unwrap_or_else(Self::binary_path);
        if !binary.is_file() {
            return Err(RotelError::NotFound(binary));
        }
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&binary, forward_to, &options).await {
                Ok(collector) => return Ok(collector),
                Err(e @ RotelError::Exited { .. }) => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or(RotelError::NotFound(binary)))
    }

    async fn try_start(
        binary: &Path,
        forward_to: &str,
        options: &RotelOptions,
    ) -> Result<RotelCollector, RotelError> {
        let (http_addr, grpc_addr) = free_ports()?;
        let dir = std::env::temp_dir().join(format!(
            "contrail-rotel-{}-{}",
            std::process::id(),
            http_addr.port()
        ));
        std::fs::create_dir_all(&dir).map_err(io_error(format!("create {}", dir.display())))?;
        let output_path = dir.join("output.log");
        let output = std::fs::File::create(&output_path)
            .map_err(io_error(format!("create {}", output_path.display())))?;
        let output_err = output
            .try_clone()
            .map_err(io_error("duplicate a file handle"))?;

        let mut args: Vec<String> = vec![
            "start".into(),
            "--otlp-http-endpoint".into(),
            http_addr.to_string(),
            "--otlp-grpc-endpoint".into(),
            grpc_addr.to_string(),
            "--exporter".into(),
            "otlp".into(),
            "--otlp-exporter-endpoint".into(),
            forward_to.trim_end_matches('/').to_owned(),
            "--otlp-exporter-protocol".into(),
            "http".into(),
            "--otlp-exporter-compression".into(),
            if options.gzip { "gzip" } else { "none" }.into(),
            "--batch-timeout".into(),
            format!("{}ms", options.batch_timeout.as_millis()),
            "--otlp-exporter-retry-initial-backoff".into(),
            format!("{}ms", options.retry_initial_backoff.as_millis()),
            "--otlp-exporter-retry-max-backoff".into(),
            format!("{}ms", options.retry_max_backoff.as_millis()),
            "--pid-file".into(),
            dir.join("rotel.pid").display().to_string(),
            "--log-file".into(),
            dir.join("rotel.log").display().to_string(),
        ];
        args.extend(options.extra_args.iter().cloned());

        let child = Command::new(binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(output))
            .stderr(Stdio::from(output_err))
            .kill_on_drop(true)
            .spawn()
            .map_err(io_error(format!("run {}", binary.display())))?;
        let mut collector = RotelCollector {
            child,
            http_addr,
            grpc_addr,
            dir,
        };
        collector.wait_ready().await?;
        Ok(collector)
    }

    async fn wait_ready(&mut self) -> Result<(), RotelError> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        for addr in [self.http_addr, self.grpc_addr] {
            loop {
                if let Some(status) = self
                    .child
                    .try_wait()
                    .map_err(io_error("wait for rotel-agent"))?
                {
                    return Err(RotelError::Exited {
                        status,
                        output: self.output(),
                    });
                }
                if TcpStream::connect(addr).await.is_ok() {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(RotelError::NotReady {
                        addr,
                        timeout: READY_TIMEOUT,
                        output: self.output(),
                    });
                }
                tokio::time::sleep(READY_POLL).await;
            }
        }
        Ok(())
    }

    /// Base URL of rotel's OTLP/HTTP receiver, e.g. `http://127.0.0.1:40123`.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// What rotel printed so far (for failure messages).
    fn output(&self) -> String {
        let mut text = std::fs::read_to_string(self.dir.join("output.log")).unwrap_or_default();
        if let Ok(log) = std::fs::read_to_string(self.dir.join("rotel.log")) {
            text.push_str(&log);
        }
        text
    }
}

impl Drop for RotelCollector {
    fn drop(&mut self) {
        // kill_on_drop covers the child; this makes it explicit and immediate.
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Two distinct free loopback ports ([`crate::ports::free_loopback_port`]).
fn free_ports() -> Result<(SocketAddr, SocketAddr), RotelError> {
    let port = || {
        crate::ports::free_loopback_port()
            .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
            .map_err(io_error("find a free loopback port"))
    };
    Ok((port()?, port()?))
}
