//! Every Telemetry API fixture decodes to the event it stands for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::intake::telemetry::decode::{DecodedBatch, decode_batch};
use crate::intake::telemetry::event::{Event, LogLine};
use crate::intake::telemetry::record::FieldDrops;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/telemetry/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// When the fixtures arrive: after every time they carry.
const RECEIVED: u64 = 1_800_000_000_000_000_000;

fn decode(name: &str) -> DecodedBatch {
    decode_batch(&fixture(name), RECEIVED)
}

#[test]
fn every_type_decodes() {
    let table: &[(&str, &str, usize)] = &[
        ("platform.initStart.json", "platform.initStart", 1),
        (
            "platform.initRuntimeDone.json",
            "platform.initRuntimeDone",
            1,
        ),
        ("platform.initReport.json", "platform.initReport", 1),
        ("platform.start.json", "platform.start", 1),
        ("platform.runtimeDone.json", "platform.runtimeDone", 1),
        ("platform.runtimeDone.oom.json", "platform.runtimeDone", 1),
        ("platform.report.json", "platform.report", 1),
        ("platform.report.timeout.json", "platform.report", 1),
        ("platform.report.no-status.json", "platform.report", 1),
        ("platform.report.snapstart.json", "platform.report", 1),
        (
            "platform.report.managed-instances.json",
            "platform.report",
            1,
        ),
        ("platform.restoreStart.json", "platform.restoreStart", 1),
        (
            "platform.restoreRuntimeDone.json",
            "platform.restoreRuntimeDone",
            1,
        ),
        ("platform.restoreReport.json", "platform.restoreReport", 1),
        ("platform.extension.json", "platform.extension", 1),
        (
            "platform.telemetrySubscription.json",
            "platform.telemetrySubscription",
            1,
        ),
        ("platform.logsDropped.json", "platform.logsDropped", 1),
        ("function.text.json", "function", 3),
        ("function.json.json", "function", 1),
        ("extension.text.json", "extension", 1),
        ("unknown.json", "platform.futureThing", 1),
    ];
    for (file, kind, count) in table {
        let batch = decode(file);
        assert_eq!(batch.malformed, 0, "{file}");
        assert_eq!(batch.records.len(), *count, "{file}");
        for r in &batch.records {
            assert_eq!(r.event.kind(), *kind, "{file}");
            assert!(r.time_unix_nano > 1_600_000_000_000_000_000, "{file}");
        }
        let unknown = u64::from(*kind == "platform.futureThing");
        assert_eq!(batch.unknown, unknown, "{file}");
        // Only AWS's own example of a report lacks a field the schema requires (status).
        let missing = u64::from(*file == "platform.report.no-status.json");
        assert_eq!(
            batch.fields_dropped,
            FieldDrops {
                missing,
                ..FieldDrops::default()
            },
            "{file}"
        );
    }
}

