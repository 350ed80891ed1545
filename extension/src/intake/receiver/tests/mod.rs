//! The local receiver over real HTTP on loopback, and what its tests share: a receiver on
//! `127.0.0.1:0` whose intake queue the test reads.

mod bounds;
mod config;
mod grpc;
mod grpc_clients;
mod handler;
mod resource;
mod sdk;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::diag::Stats;
use crate::intake::receiver::grpc::{self as grpc_receiver, GrpcOptions};
use crate::intake::receiver::{ReceiverConfig, serve_with_shutdown};
use crate::pipeline::{Intake, IntakeBudget, IntakeSender, intake_queue};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

struct Running {
    addr: SocketAddr,
    /// The gRPC receiver's calls, to look at what they hold.
    grpc: Option<grpc_receiver::Calls>,
    intake: mpsc::Receiver<Intake>,
    /// A producer of the same queue with no slots left to others, as the Telemetry API
    /// listener's.
    telemetry: IntakeSender,
    stats: Arc<Stats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stop the receiver and wait until it has closed every connection.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap();
    }

    /// Take the intake queue's receiving end, e.g. to drain it from another task.
    fn take_intake(&mut self) -> mpsc::Receiver<Intake> {
        std::mem::replace(&mut self.intake, mpsc::channel(1).1)
    }
}

/// A receiver on an ephemeral loopback port with an intake queue of `capacity` units.
async fn start(capacity: usize, max_body_bytes: usize) -> Running {
    run(capacity, |listener, sender, stop| {
        let config = ReceiverConfig {
            endpoint: listener.local_addr().ok(),
            grpc_endpoint: None,
            max_body_bytes,
            ..ReceiverConfig::default()
        };
        let budget = IntakeBudget::new(2 * max_body_bytes);
        tokio::spawn(serve_with_shutdown(listener, sender, config, budget, stop))
    })
    .await
}

/// An OTLP/HTTP receiver configured by `config` (its endpoint set to the port it listens on),
/// holding its requests in `budget`.
async fn start_bounded(
    capacity: usize,
    config: ReceiverConfig,
    budget: Arc<IntakeBudget>,
) -> Running {
    run(capacity, |listener, sender, stop| {
        let config = ReceiverConfig {
            endpoint: listener.local_addr().ok(),
            grpc_endpoint: None,
            ..config
        };
        tokio::spawn(serve_with_shutdown(listener, sender, config, budget, stop))
    })
    .await
}

/// An OTLP/gRPC receiver on an ephemeral loopback port with an intake queue of `capacity`
/// units, of which it may fill all but `reserve`.
async fn start_grpc(capacity: usize, reserve: usize, options: GrpcOptions) -> Running {
    let mut calls = None;
    let mut running = run(capacity, |listener, sender, stop| {
        let serving = grpc_receiver::Calls::new(sender.leaving_free(reserve), options);
        calls = Some(serving.clone());
        tokio::spawn(grpc_receiver::serve_calls(listener, serving, stop))
    })
    .await;
    running.grpc = calls;
    running
}

/// The gRPC receiver's options for tests: `max` bytes per message, short timeouts.
fn grpc_options(max: usize) -> GrpcOptions {
    GrpcOptions {
        max_message_bytes: max,
        in_flight_bytes: 2 * max,
        message_timeout: std::time::Duration::from_millis(500),
        greeting_timeout: std::time::Duration::from_millis(500),
        idle_timeout: std::time::Duration::from_secs(30),
        max_connections: 64,
        http_port: Some(4318),
    }
}

async fn run<S>(capacity: usize, serve: S) -> Running
where
    S: FnOnce(
        TcpListener,
        IntakeSender,
        std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> JoinHandle<()>,
{
    let stats = Arc::new(Stats::default());
    let (sender, intake) = intake_queue(capacity, stats.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = serve(
        listener,
        sender.clone(),
        Box::pin(async move {
            let _ = stop_rx.await;
        }),
    );
    Running {
        addr,
        grpc: None,
        intake,
        telemetry: sender,
        stats,
        stop: Some(stop_tx),
        task,
    }
}

const PROTOBUF: &str = "application/x-protobuf";

/// POST `body`, gzip-encoded OTLP protobuf as its headers say (whatever it really is), to
/// `path`.
async fn post_gzip_protobuf(
    addr: SocketAddr,
    path: &str,
    body: Vec<u8>,
) -> contrail_testkit::http::Answer {
    contrail_testkit::http::send(
        addr,
        "POST",
        path,
        &[("content-type", PROTOBUF), ("content-encoding", "gzip")],
        body,
    )
    .await
}

/// Wait until `done()` holds, checking every few milliseconds; fail after 5 s.
async fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Run `script` with the test venv's Python; its stdout as JSON.
pub(super) async fn python(script: &'static str, args: Vec<String>) -> serde_json::Value {
    let python = repo_root().join(".tools/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-test-deps.sh",
        python.display()
    );
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "python failed (run scripts/install-test-deps.sh if a module is missing): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The repository's root (the workspace).
fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}
