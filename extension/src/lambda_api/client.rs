//! The thin client: one keep-alive HTTP/1.1 connection to the Lambda API, reopened when it
//! closes, sending the requests the builders in [`super`] make and handing replies to its parsers.

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

use super::{
    ApiError, ErrorPhase, EventType, ExtensionId, ExtensionName, MAX_RESPONSE_BYTES, NextEvent,
    Registration, RuntimeApi, check_status, error_request, next_request, parse_next,
    parse_register, parse_subscribe, register_request, subscribe_request,
};
use crate::intake::telemetry::subscription::{Subscribed, Subscription};

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One keep-alive HTTP/1.1 connection to the Lambda API, reopened when it closes.
pub(crate) struct Client {
    api: RuntimeApi,
    conn: Option<Sender>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("api", &self.api).finish()
    }
}

/// A response read in full.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Client {
    pub(crate) fn new(api: RuntimeApi) -> Self {
        Client { api, conn: None }
    }

    async fn connect(&self) -> Result<Sender, ApiError> {
        let stream = tokio::net::TcpStream::connect(self.api.authority())
            .await
            .map_err(|source| ApiError::Connect {
                api: self.api.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let io = hyper_util::rt::TokioIo::new(stream);
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            // The connection ends when the API closes it; the next call reconnects.
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Send one request and read the whole response.
    pub(crate) async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, ApiError> {
        let reused = match self.conn.take() {
            Some(mut s) => s.ready().await.ok().map(|()| s),
            None => None,
        };
        let mut sender = match reused {
            Some(s) => s,
            None => {
                let mut s = self.connect().await?;
                s.ready().await?;
                s
            }
        };
        let response = sender.send_request(req).await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| ApiError::Body(e.to_string()))?
            .to_bytes();
        self.conn = Some(sender);
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub(crate) async fn register(
        &mut self,
        name: &ExtensionName,
        events: &[EventType],
    ) -> Result<Registration, ApiError> {
        let reply = self
            .send(register_request(&self.api, name, events, true)?)
            .await?;
        parse_register(reply.status, &reply.headers, &reply.body)
    }

    /// Block until the next event. No timeout: see the module documentation.
    pub(crate) async fn next(&mut self, id: &ExtensionId) -> Result<NextEvent, ApiError> {
        let reply = self.send(next_request(&self.api, id)?).await?;
        parse_next(reply.status, &reply.body)
    }

    pub(crate) async fn subscribe(
        &mut self,
        id: &ExtensionId,
        subscription: &Subscription,
    ) -> Result<Subscribed, ApiError> {
        let reply = self
            .send(subscribe_request(&self.api, id, subscription)?)
            .await?;
        parse_subscribe(reply.status, &reply.body)
    }

    /// Report an error to Lambda (`init/error` or `exit/error`). After it no other call works.
    pub(crate) async fn report_error(
        &mut self,
        id: &ExtensionId,
        phase: ErrorPhase,
        error_type: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        let call = match phase {
            ErrorPhase::Init => "init/error",
            ErrorPhase::Exit => "exit/error",
        };
        let reply = self
            .send(error_request(&self.api, id, phase, error_type, message)?)
            .await?;
        check_status(call, reply.status, &reply.body)
    }
}
