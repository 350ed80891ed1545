//! The Telemetry API, the part of Lambda that pushes the environment's records to extensions.
//!
//! | part | file |
//! |---|---|
//! | the record model: [`Event`], the three streams, [`Schema`] and what each version carries | this file |
//! | `PUT /2022-07-01/telemetry`: parsing and validating a subscription | [`subscription`] |
//! | fan-out of every record to the subscribers of its stream, init backlog | [`hub`] |
//! | one subscriber: buffering, the freeze, retries, `platform.logsDropped` | [`subscriber`] |
//! | the destinations: HTTP POST of JSON arrays, TCP newline-delimited JSON | [`transport`] |
//!
//! The records themselves (`platform.start` and the rest) are built in [`crate::events`].

mod hub;
mod subscriber;
mod subscription;
mod transport;

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::ids::rfc3339_millis;
use crate::report::DeliveryStats;

pub(crate) use hub::{Hub, Losses};
pub(crate) use subscription::{Destination, Subscription, parse_subscription};

/// The host name subscribers use for their destination; the sim resolves it to loopback.
pub(crate) const SANDBOX_HOST: &str = "sandbox.localdomain";

/// Records a subscriber may hold in its queue before the oldest are dropped.
pub(crate) const DEFAULT_QUEUE_LIMIT: usize = 10_000;

/// A telemetry schema version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Schema {
    /// The first version: no `tracing.spanId`, no `spans` in the init records.
    #[serde(rename = "2022-07-01")]
    V20220701,
    /// Adds `tracing.spanId` and the init records' `spans`.
    #[serde(rename = "2022-12-13")]
    V20221213,
    /// The version Lambda Managed Instances require (backward compatible).
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
pub(crate) enum Stream {
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
pub(crate) struct Event {
    pub time: OffsetDateTime,
    pub kind: String,
    pub record: Value,
}

impl Event {
    /// A platform event (`platform.*`).
    pub(crate) fn platform(time: OffsetDateTime, kind: &str, record: Value) -> Event {
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
pub(crate) fn render_for_schema(event: &Event, schema: Schema) -> Value {
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
pub(crate) struct Counters {
    pub records_delivered: AtomicU64,
    pub batches_delivered: AtomicU64,
    pub retries: AtomicU64,
    pub records_dropped: AtomicU64,
    pub bytes_dropped: AtomicU64,
    pub records_undelivered: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> DeliveryStats {
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

fn wants(types: &[String], stream: Stream) -> bool {
    types.iter().any(|t| Stream::parse(t) == Some(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

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
