//! The Telemetry API batch decoder.
//!
//! A POST body is a JSON array of envelopes `{"time", "type", "record"}`. [`decode_batch`] walks
//! the array once, keeps every envelope that decodes, and counts the rest: one bad record never
//! loses the others, and a type Contrail does not know becomes [`Event::Unknown`]. Each record
//! is then read field by field (`super::record`): one bad field never loses its record.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::event::{Event, TelemetryRecord};
use super::record::{FieldDrops, decode_event};
use super::time::{epoch_nanos, epoch_nanos_f64, parse_time_str};

/// `visit_bool`, `visit_i64`, `visit_u64`, `visit_f64` and `visit_unit`, each answering
/// `$value`: a loose visitor takes any JSON scalar as "not what was looked for".
macro_rules! skip_scalars {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// The result of decoding one POST body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecodedBatch {
    /// The records that decoded, in delivery order.
    pub records: Vec<TelemetryRecord>,
    /// Records (or, for a body that is not a JSON array, whole bodies) that did not decode.
    pub malformed: u64,
    /// Decoded records of a type Contrail does not know (also present in `records`).
    pub unknown: u64,
    /// Fields of the decoded records that were given up (their records were kept).
    pub fields_dropped: FieldDrops,
}

/// Decode a Telemetry API POST body that arrived at `received_unix_nano`.
///
/// The array is read once; each element is first taken as a loose envelope that accepts any
/// JSON value, then decoded on its own. A body that is not a JSON array counts as one
/// malformed record; a body that breaks off mid-way keeps the records before the break and
/// counts one more malformed record for the rest. A record whose `time` is missing or not a
/// time is given the time it arrived.
pub fn decode_batch(body: &[u8], received_unix_nano: u64) -> DecodedBatch {
    let mut batch = DecodedBatch::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let seed = BatchSeed {
        batch: &mut batch,
        received_unix_nano,
    };
    let complete = seed.deserialize(&mut de).is_ok() && de.end().is_ok();
    if !complete {
        batch.malformed += 1;
    }
    batch
}

struct BatchSeed<'a> {
    batch: &'a mut DecodedBatch,
    received_unix_nano: u64,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of Telemetry API records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some(n) = seq.size_hint() {
            self.batch.records.reserve(n);
        }
        while let Some(envelope) = seq.next_element::<Envelope<'de>>()? {
            let mut drops = FieldDrops::default();
            match envelope.into_record(self.received_unix_nano, &mut drops) {
                Some(record) => {
                    if matches!(record.event, Event::Unknown { .. }) {
                        self.batch.unknown += 1;
                    }
                    self.batch.fields_dropped.add(drops);
                    self.batch.records.push(record);
                }
                None => self.batch.malformed += 1,
            }
        }
        Ok(())
    }
}

/// An array element, accepted whatever its shape so that the walk over the array goes on.
#[derive(Default)]
struct Envelope<'de> {
    is_object: bool,
    /// The envelope's `time`: absent, or present and a time (`Some(Some(_))`) or not.
    time: Option<Option<u64>>,
    kind: Option<Cow<'de, str>>,
    record: Option<Value>,
}

impl<'de> Envelope<'de> {
    /// The record, or `None` when it cannot be one; what it lost goes to `drops`.
    fn into_record(
        self,
        received_unix_nano: u64,
        drops: &mut FieldDrops,
    ) -> Option<TelemetryRecord> {
        if !self.is_object {
            return None;
        }
        let kind = self.kind?;
        let record = self.record?;
        let event = decode_event(&kind, record, drops)?;
        let time_unix_nano = match self.time {
            Some(Some(t)) => t,
            Some(None) => {
                drops.invalid_time += 1;
                received_unix_nano
            }
            None => {
                drops.missing += 1;
                received_unix_nano
            }
        };
        Some(TelemetryRecord {
            time_unix_nano,
            event,
        })
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    Time,
    Type,
    Record,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Telemetry API record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        let mut env = Envelope {
            is_object: true,
            ..Envelope::default()
        };
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Time => env.time = Some(map.next_value::<LooseTime>()?.0),
                Field::Type => env.kind = map.next_value::<Loose<'de>>()?.0,
                Field::Record => env.record = Some(map.next_value::<Value>()?),
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(env)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Envelope<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Envelope::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<Envelope<'de>, E> {
        Ok(Envelope::default())
    }

    skip_scalars!(Envelope::default());
}

/// A string if the value is one, `None` for any other JSON value (which is skipped).
struct Loose<'de>(Option<Cow<'de, str>>);

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Loose<'de>, E> {
        Ok(Loose(Some(Cow::Borrowed(v))))
    }
    fn visit_str<E>(self, v: &str) -> Result<Loose<'de>, E> {
        Ok(Loose(Some(Cow::Owned(v.to_owned()))))
    }
    fn visit_string<E>(self, v: String) -> Result<Loose<'de>, E> {
        Ok(Loose(Some(Cow::Owned(v))))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose(None))
    }
    skip_scalars!(Loose(None));
}

