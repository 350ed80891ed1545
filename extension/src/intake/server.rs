//! The accept loop of Contrail's local servers, the Telemetry API listener and the OTLP
//! receivers: one task per connection and a graceful stop; HTTP/1.1 for the listener and the
//! OTLP/HTTP receiver ([`serve`]), HTTP/2 for the OTLP/gRPC one (which brings its own
//! connection to [`accept`]).

use std::convert::Infallible;
use std::error::Error;
use std::future::Future;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long to pause after a failed `accept` (descriptors exhausted, a connection reset before
/// it was accepted): the listener stays usable, and a persistent error does not spin a core.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

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
    let connect = move |stream, stop| serve_connection(stream, handle.clone(), stop);
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

async fn serve_connection<H, Fut, B>(stream: TcpStream, handle: H, mut stop: watch::Receiver<bool>)
where
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
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        // A connection error (the client went away mid-request) only ends this connection.
        _ = connection.as_mut() => return,
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}
