//! HTTP/1.1 connections to the backend, kept alive between flushes and owned outright.
//!
//! Contrail drives each connection itself (no background connection task): a connection makes
//! progress only while an export is being awaited. When an attempt is abandoned at its
//! deadline, the connection is dropped on the spot, which closes the socket synchronously, so
//! no request can be left half-way to complete (or be resent) after the environment thaws.
//!
//! TLS (rustls, ring, Mozilla's roots from webpki-roots) is configured on the first `https`
//! connection, never at start-up.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::export::body::Chunks;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

/// A connection idle longer than this is not reused: load balancers close idle connections
/// (often after 60 s) and a frozen environment cannot see it happen.
pub(crate) const MAX_IDLE: Duration = Duration::from_secs(30);

/// Where a connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Origin {
    pub(crate) fn of(uri: &http::Uri) -> Option<Origin> {
        let tls = uri.scheme_str() == Some("https");
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Some(Origin {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

/// The most of a backend's response body Contrail reads.
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How far the last round trip got: where it was when it failed or ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Stage {
    #[default]
    Idle,
    Resolving,
    Connecting,
    TlsHandshake,
    /// Writing the request and waiting for the answer's head.
    AwaitingResponse,
    ReadingBody,
}

/// Why a round trip failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The connection failed before the request was written: the backend cannot have seen it.
    #[error("request not sent: {0}")]
    NotSent(hyper::Error),
    /// The request failed before any response arrived (the connection was closed or reset).
    #[error("request failed: {0}")]
    BeforeResponse(hyper::Error),
    /// The response started but its body did not complete.
    #[error("response body failed: {0}")]
    Body(hyper::Error),
    #[error("connection lost")]
    Lost,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    // With vectored writes hyper sends a request body's buffers as they are; without them it
    // first copies the body into the connection's write buffer (up to a whole batch, 1 MiB).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

struct Conn {
    origin: Origin,
    sender: SendRequest<Chunks>,
    driver: Pin<Box<Connection<TokioIo<Stream>, Chunks>>>,
    last_used: Instant,
    broken: bool,
}

/// An answer from the backend.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// The body was larger than [`MAX_RESPONSE_BYTES`] and was not read (`body` is empty).
    pub(crate) truncated: bool,
}

/// The set of open connections (at most one per origin).
#[derive(Default)]
pub(crate) struct Pool {
    conns: Vec<Conn>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Trusted for `https` besides the public web roots.
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    stage: Stage,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("connections", &self.conns.len())
            .field("tls_ready", &self.tls.is_some())
            .finish()
    }
}

impl Pool {
    /// A pool whose `https` connections also trust `extra_roots`. The TLS set-up itself waits
    /// for the first `https` connection.
    pub(crate) fn new(extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>) -> Pool {
        Pool {
            extra_roots,
            ..Pool::default()
        }
    }

    /// Send `request` to `origin`, reusing a kept-alive connection when there is a fresh one.
    ///
    /// Cancel-safe in the sense that matters here: if this future is dropped (deadline), the
    /// connection in use stays marked broken and is closed by [`Pool::discard_broken`].
    pub(crate) async fn round_trip(
        &mut self,
        origin: &Origin,
        request: &dyn Fn() -> Request<Chunks>,
    ) -> Result<Response, ConnError> {
        let now = Instant::now();
        // Drop connections that are idle too long or already closed.
        self.conns.retain(|c| {
            !c.broken
                && now.saturating_duration_since(c.last_used) < MAX_IDLE
                && !c.sender.is_closed()
        });
        let reused = self.conns.iter().position(|c| &c.origin == origin);
        let index = match reused {
            Some(i) => i,
            None => self.connect(origin).await?,
        };
        // A kept-alive connection the server has closed in the meantime fails before the
        // request is written: the backend cannot have seen it, so try once more on a new
        // connection. A request that was written is not resent here (it may have been
        // processed); the caller's retry policy decides.
        match self.send_on(index, request()).await {
            Err(ConnError::NotSent(_)) if reused.is_some() => {
                let index = self.connect(origin).await?;
                self.send_on(index, request()).await
            }
            result => result,
        }
    }

    /// [`Pool::round_trip`] behind one boxed future: every caller shares one copy of the
    /// connection code instead of inlining it into its own future (the exporter, the secrets
    /// resolver and the credentials provider each would).
    pub(crate) fn send<'a>(
        &'a mut self,
        origin: &'a Origin,
        request: &'a dyn Fn() -> Request<Chunks>,
    ) -> Pin<Box<dyn Future<Output = Result<Response, ConnError>> + 'a>> {
        Box::pin(self.round_trip(origin, request))
    }

    /// How far the last round trip got (where an abandoned one stalled).
    pub(crate) fn stage(&self) -> Stage {
        self.stage
    }

    /// Close every connection that was in use when an attempt was abandoned.
    pub(crate) fn discard_broken(&mut self) {
        self.conns.retain(|c| !c.broken);
    }

    async fn send_on(
        &mut self,
        index: usize,
        request: Request<Chunks>,
    ) -> Result<Response, ConnError> {
        let Some(conn) = self.conns.get_mut(index) else {
            return Err(ConnError::Lost);
        };
        // Marked broken until the exchange completes: if this future is dropped half-way, the
        // connection is discarded rather than reused with a request still pending on it.
        conn.broken = true;
        let Conn { sender, driver, .. } = conn;
        let stage = &mut self.stage;
        *stage = Stage::AwaitingResponse;
        let exchange = async {
            sender.ready().await.map_err(ConnError::NotSent)?;
            let response = match sender.try_send_request(request).await {
                Ok(response) => response,
                Err(mut failed) => {
                    let unsent = failed.take_message().is_some();
                    let error = failed.into_error();
                    return Err(if unsent {
                        ConnError::NotSent(error)
                    } else {
                        ConnError::BeforeResponse(error)
                    });
                }
            };
            let (parts, body) = response.into_parts();
            *stage = Stage::ReadingBody;
            // The body only carries a partial-success count or an error message: a larger one
            // (a proxy's error page) is not read into the function's memory; the status says
            // enough, and the connection is not reused.
            let (body, whole) = match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
                Ok(collected) => (collected.to_bytes(), true),
                Err(err) => match err.downcast::<hyper::Error>() {
                    Ok(err) => return Err(ConnError::Body(*err)),
                    Err(_) => (Bytes::new(), false),
                },
            };
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
                truncated: !whole,
            })
        };
        let (result, driver_done) = {
            tokio::pin!(exchange);
            tokio::select! {
                biased;
                r = &mut exchange => (r, false),
                _ = driver.as_mut() => (exchange.await, true),
            }
        };
        let keep = matches!(&result, Ok(r) if !r.truncated) && !driver_done && !sender.is_closed();
        conn.broken = !keep;
        conn.last_used = Instant::now();
        if !keep {
            self.conns.remove(index);
        }
        result
    }

    async fn connect(&mut self, origin: &Origin) -> Result<usize, ConnError> {
        let cannot_connect = |source| ConnError::Connect {
            host: origin.host.clone(),
            port: origin.port,
            source,
        };
        self.stage = Stage::Resolving;
        let addrs: Vec<_> = tokio::net::lookup_host((origin.host.as_str(), origin.port))
            .await
            .map_err(cannot_connect)?
            .collect();
        if addrs.is_empty() {
            return Err(cannot_connect(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the name resolves to no address",
            )));
        }
        self.stage = Stage::Connecting;
        let tcp = TcpStream::connect(&addrs[..])
            .await
            .map_err(cannot_connect)?;
        let _ = tcp.set_nodelay(true);
        let stream = if origin.tls {
            self.stage = Stage::TlsHandshake;
            let config = self.tls_config()?;
            let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
                .map_err(|e| ConnError::Tls(format!("invalid server name: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(cannot_connect)?;
            Stream::Tls(Box::new(tls))
        } else {
            Stream::Plain(tcp)
        };
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ConnError::NotSent)?;
        self.conns.retain(|c| &c.origin != origin);
        self.conns.push(Conn {
            origin: origin.clone(),
            sender,
            driver: Box::pin(driver),
            last_used: Instant::now(),
            broken: false,
        });
        Ok(self.conns.len() - 1)
    }

    fn tls_config(&mut self) -> Result<Arc<rustls::ClientConfig>, ConnError> {
        if let Some(config) = &self.tls {
            return Ok(config.clone());
        }
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let (_added, unusable) = roots.add_parsable_certificates(self.extra_roots.iter().cloned());
        if unusable > 0 {
            return Err(ConnError::Tls(format!(
                "{unusable} of the configured certificates cannot be used as trust anchors"
            )));
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        self.tls = Some(config.clone());
        Ok(config)
    }
}
