//! The local receiver over real HTTP on loopback, and what its tests share: a receiver on
//! `127.0.0.1:0` whose intake queue the test reads.

mod config;
mod handler;
mod resource;
mod sdk;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::diag::Stats;
use crate::intake::receiver::{ReceiverConfig, serve_with_shutdown};
use crate::pipeline::{Intake, intake_queue};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

struct Running {
    addr: SocketAddr,
    intake: mpsc::Receiver<Intake>,
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
    let stats = Arc::new(Stats::default());
    let (sender, intake) = intake_queue(capacity, stats.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ReceiverConfig {
        endpoint: Some(addr),
        max_body_bytes,
    };
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_with_shutdown(listener, sender, config, async move {
        let _ = stop_rx.await;
    }));
    Running {
        addr,
        intake,
        stats,
        stop: Some(stop_tx),
        task,
    }
}

/// The repository's root (the workspace).
fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}
