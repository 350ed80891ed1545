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
///
/// An element that `serde_json` cannot read at all (invalid UTF-8 in a string, an escape of a
/// lone surrogate, a number out of range, nesting past its depth limit) stops the walk; the
/// elements after it are then found by their brackets (`split_elements`) and decoded one by
/// one, so that it costs only itself. The common case, a body without such an element, is
/// read once.
pub fn decode_batch(body: &[u8], received_unix_nano: u64) -> DecodedBatch {
    let mut batch = DecodedBatch::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let seed = BatchSeed {
        batch: &mut batch,
        received_unix_nano,
    };
    let complete = seed.deserialize(&mut de).is_ok() && de.end().is_ok();
    if !complete {
        recover(body, received_unix_nano, &mut batch);
    }
    batch
}

/// After a walk that stopped early: count the element it stopped at, decode each complete
/// element after it alone, and count one more for a body that breaks off or is not an array.
fn recover(body: &[u8], received_unix_nano: u64, batch: &mut DecodedBatch) {
    // Every element the walk read was kept or counted: the next one is where it stopped.
    let read = batch.records.len() as u64 + batch.malformed;
    let Some(split) = split_elements(body) else {
        batch.malformed += 1;
        return;
    };
    let mut rest = split
        .elements
        .into_iter()
        .skip(usize::try_from(read).unwrap_or(usize::MAX));
    if rest.next().is_some() {
        batch.malformed += 1;
    }
    for element in rest {
        let mut de = serde_json::Deserializer::from_slice(element);
        match Envelope::deserialize(&mut de) {
            Ok(envelope) if de.end().is_ok() => batch.push(envelope, received_unix_nano),
            _ => batch.malformed += 1,
        }
    }
    if !split.closed {
        batch.malformed += 1;
    }
}

/// The top-level elements of a JSON array, found by brackets and string quotes alone.
#[derive(Debug, PartialEq)]
struct Split<'a> {
    /// Each complete element's bytes, surrounding whitespace included.
    elements: Vec<&'a [u8]>,
    /// Whether the array closed, with nothing but whitespace after it.
    closed: bool,
}

/// Split a body that starts as a JSON array into its elements; `None` when it does not start
/// with `[`. Nothing is validated inside an element: that is the decoder's work.
fn split_elements(body: &[u8]) -> Option<Split<'_>> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body[start] != b'[' {
        return None;
    }
    let mut elements = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut from = start + 1;
    for (i, &b) in body.iter().enumerate().skip(start + 1) {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' if depth > 0 => depth -= 1,
            b',' if depth == 0 => {
                elements.push(&body[from..i]);
                from = i + 1;
            }
            b']' => {
                let last = &body[from..i];
                // `[]` and `[ ]` have no element; `[1,]` has an empty one.
                if !elements.is_empty() || last.iter().any(|b| !b.is_ascii_whitespace()) {
                    elements.push(last);
                }
                let closed = body[i + 1..].iter().all(u8::is_ascii_whitespace);
                return Some(Split { elements, closed });
            }
            b'}' => break,
            _ => {}
        }
    }
    Some(Split {
        elements,
        closed: false,
    })
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
            self.batch.push(envelope, self.received_unix_nano);
        }
        Ok(())
    }
}

impl DecodedBatch {
    /// Keep the envelope's record, or count it as malformed.
    fn push(&mut self, envelope: Envelope<'_>, received_unix_nano: u64) {
        let mut drops = FieldDrops::default();
        match envelope.into_record(received_unix_nano, &mut drops) {
            Some(record) => {
                if matches!(record.event, Event::Unknown { .. }) {
                    self.unknown += 1;
                }
                self.fields_dropped.add(drops);
                self.records.push(record);
            }
            None => self.malformed += 1,
        }
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

    /// Found by the `telemetry_batch` fuzz target: one element that `serde_json` cannot read
    /// at all (here invalid UTF-8 in a time) stopped the walk, and the records after it were
    /// lost as one malformed record.
    #[test]
    fn an_unreadable_element_costs_only_itself() {
        let good = |text: &str| {
            format!(r#"{{"time":"2022-10-12T00:03:50.000Z","type":"function","record":"{text}"}}"#)
        };
        let deep = [[b'['; 200], [b']'; 200]].concat();
        let unreadable: [&[u8]; 4] = [
            b"{\"time\":\"\x92\x96t a time\",\"type\":\"function\",\"record\":\"x\"}",
            br#"{"time":"2022-10-12T00:03:50.000Z","type":"function","record":"\ud800"}"#,
            br#"{"time":1e999,"type":"function","record":"x"}"#,
            &deep,
        ];
        for bad in unreadable {
            let mut body = format!("[{},", good("a")).into_bytes();
            body.extend_from_slice(bad);
            body.extend_from_slice(format!(",{}, 17 ,{}]", good("b"), good("c,]}")).as_bytes());
            let batch = decode_batch(&body, RECEIVED);
            let texts: Vec<_> = batch.records.iter().map(|r| r.event.clone()).collect();
            let label = String::from_utf8_lossy(bad);
            assert_eq!(
                texts,
                ["a", "b", "c,]}"]
                    .map(|t| Event::Function(LogLine::Text(t.into())))
                    .to_vec(),
                "{label}"
            );
            // The unreadable element and the 17.
            assert_eq!(batch.malformed, 2, "{label}");
        }
    }

    #[test]
    fn after_an_unreadable_element_a_break_still_counts_once() {
        let body = b"[{\"type\":\"function\",\"record\":\"\xff\"},{\"type\":\"function\",\"record\":\"ok\"},{\"type\":\"func";
        let batch = decode_batch(body, RECEIVED);
        assert_eq!(batch.records.len(), 1);
        assert_eq!(batch.malformed, 2);
        let trailing = b"[{\"type\":\"function\",\"record\":\"\xff\"},{\"type\":\"function\",\"record\":\"ok\"}] x";
        let batch = decode_batch(trailing, RECEIVED);
        assert_eq!((batch.records.len(), batch.malformed), (1, 2));
    }

    #[test]
    fn elements_are_split_by_brackets_outside_strings() {
        let split = split_elements(br#" [ {"a":"],}\"{"} , [1,[2]] ,"x",] "#).unwrap();
        assert_eq!(
            split.elements,
            [&br#" {"a":"],}\"{"} "#[..], b" [1,[2]] ", br#""x""#, b""]
        );
        assert!(split.closed);
        assert_eq!(split_elements(b"[]").unwrap().elements.len(), 0);
        assert!(!split_elements(b"[1,2").unwrap().closed);
        assert!(!split_elements(b"[1}").unwrap().closed);
        assert!(!split_elements(b"[1] 2").unwrap().closed);
        assert_eq!(split_elements(b" {}"), None);
        assert_eq!(split_elements(b""), None);
    }

    #[test]
    fn empty_array_is_nothing() {
        assert_eq!(decode_batch(b" [ ] ", RECEIVED), DecodedBatch::default());
    }
}