/// A time (a date-time string or an epoch number) if the value is one, `None` for any other
/// JSON value (which is skipped).
struct LooseTime(Option<u64>);

impl<'de> Deserialize<'de> for LooseTime {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseTimeVisitor)
    }
}

struct LooseTimeVisitor;

impl<'de> Visitor<'de> for LooseTimeVisitor {
    type Value = LooseTime;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, v: &str) -> Result<LooseTime, E> {
        Ok(LooseTime(parse_time_str(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<LooseTime, E> {
        Ok(LooseTime(epoch_nanos(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<LooseTime, E> {
        Ok(LooseTime(u64::try_from(v).ok().and_then(epoch_nanos)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<LooseTime, E> {
        Ok(LooseTime(epoch_nanos_f64(v)))
    }
    fn visit_bool<E>(self, _: bool) -> Result<LooseTime, E> {
        Ok(LooseTime(None))
    }
    fn visit_unit<E>(self) -> Result<LooseTime, E> {
        Ok(LooseTime(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LooseTime, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(LooseTime(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LooseTime, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(LooseTime(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::telemetry::event::LogLine;

    /// When the test's bodies arrive.
    const RECEIVED: u64 = 1_665_533_100_000_000_000;

    #[test]
    fn one_bad_record_does_not_lose_the_rest() {
        let body = br#"[
            {"time":"2022-10-12T00:03:50.000Z","type":"function","record":"hello\n"},
            {"time":"2022-10-12T00:03:50.000Z","type":"platform.start","record":{"version":"$LATEST"}},
            42,
            "text",
            null,
            [1,2,{"a":[]}],
            {"time":17,"type":"function","record":"x"},
            {"time":"2022-10-12T00:03:50.000Z","type":{"nested":true},"record":"x"},
            {"time":"yesterday","type":"function","record":"x"},
            {"type":"function","record":"no time"},
            {"time":"2022-10-12T00:03:50.000Z","type":"function"},
            {"time":"2022-10-12T00:03:51.000Z","type":"platform.newThing","record":{"a":1},"extra":[1]},
            {"time":"2022-10-12T00:03:52.000Z","type":"extension","record":{"level":"INFO","message":"m"}}
        ]"#;
        let batch = decode_batch(body, RECEIVED);
        // Not records at all, a start without its request id, a type that is not a string,
        // an envelope without a record.
        assert_eq!(batch.malformed, 7);
        assert_eq!(batch.unknown, 1);
        assert_eq!(batch.records.len(), 6);
        assert_eq!(
            batch.records[0].event,
            Event::Function(LogLine::Text("hello\n".into()))
        );
        // A time that is not one (an epoch second in 1970, "yesterday", none) costs the time
        // only.
        for (r, text) in batch.records[1..4].iter().zip(["x", "x", "no time"]) {
            assert_eq!(r.event, Event::Function(LogLine::Text(text.into())));
            assert_eq!(r.time_unix_nano, RECEIVED);
        }
        assert_eq!(
            batch.fields_dropped,
            FieldDrops {
                invalid_time: 2,
                invalid_value: 0,
                missing: 1,
            }
        );
        assert_eq!(batch.records[4].event.kind(), "platform.newThing");
        assert_eq!(batch.records[4].time_unix_nano, 1_665_533_031_000_000_000);
        assert!(matches!(
            batch.records[5].event,
            Event::ExtensionLog(LogLine::Json(_))
        ));
    }

    #[test]
    fn a_body_that_is_not_an_array_is_one_malformed_batch() {
        for body in [&b"{}"[..], b"", b"null", b"not json", b"\"[]\"", b"[] []"] {
            let batch = decode_batch(body, RECEIVED);
            assert_eq!(batch.malformed, 1, "{:?}", String::from_utf8_lossy(body));
            assert!(batch.records.is_empty());
        }
    }

    #[test]
    fn a_body_cut_short_keeps_what_came_before_the_break() {
        let body = br#"[{"time":"2022-10-12T00:03:50.000Z","type":"function","record":"a"},
                        {"time":"2022-10-12T00:03:50.000Z","type":"function","record":"b"},
                        {"time":"2022-10-12T00:03:50.000Z","type":"func"#;
        let batch = decode_batch(body, RECEIVED);
        assert_eq!(batch.records.len(), 2);
        assert_eq!(batch.malformed, 1);
    }

    #[test]
    fn escaped_strings_decode() {
        let body = br#"[{"time":"2022-10-12T00:03:50.000Z","ty\u0070e":"function","record":"tab\there \u00e9"}]"#;
        let batch = decode_batch(body, RECEIVED);
        assert_eq!(batch.malformed, 0);
        assert_eq!(
            batch.records[0].event,
            Event::Function(LogLine::Text("tab\there \u{e9}".into()))
        );
    }

    #[test]
    fn empty_array_is_nothing() {
        assert_eq!(decode_batch(b" [ ] ", RECEIVED), DecodedBatch::default());
    }
}
