//! The Telemetry API: subscriptions, the per-subscriber buffer and its delivery by HTTP POST
//! (JSON arrays) or TCP (newline-delimited JSON), retries, and `platform.logsDropped`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::ids::rfc3339_millis;

/// The host name subscribers use for their destination; the sim resolves it to loopback.
pub const SANDBOX_HOST: &str = "sandbox.localdomain";

/// Records a subscriber may hold in its queue before the oldest are dropped.
pub const DEFAULT_QUEUE_LIMIT: usize = 10_000;

/// A telemetry schema version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Schema {
    #[serde(rename = "2022-07-01")]
    V20220701,
    #[serde(rename = "2022-12-13")]
    V20221213,
    #[serde(rename = "2025-01-29")]
    V20250129,
}

impl Schema {
    /// Parses a `schemaVersion` value.
    pub fn parse(s: &str) -> Option<Schema> {
        match s {
            "2022-07-01" => Some(Schema::V20220701),
            "2022-12-13" => Some(Schema::V20221213),
            "2025-01-29" => Some(Schema::V20250129),
            _ => None,
        }
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Schema::V20220701 => "2022-07-01",
            Schema::V20221213 => "2022-12-13",
            Schema::V20250129 => "2025-01-29",
        }
    }
}

/// The three streams a subscriber can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Platform,
    Function,
    Extension,
}

impl Stream {
    fn parse(s: &str) -> Option<Stream> {
        match s {
            "platform" => Some(Stream::Platform),
            "function" => Some(Stream::Function),
            "extension" => Some(Stream::Extension),
            _ => None,
        }
    }
}

/// One telemetry event as the platform produced it (rendered with the newest schema; older
/// schemas get a reduced copy, see [`render_for_schema`]).
#[derive(Debug, Clone)]
pub struct Event {
    pub time: OffsetDateTime,
    pub kind: String,
    pub record: Value,
}

impl Event {
    /// A platform event (`platform.*`).
    pub fn platform(time: OffsetDateTime, kind: &str, record: Value) -> Event {
        Event {
            time,
            kind: kind.to_owned(),
            record,
        }
    }

    fn stream(&self) -> Stream {
        match self.kind.as_str() {
            "function" => Stream::Function,
            "extension" => Stream::Extension,
            _ => Stream::Platform,
        }
    }
}

/// Removes what a subscriber of an older schema version does not receive.
///
/// 2022-07-01 predates `tracing.spanId` and the `spans` of the init events; 2022-12-13 and
/// 2025-01-29 carry every field the sim produces.
pub fn render_for_schema(event: &Event, schema: Schema) -> Value {
    let mut record = event.record.clone();
    if schema == Schema::V20220701 {
        if let Some(obj) = record.as_object_mut() {
            if let Some(tracing) = obj.get_mut("tracing").and_then(Value::as_object_mut) {
                tracing.remove("spanId");
            }
            if matches!(
                event.kind.as_str(),
                "platform.initRuntimeDone" | "platform.initReport"
            ) {
                obj.remove("spans");
            }
        }
    }
    json!({"time": rfc3339_millis(event.time), "type": event.kind, "record": record})
}

/// Delivery counters over every subscriber.
#[derive(Debug, Default)]
pub struct Counters {
    pub records_delivered: AtomicU64,
    pub batches_delivered: AtomicU64,
    pub retries: AtomicU64,
    pub records_dropped: AtomicU64,
    pub bytes_dropped: AtomicU64,
    pub records_undelivered: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DeliveryStats {
    pub records_delivered: u64,
    pub batches_delivered: u64,
    pub retries: u64,
    pub records_dropped: u64,
    pub bytes_dropped: u64,
    /// Records still queued when the environment ended (the subscriber was gone).
    pub records_undelivered: u64,
}

impl Counters {
    pub fn snapshot(&self) -> DeliveryStats {
        DeliveryStats {
            records_delivered: self.records_delivered.load(Ordering::Relaxed),
            batches_delivered: self.batches_delivered.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            records_dropped: self.records_dropped.load(Ordering::Relaxed),
            bytes_dropped: self.bytes_dropped.load(Ordering::Relaxed),
            records_undelivered: self.records_undelivered.load(Ordering::Relaxed),
        }
    }
}

/// Where a subscriber receives its batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// HTTP POST of a JSON array to `uri`, connecting to `addr`.
    Http {
        uri: String,
        host: String,
        addr: SocketAddr,
        path: String,
    },
    /// Newline-delimited JSON over TCP to `addr`, no acknowledgement.
    Tcp { addr: SocketAddr },
}

