//! The accept loop of Contrail's local servers, the Telemetry API listener and the OTLP
//! receivers: one task per connection and a graceful stop; HTTP/1.1 for the listener and the
//! OTLP/HTTP receiver ([`serve`]), HTTP/2 for the OTLP/gRPC one (which brings its own
//! connection to [`accept`]).

use std::convert::Infallible;
use std::error::Error;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long to pause after a failed `accept` (descriptors exhausted, a connection reset before
/// it was accepted): the listener stays usable, and a persistent error does not spin a core.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);
/// After refusing a connection, how much of what the client sent is read and discarded, and
/// for how long, so that closing does not reset the connection before the answer is read.
const DRAIN_BYTES: usize = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// The bounds of a server whose clients are not Lambda: the local OTLP receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Connections open at once; the next is refused.
    pub(crate) max_connections: usize,
    /// How long a connection may wait for a request's headers (its first request or the next
    /// one): a client that sends nothing, or its headers a byte at a time, is closed then.
    pub(crate) idle_timeout: Duration,
}

/// The connections a server has open, against its cap; and, separately, those it is refusing
/// (answered, being drained for a moment), against the same cap, so that a flood of
/// connections costs a bounded number of tasks and descriptors.
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    max: usize,
    open: Arc<AtomicUsize>,
    refusing: Arc<AtomicUsize>,
}

/// One of the connections counted by [`Connections`]; gives its place back when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connections {
    pub(crate) fn new(max: usize) -> Self {
        Connections {
            max,
            open: Arc::new(AtomicUsize::new(0)),
            refusing: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The cap.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// A place for a new connection, or `None` at the cap.
    pub(crate) fn open(&self) -> Option<Slot> {
        take(&self.open, self.max)
    }

    /// A place to answer a refused connection before closing it, or `None` when as many are
    /// being refused already: close it at once.
    pub(crate) fn refusing(&self) -> Option<Slot> {
        take(&self.refusing, self.max)
    }
}

fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
    count
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()?;
    Some(Slot(count.clone()))
}

/// Send `answer`, close the sending side, and read what the client still sends for a moment:
/// closing with unread data would reset the connection and could destroy the answer.
pub(crate) async fn answer_and_close(mut stream: TcpStream, answer: &[u8]) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < DRAIN_BYTES {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Serve `handle` on `listener` until `shutdown` completes; then stop accepting, let each open
/// connection finish the request it is reading (so data already on the way is not lost), close
/// idle keep-alive connections, and return when all are done. Bound that wait at the call site
/// if a client that stalls mid-request must not hold it.
pub(crate) async fn serve<H, Fut, B, S>(listener: TcpListener, handle: H, shutdown: S)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
    S: Future<Output = ()>,
{
    let connect = move |stream, stop| serve_connection(stream, handle.clone(), None, stop);
    accept(listener, connect, shutdown).await;
}

/// [`serve`] within `limits`: at most `limits.max_connections` open, and each closed once it
/// has waited `limits.idle_timeout` for a request's headers. A connection over the cap is
/// handed to `refuse` with `true` when it may be answered, `false` when as many are being
/// refused already and it is closed at once.
pub(crate) async fn serve_limited<H, Fut, B, S, R, RF>(
    listener: TcpListener,
    handle: H,
    limits: Limits,
    refuse: R,
    shutdown: S,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
    S: Future<Output = ()>,
    R: Fn(TcpStream, bool) -> RF,
    RF: Future<Output = ()> + Send + 'static,
{
    let connections = Connections::new(limits.max_connections);
    let connect = move |stream: TcpStream, stop| {
        let slot = connections.open();
        let (serving, refusal) = match slot {
            Some(_) => {
                let serving =
                    serve_connection(stream, handle.clone(), Some(limits.idle_timeout), stop);
                (Some(serving), None)
            }
            None => {
                let answering = connections.refusing();
                let refusal = refuse(stream, answering.is_some());
                (None, Some((refusal, answering)))
            }
        };
        async move {
            let _slot = slot;
            if let Some(serving) = serving {
                serving.await;
            }
            if let Some((refusal, _answering)) = refusal {
                refusal.await;
            }
        }
    };
    accept(listener, connect, shutdown).await;
}

/// Accept connections on `listener` until `shutdown` completes, running `connect` for each in
/// a task of its own; then tell every connection to stop (its `watch` turns `true`) and return
/// when all have ended. Each connection decides what stopping means for its protocol.
pub(crate) async fn accept<C, F, S>(listener: TcpListener, connect: C, shutdown: S)
where
    C: Fn(TcpStream, watch::Receiver<bool>) -> F,
    F: Future<Output = ()> + Send + 'static,
    S: Future<Output = ()>,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Small requests and answers on loopback: send each at once.
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connect(stream, stop_rx.clone()));
                }
                Err(_) => tokio::time::sleep(ACCEPT_ERROR_PAUSE).await,
            },
            // Reap finished connection tasks so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }

    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection<H, Fut, B>(
    stream: TcpStream,
    handle: H,
    idle_timeout: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>) -> Fut + Send + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    let service = service_fn(move |request| {
        let answer = handle(request);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let mut builder = http1::Builder::new();
    if let Some(idle) = idle_timeout {
        // From the moment the connection waits for a request (its first, or the next one)
        // until that request's headers are complete.
        builder.timer(TokioTimer::new()).header_read_timeout(idle);
    }
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        // A connection error (the client went away mid-request) only ends this connection.
        _ = connection.as_mut() => return,
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}