#[test]
fn fields_are_decoded() {
    let b = decode("platform.initStart.json");
    let Event::InitStart(s) = &b.records[0].event else {
        panic!()
    };
    assert_eq!(s.initialization_type.as_deref(), Some("on-demand"));
    assert_eq!(s.phase.as_deref(), Some("init"));
    assert_eq!(s.function_name.as_deref(), Some("orders"));
    assert_eq!(s.instance_max_memory, Some(3008));
    assert!(s.instance_id.as_deref().unwrap().starts_with("2022/10/12/"));

    let b = decode("platform.start.json");
    let Event::Start(s) = &b.records[0].event else {
        panic!()
    };
    assert_eq!(s.request_id, "8f5c3a2e-6b1d-4e7a-9c0f-2d3b4a5c6d7e");
    let tracing = s.tracing.as_ref().unwrap();
    assert_eq!(tracing.span_id.as_deref(), Some("24cd7d670fa455f0"));
    assert_eq!(tracing.kind.as_deref(), Some("X-Amzn-Trace-Id"));

    let b = decode("platform.runtimeDone.json");
    let Event::RuntimeDone(d) = &b.records[0].event else {
        panic!()
    };
    assert_eq!(d.status.as_deref(), Some("success"));
    assert_eq!(d.spans.len(), 3);
    assert_eq!(d.spans[0].name, "responseLatency");
    assert_eq!(d.spans[0].start_unix_nano, 1_665_532_815_300_000_000);
    assert_eq!(d.spans[2].start_unix_nano, 1_665_532_815_421_500_000);
    assert_eq!((d.duration_ms, d.produced_bytes), (Some(124.5), Some(53)));

    let b = decode("platform.runtimeDone.oom.json");
    let Event::RuntimeDone(d) = &b.records[0].event else {
        panic!()
    };
    assert_eq!(d.error_type.as_deref(), Some("Runtime.OutOfMemory"));

    let b = decode("platform.report.json");
    let Event::Report(r) = &b.records[0].event else {
        panic!()
    };
    assert_eq!(r.metrics.billed_duration_ms, Some(125.0));
    assert_eq!(r.metrics.memory_size_mb, Some(512));
    assert_eq!(r.metrics.max_memory_used_mb, Some(87));
    assert_eq!(r.metrics.init_duration_ms, Some(200.5));
    assert_eq!(r.spans[0].name, "extensionOverhead");

    let b = decode("platform.report.managed-instances.json");
    let Event::Report(r) = &b.records[0].event else {
        panic!()
    };
    assert_eq!(r.metrics.duration_ms, Some(410.25));
    assert_eq!(r.metrics.billed_duration_ms, None);
    assert_eq!(r.metrics.memory_size_mb, None);

    let b = decode("platform.restoreReport.json");
    let Event::RestoreReport(r) = &b.records[0].event else {
        panic!()
    };
    assert_eq!(r.duration_ms, Some(260.0));

    let b = decode("platform.extension.json");
    let Event::Extension(e) = &b.records[0].event else {
        panic!()
    };
    assert_eq!(
        (e.name.as_deref(), e.state.as_deref()),
        (Some("contrail"), Some("Ready"))
    );
    assert_eq!(e.events, ["INVOKE", "SHUTDOWN"]);

    let b = decode("platform.logsDropped.json");
    let Event::LogsDropped(d) = &b.records[0].event else {
        panic!()
    };
    assert_eq!(
        (d.dropped_records, d.dropped_bytes),
        (Some(123), Some(12345))
    );

    let b = decode("function.json.json");
    let Event::Function(LogLine::Json(map)) = &b.records[0].event else {
        panic!()
    };
    assert_eq!(map["message"], "stock low");

    let b = decode("function.text.json");
    let Event::Function(LogLine::Text(t)) = &b.records[2].event else {
        panic!()
    };
    assert_eq!(t, "plain line without a prefix");

    let b = decode("unknown.json");
    let Event::Unknown { kind, record } = &b.records[0].event else {
        panic!()
    };
    assert_eq!(kind, "platform.futureThing");
    assert_eq!(record["answer"], 42);
}

/// Only what cannot be a record is malformed: a start without the request id that names its
/// invocation, and a number. A line whose time is not one, and a report whose metrics lack
/// the duration, are kept.
#[test]
fn malformed_records_are_counted_and_the_rest_kept() {
    let b = decode("malformed.json");
    assert_eq!(b.malformed, 2);
    assert_eq!(b.records.len(), 3);
    assert_eq!(
        b.records[0].event,
        Event::Function(LogLine::Text("x".into()))
    );
    assert_eq!(b.records[0].time_unix_nano, RECEIVED, "the time it arrived");
    assert_eq!(
        b.fields_dropped,
        FieldDrops {
            invalid_time: 1,
            invalid_value: 0,
            missing: 1,
        }
    );
    assert_eq!(b.records[1].event.kind(), "platform.report");
    assert_eq!(
        b.records[2].event,
        Event::Function(LogLine::Text("survivor".into()))
    );
}

#[test]
fn a_whole_cold_start_in_one_batch() {
    let mut body = Vec::from(&b"["[..]);
    let files = [
        "platform.initStart.json",
        "platform.initRuntimeDone.json",
        "platform.initReport.json",
        "platform.start.json",
        "function.text.json",
        "function.json.json",
        "platform.runtimeDone.json",
        "platform.report.json",
    ];
    for (i, f) in files.iter().enumerate() {
        let text = String::from_utf8(fixture(f)).unwrap();
        let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(inner.as_bytes());
    }
    body.push(b']');
    let b = decode_batch(&body, RECEIVED);
    assert_eq!((b.records.len(), b.malformed, b.unknown), (10, 0, 0));
}