/// Validated buffering settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Buffering {
    pub max_items: usize,
    pub max_bytes: usize,
    pub timeout_ms: u64,
}

impl Default for Buffering {
    fn default() -> Self {
        Buffering {
            max_items: 1_000,
            max_bytes: 262_144,
            timeout_ms: 1_000,
        }
    }
}

/// A validated subscription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub schema: Schema,
    pub types: Vec<String>,
    pub buffering: Buffering,
    pub destination: Destination,
}

/// Why a subscription request was refused: the platform answers 400 `ValidationError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(pub String);

fn bounded(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ValidationError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ValidationError(format!(
                "buffering.{key} must be an integer between {min} and {max}, got {v}"
            ))),
        },
    }
}

/// Validates a subscription body as the platform does.
pub fn parse_subscription(
    body: &[u8],
    managed_instances: bool,
) -> Result<Subscription, ValidationError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ValidationError(format!("request body is not valid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ValidationError("request body must be a JSON object".into()))?;
    let schema_str = obj
        .get("schemaVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| ValidationError("schemaVersion is required".into()))?;
    let schema = Schema::parse(schema_str).ok_or_else(|| {
        ValidationError(format!(
            "schemaVersion {schema_str:?} is not supported: use 2025-01-29, 2022-12-13 or 2022-07-01"
        ))
    })?;
    if managed_instances && schema != Schema::V20250129 {
        return Err(ValidationError(format!(
            "schemaVersion {schema_str:?} is not supported on Lambda Managed Instances: use 2025-01-29"
        )));
    }
    let types_v = obj
        .get("types")
        .and_then(Value::as_array)
        .ok_or_else(|| ValidationError("types must be a non-empty array".into()))?;
    if types_v.is_empty() {
        return Err(ValidationError("types must be a non-empty array".into()));
    }
    let mut types = Vec::new();
    for t in types_v {
        let s = t.as_str().unwrap_or_default();
        if Stream::parse(s).is_none() {
            return Err(ValidationError(format!(
                "types: {t} is not one of platform, function, extension"
            )));
        }
        if !types.iter().any(|x: &String| x == s) {
            types.push(s.to_owned());
        }
    }
    let buffering = match obj.get("buffering") {
        None | Some(Value::Null) => Buffering::default(),
        Some(Value::Object(b)) => Buffering {
            max_items: usize::try_from(bounded(b, "maxItems", 1_000, 1_000, 10_000)?)
                .unwrap_or(1_000),
            max_bytes: usize::try_from(bounded(b, "maxBytes", 262_144, 262_144, 1_048_576)?)
                .unwrap_or(262_144),
            timeout_ms: bounded(b, "timeoutMs", 1_000, 25, 30_000)?,
        },
        Some(other) => {
            return Err(ValidationError(format!(
                "buffering must be an object, got {other}"
            )));
        }
    };
    let dest = obj
        .get("destination")
        .and_then(Value::as_object)
        .ok_or_else(|| ValidationError("destination is required".into()))?;
    let protocol = dest.get("protocol").and_then(Value::as_str).unwrap_or("");
    let uri = dest
        .get("URI")
        .and_then(Value::as_str)
        .ok_or_else(|| ValidationError("destination.URI is required".into()))?;
    let destination = match protocol {
        "HTTP" => parse_http_destination(uri)?,
        "TCP" => parse_tcp_destination(uri)?,
        other => {
            return Err(ValidationError(format!(
                "destination.protocol {other:?} is not supported: use HTTP or TCP"
            )));
        }
    };
    Ok(Subscription {
        schema,
        types,
        buffering,
        destination,
    })
}

fn resolve_host(host: &str, port: u16, uri: &str) -> Result<SocketAddr, ValidationError> {
    if port == 9001 {
        return Err(ValidationError(format!(
            "destination {uri:?}: port 9001 is reserved"
        )));
    }
    if port == 0 {
        return Err(ValidationError(format!(
            "destination {uri:?}: a port is required"
        )));
    }
    let ip = match host {
        SANDBOX_HOST | "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
        h => h.parse::<std::net::IpAddr>().map_err(|_| {
            ValidationError(format!(
                "destination {uri:?}: host must be {SANDBOX_HOST} (or a loopback address)"
            ))
        })?,
    };
    if !ip.is_loopback() && !ip.is_unspecified() {
        return Err(ValidationError(format!(
            "destination {uri:?}: host must be {SANDBOX_HOST} (or a loopback address)"
        )));
    }
    Ok(SocketAddr::new(ip, port))
}

fn split_host_port(authority: &str, uri: &str) -> Result<(String, u16), ValidationError> {
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| ValidationError(format!("destination {uri:?}: a port is required")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| ValidationError(format!("destination {uri:?}: bad port {port:?}")))?;
    Ok((host.to_owned(), port))
}

fn parse_http_destination(uri: &str) -> Result<Destination, ValidationError> {
    let rest = uri.strip_prefix("http://").ok_or_else(|| {
        ValidationError(format!(
            "destination {uri:?}: an HTTP destination must start with http://"
        ))
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = split_host_port(authority, uri)?;
    let addr = resolve_host(&host, port, uri)?;
    Ok(Destination::Http {
        uri: uri.to_owned(),
        host: authority.to_owned(),
        addr,
        path: path.to_owned(),
    })
}

fn parse_tcp_destination(uri: &str) -> Result<Destination, ValidationError> {
    let authority = uri.strip_prefix("tcp://").unwrap_or(uri);
    let authority = authority.trim_end_matches('/');
    let (host, port) = split_host_port(authority, uri)?;
    let addr = resolve_host(&host, port, uri)?;
    Ok(Destination::Tcp { addr })
}

struct SubscriberEntry {
    types: Vec<String>,
    tx: mpsc::UnboundedSender<Arc<Event>>,
}

struct HubInner {
    /// Every event since the environment started, replayed to subscribers that subscribe
    /// during init (as Lambda delivers `platform.initStart` to them). Cleared when init ends.
    backlog: Option<Vec<Arc<Event>>>,
    subscribers: Vec<SubscriberEntry>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Fans every event out to the subscribers that chose its stream.
pub struct Hub {
    inner: Mutex<HubInner>,
    pub counters: Arc<Counters>,
    frozen: watch::Receiver<bool>,
    stop_tx: watch::Sender<bool>,
    queue_limit: usize,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Hub {
    /// A hub whose deliveries pause while `frozen` is true.
    pub fn new(frozen: watch::Receiver<bool>, queue_limit: usize, counters: Arc<Counters>) -> Hub {
        let (stop_tx, _) = watch::channel(false);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build_http();
        Hub {
            inner: Mutex::new(HubInner {
                backlog: Some(Vec::new()),
                subscribers: Vec::new(),
                tasks: Vec::new(),
            }),
            counters,
            frozen,
            stop_tx,
            queue_limit: queue_limit.max(1),
            client,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Publishes one event to every interested subscriber.
    pub fn publish(&self, event: Event) {
        let event = Arc::new(event);
        let mut inner = self.lock();
        if let Some(backlog) = inner.backlog.as_mut() {
            backlog.push(event.clone());
        }
        let stream = event.stream();
        inner.subscribers.retain(|s| {
            if wants(&s.types, stream) {
                s.tx.send(event.clone()).is_ok()
            } else {
                true
            }
        });
    }

    /// Ends the init window: later subscribers receive only later events.
    pub fn close_backlog(&self) {
        self.lock().backlog = None;
    }

    /// Starts delivery for a subscriber (its backlog of init events first).
    pub fn subscribe(&self, name: &str, sub: Subscription) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.lock();
        if let Some(backlog) = inner.backlog.as_ref() {
            for e in backlog {
                if wants(&sub.types, e.stream()) {
                    let _ = tx.send(e.clone());
                }
            }
        }
        inner.subscribers.push(SubscriberEntry {
            types: sub.types.clone(),
            tx,
        });
        let task = Delivery {
            name: name.to_owned(),
            sub,
            rx,
            frozen: self.frozen.clone(),
            stop: self.stop_tx.subscribe(),
            counters: self.counters.clone(),
            queue_limit: self.queue_limit,
            client: self.client.clone(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            pending_drop: (0, 0),
        };
        inner.tasks.push(tokio::spawn(task.run()));
    }

    /// Stops every delivery task: what is still queued is counted as undelivered.
    pub async fn stop(&self) {
        let tasks = {
            let mut inner = self.lock();
            inner.subscribers.clear();
            std::mem::take(&mut inner.tasks)
        };
        let _ = self.stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Whether every queue is empty and nothing is in flight (best effort: used to let
    /// deliveries settle at shutdown).
    pub fn has_subscribers(&self) -> bool {
        !self.lock().tasks.is_empty()
    }
}

fn wants(types: &[String], stream: Stream) -> bool {
    types.iter().any(|t| Stream::parse(t) == Some(stream))
}

struct Queued {
    bytes: Vec<u8>,
    is_log: bool,
}

struct Delivery {
    name: String,
    sub: Subscription,
    rx: mpsc::UnboundedReceiver<Arc<Event>>,
    frozen: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
    counters: Arc<Counters>,
    queue_limit: usize,
    client: Client<HttpConnector, Full<Bytes>>,
    queue: VecDeque<(Instant, Queued)>,
    queued_bytes: usize,
    /// Records and bytes dropped since the last `platform.logsDropped`.
    pending_drop: (u64, u64),
}

/// A reason the platform gives in `platform.logsDropped`.
pub const LOGS_DROPPED_REASON: &str =
    "Consumer seems to have fallen behind as it has not acknowledged receipt of logs.";

const RETRY_BASE: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(1_000);
const POST_TIMEOUT: Duration = Duration::from_secs(10);

impl Delivery {
    fn enqueue(&mut self, event: &Event) {
        let value = render_for_schema(event, self.sub.schema);
        let bytes = match serde_json::to_vec(&value) {
            Ok(b) => b,
            Err(_) => return,
        };
        self.queued_bytes += bytes.len();
        let is_log = event.stream() != Stream::Platform;
        self.queue
            .push_back((Instant::now(), Queued { bytes, is_log }));
        while self.queue.len() > self.queue_limit {
            let idx = self.queue.iter().position(|(_, q)| q.is_log).unwrap_or(0);
            if let Some((_, dropped)) = self.queue.remove(idx) {
                self.queued_bytes -= dropped.bytes.len();
                self.pending_drop.0 += 1;
                self.pending_drop.1 += dropped.bytes.len() as u64;
                self.counters
                    .records_dropped
                    .fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes_dropped
                    .fetch_add(dropped.bytes.len() as u64, Ordering::Relaxed);
            }
        }
    }

    fn drain_channel(&mut self) {
        while let Ok(e) = self.rx.try_recv() {
            self.enqueue(&e);
        }
    }

    fn batch_ready(&self, now: Instant) -> bool {
        let Some((first, _)) = self.queue.front() else {
            return false;
        };
        self.queue.len() >= self.sub.buffering.max_items
            || self.queued_bytes >= self.sub.buffering.max_bytes
            || now >= *first + Duration::from_millis(self.sub.buffering.timeout_ms)
            || self.pending_drop.0 > 0
    }

    fn take_batch(&mut self) -> Vec<Vec<u8>> {
        let mut batch = Vec::new();
        let mut size = 0usize;
        if self.pending_drop.0 > 0 && wants(&self.sub.types, Stream::Platform) {
            let e = Event::platform(
                OffsetDateTime::now_utc(),
                "platform.logsDropped",
                json!({
                    "reason": LOGS_DROPPED_REASON,
                    "droppedRecords": self.pending_drop.0,
                    "droppedBytes": self.pending_drop.1,
                }),
            );
            if let Ok(b) = serde_json::to_vec(&render_for_schema(&e, self.sub.schema)) {
                size += b.len();
                batch.push(b);
            }
        }
        self.pending_drop = (0, 0);
        while let Some((_, q)) = self.queue.front() {
            if !batch.is_empty()
                && (batch.len() >= self.sub.buffering.max_items
                    || size + q.bytes.len() > self.sub.buffering.max_bytes)
            {
                break;
            }
            size += q.bytes.len();
            if let Some((_, q)) = self.queue.pop_front() {
                self.queued_bytes -= q.bytes.len();
                batch.push(q.bytes);
            }
        }
        batch
    }

    async fn run(mut self) {
        let mut tcp: Option<tokio::net::TcpStream> = None;
        loop {
            if *self.stop.borrow() {
                break;
            }
            self.drain_channel();
            let now = Instant::now();
            if !self.batch_ready(now) {
                let wake = self
                    .queue
                    .front()
                    .map(|(t, _)| *t + Duration::from_millis(self.sub.buffering.timeout_ms));
                tokio::select! {
                    e = self.rx.recv() => match e {
                        Some(e) => self.enqueue(&e),
                        None => {
                            if self.queue.is_empty() { break; }
                            if let Some(w) = wake { tokio::time::sleep_until(w).await; }
                        }
                    },
                    _ = async { match wake { Some(w) => tokio::time::sleep_until(w).await, None => std::future::pending().await } } => {}
                    _ = self.stop.changed() => {}
                }
                continue;
            }
            if !self.wait_thawed().await {
                break;
            }
            let batch = self.take_batch();
            if batch.is_empty() {
                continue;
            }
            let n = batch.len() as u64;
            let mut body = Vec::with_capacity(batch.iter().map(|b| b.len() + 1).sum::<usize>() + 2);
            let mut attempt = 0u32;
            loop {
                let destination = self.sub.destination.clone();
                let ok = match &destination {
                    Destination::Http {
                        host, addr, path, ..
                    } => {
                        if body.is_empty() {
                            body.push(b'[');
                            for (i, b) in batch.iter().enumerate() {
                                if i > 0 {
                                    body.push(b',');
                                }
                                body.extend_from_slice(b);
                            }
                            body.push(b']');
                        }
                        let client = self.client.clone();
                        let fut = post(client, *addr, host, path, body.clone());
                        self.while_receiving(fut).await
                    }
                    Destination::Tcp { addr } => {
                        if body.is_empty() {
                            for b in &batch {
                                body.extend_from_slice(b);
                                body.push(b'\n');
                            }
                        }
                        let fut = send_tcp(&mut tcp, *addr, &body);
                        let r = tokio::select! {
                            r = fut => Some(r),
                            _ = self.stop.changed() => None,
                        };
                        r.unwrap_or_default()
                    }
                };
                if ok {
                    self.counters
                        .records_delivered
                        .fetch_add(n, Ordering::Relaxed);
                    self.counters
                        .batches_delivered
                        .fetch_add(1, Ordering::Relaxed);
                    break;
                }
                if *self.stop.borrow() {
                    self.counters
                        .records_undelivered
                        .fetch_add(n, Ordering::Relaxed);
                    break;
                }
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
                let backoff = RETRY_BASE
                    .saturating_mul(2u32.saturating_pow(attempt.min(10)))
                    .min(RETRY_MAX);
                attempt += 1;
                let sleep = tokio::time::sleep(backoff);
                self.while_receiving(async {
                    sleep.await;
                    true
                })
                .await;
                if !self.wait_thawed().await {
                    self.counters
                        .records_undelivered
                        .fetch_add(n, Ordering::Relaxed);
                    break;
                }
            }
        }
        self.drain_channel();
        let left = self.queue.len() as u64;
        if left > 0 {
            self.counters
                .records_undelivered
                .fetch_add(left, Ordering::Relaxed);
        }
        let _ = &self.name;
    }

    /// Runs `fut` while still taking in (and bounding) new events.
    async fn while_receiving<F: std::future::Future<Output = bool>>(&mut self, fut: F) -> bool {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => return r,
                e = self.rx.recv() => match e {
                    Some(e) => self.enqueue(&e),
                    None => return fut.await,
                },
                _ = self.stop.changed() => {
                    if *self.stop.borrow() { return false; }
                }
            }
        }
    }

    /// Waits until the environment is thawed; false if stopped meanwhile.
    async fn wait_thawed(&mut self) -> bool {
        loop {
            if *self.stop.borrow() {
                return false;
            }
            if !*self.frozen.borrow() {
                return true;
            }
            tokio::select! {
                r = self.frozen.changed() => if r.is_err() { return false; },
                e = self.rx.recv() => if let Some(e) = e { self.enqueue(&e) } else {
                    // No more events will come; keep waiting for the thaw or the stop.
                    tokio::select! {
                        r = self.frozen.changed() => if r.is_err() { return false; },
                        _ = self.stop.changed() => {}
                    }
                },
                _ = self.stop.changed() => {}
            }
        }
    }
}

async fn post(
    client: Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    host: &str,
    path: &str,
    body: Vec<u8>,
) -> bool {
    let uri = format!("http://{addr}{path}");
    let req = match http::Request::builder()
        .method(http::Method::POST)
        .uri(uri)
        .header(http::header::HOST, host)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
    {
        Ok(r) => r,
        Err(_) => return false,
    };
    match tokio::time::timeout(POST_TIMEOUT, client.request(req)).await {
        Ok(Ok(resp)) => {
            let ok = resp.status().is_success();
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            ok
        }
        _ => false,
    }
}

async fn send_tcp(conn: &mut Option<tokio::net::TcpStream>, addr: SocketAddr, body: &[u8]) -> bool {
    if conn.is_none() {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => *conn = Some(s),
            Err(_) => return false,
        }
    }
    let Some(stream) = conn.as_mut() else {
        return false;
    };
    match stream.write_all(body).await {
        Ok(()) => true,
        Err(_) => {
            *conn = None;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn accepts_a_valid_subscription_and_resolves_the_sandbox_host() {
        let s = parse_subscription(
            &body(
                json!({"schemaVersion":"2022-12-13","types":["platform","function"],
                "buffering":{"maxItems":1000,"maxBytes":262144,"timeoutMs":25},
                "destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8123/t"}}),
            ),
            false,
        )
        .unwrap();
        assert_eq!(s.schema, Schema::V20221213);
        assert_eq!(s.buffering.timeout_ms, 25);
        match s.destination {
            Destination::Http { addr, path, .. } => {
                assert_eq!(addr, "127.0.0.1:8123".parse().unwrap());
                assert_eq!(path, "/t");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_what_the_platform_refuses() {
        let cases = [
            json!({"schemaVersion":"2021-01-01","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":["platfrom"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":[],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"maxItems":999},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"maxBytes":1048577},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"timeoutMs":24},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:9001"}}),
            json!({"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://example.com:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"UDP","URI":"http://sandbox.localdomain:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"https://sandbox.localdomain:8080"}}),
            json!({"schemaVersion":"2022-12-13","types":["platform"]}),
        ];
        for c in cases {
            assert!(parse_subscription(&body(c.clone()), false).is_err(), "{c}");
        }
        let ok = json!({"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080"}});
        assert!(parse_subscription(&body(ok.clone()), true).is_err());
        assert!(parse_subscription(&body(ok), false).is_ok());
    }

    #[test]
    fn old_schema_loses_span_id() {
        let e = Event::platform(
            OffsetDateTime::now_utc(),
            "platform.start",
            json!({"requestId":"r","tracing":{"spanId":"0123456789abcdef","type":"X-Amzn-Trace-Id","value":"v"}}),
        );
        let old = render_for_schema(&e, Schema::V20220701);
        assert!(old["record"]["tracing"].get("spanId").is_none());
        let new = render_for_schema(&e, Schema::V20221213);
        assert_eq!(new["record"]["tracing"]["spanId"], "0123456789abcdef");
    }
}