/// AWS's telemetry schema reference prints `spans[].start` with a colon before the
/// milliseconds (`2022-08-02T12:01:23:521Z`): such records decode whole, with that start.
#[test]
fn documented_records_with_a_colon_before_the_milliseconds_decode_whole() {
    const START: u64 = 1_659_441_683_521_000_000;
    let b = decode("platform.runtimeDone.aws-docs.json");
    assert_eq!((b.records.len(), b.malformed), (1, 0));
    let Event::RuntimeDone(d) = &b.records[0].event else {
        panic!("{:?}", b.records[0].event)
    };
    assert_eq!(d.spans.len(), 1);
    assert_eq!(d.spans[0].start_unix_nano, START);
    assert_eq!(d.produced_bytes, Some(16));

    let b = decode("platform.restoreRuntimeDone.aws-docs.json");
    assert_eq!((b.records.len(), b.malformed), (1, 0));
    let Event::RestoreRuntimeDone(d) = &b.records[0].event else {
        panic!("{:?}", b.records[0].event)
    };
    assert_eq!(d.spans[0].start_unix_nano, START);

    let b = decode("platform.restoreReport.aws-docs.json");
    assert_eq!((b.records.len(), b.malformed), (1, 0));
    let Event::RestoreReport(r) = &b.records[0].event else {
        panic!("{:?}", b.records[0].event)
    };
    assert_eq!(r.spans[0].start_unix_nano, START);
}

/// Record times in every shape a producer was seen to write, strings and numbers.
#[test]
fn record_times_in_every_shape_decode() {
    let b = decode("times.odd.json");
    assert_eq!(b.malformed, 0);
    let times: Vec<u64> = b.records.iter().map(|r| r.time_unix_nano).collect();
    assert_eq!(
        times,
        [
            1_715_817_560_159_000_000,
            1_715_817_560_160_000_000,
            1_715_817_560_161_000_000,
            1_715_817_560_162_417_000,
            1_715_817_560_000_000_000,
            1_715_817_560_163_000_000,
            1_715_817_560_164_000_000,
            1_715_817_560_165_000_000,
            1_715_817_560_166_000_000,
        ]
    );
}

/// A bad or missing field loses that field, never the record: a span whose start is not a
/// time, a number written as a string, an object where a number belongs, a missing phase.
#[test]
fn a_bad_field_loses_only_that_field() {
    let b = decode("platform.runtimeDone.bad-fields.json");
    assert_eq!((b.records.len(), b.malformed), (1, 0));
    let Event::RuntimeDone(d) = &b.records[0].event else {
        panic!("{:?}", b.records[0].event)
    };
    let names: Vec<&str> = d.spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["responseLatency", "runtimeOverhead"]);
    assert_eq!(
        b.fields_dropped,
        FieldDrops {
            invalid_time: 1,
            ..FieldDrops::default()
        }
    );
    assert_eq!(d.spans[1].duration_ms, 4.1);
    assert_eq!(d.duration_ms, Some(245.8));
    assert_eq!(d.produced_bytes, Some(53));
    assert!(d.tracing.is_some());

    let b = decode("platform.restoreReport.bad-fields.json");
    assert_eq!((b.records.len(), b.malformed), (1, 0));
    let Event::RestoreReport(r) = &b.records[0].event else {
        panic!("{:?}", b.records[0].event)
    };
    assert_eq!(r.duration_ms, Some(183.66));
    assert!(r.spans.is_empty());
    assert_eq!(b.fields_dropped.invalid_time, 1);

    let b = decode("platform.initStart.odd-fields.json");
    assert_eq!((b.records.len(), b.malformed), (1, 0));
    let Event::InitStart(s) = &b.records[0].event else {
        panic!("{:?}", b.records[0].event)
    };
    assert_eq!(s.instance_max_memory, Some(256));
    assert_eq!(s.function_name.as_deref(), Some("checkout"));
    assert_eq!(s.phase, None);
    assert_eq!(
        b.fields_dropped,
        FieldDrops {
            missing: 1,
            ..FieldDrops::default()
        }
    );

    let b = decode("platform.report.bad-fields.json");
    assert_eq!((b.records.len(), b.malformed), (1, 0));
    let Event::Report(r) = &b.records[0].event else {
        panic!("{:?}", b.records[0].event)
    };
    assert_eq!(r.metrics.billed_duration_ms, Some(263.0));
    assert_eq!(r.metrics.memory_size_mb, Some(256));
    assert_eq!(r.metrics.max_memory_used_mb, Some(84));
    assert_eq!(r.metrics.init_duration_ms, None);
    assert!(r.spans.is_empty());
    // initDurationMs is an object, extensionOverhead's start is null (missing).
    assert_eq!(
        b.fields_dropped,
        FieldDrops {
            invalid_value: 1,
            missing: 1,
            ..FieldDrops::default()
        }
    );

    let b = decode("platform.logsDropped.bad-fields.json");
    assert_eq!((b.records.len(), b.malformed), (1, 0));
    let Event::LogsDropped(d) = &b.records[0].event else {
        panic!("{:?}", b.records[0].event)
    };
    assert_eq!(
        (d.dropped_records, d.dropped_bytes),
        (Some(123), Some(12345))
    );
    assert_eq!(
        b.fields_dropped.total(),
        0,
        "nothing lost, only read leniently"
    );
}
