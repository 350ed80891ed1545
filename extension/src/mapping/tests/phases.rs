//! Init and SnapStart restore: which phase is the cold start, and ids that differ between
//! restored environments.

use super::{NOW, Run, attr, counter, histogram, span, str_attr};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

#[test]
fn snapstart_restore_is_the_cold_start() {
    let mut run = Run::new();
    // What this environment's processes used: not the snapshot's init, which ran elsewhere.
    run.mapper
        .on_init_usage(crate::intake::environment::InitUsage {
            cpu_user: 0.5,
            cpu_system: 0.1,
            contrail_cpu: 0.01,
            rss: 50 << 20,
            rss_peak: 60 << 20,
        });
    let snapshot_init = br#"[
        {"time":"2022-10-01T09:00:00.000Z","type":"platform.initStart","record":{"initializationType":"snap-start","phase":"init"}},
        {"time":"2022-10-01T09:00:01.000Z","type":"platform.initRuntimeDone","record":{"initializationType":"snap-start","phase":"init","status":"success"}},
        {"time":"2022-10-01T09:00:01.100Z","type":"platform.initReport","record":{"initializationType":"snap-start","phase":"init","metrics":{"durationMs":1100.0}}}]"#;
    run.batch(snapshot_init);
    run.feed(&[
        "platform.restoreStart.json",
        "platform.restoreRuntimeDone.json",
        "platform.restoreReport.json",
    ]);
    run.invoke(1);
    run.feed(&["platform.start.json", "platform.runtimeDone.json"]);
    let all = run.spans();
    let init = span(&all, "aws.lambda.init");
    assert_eq!(
        attr(&init.attributes, "aws.lambda.snapstart.snapshot"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(
        attr(&init.attributes, "faas.coldstart"),
        Some(&Value::BoolValue(false))
    );
    assert_eq!(
        attr(&init.attributes, "aws.lambda.function.cpu.user_time"),
        None
    );
    let restore = span(&all, "aws.lambda.restore");
    assert_eq!(
        restore.end_time_unix_nano - restore.start_time_unix_nano,
        260_000_000
    );
    assert_eq!(
        attr(&restore.attributes, "faas.coldstart"),
        Some(&Value::BoolValue(true))
    );
    let inv = span(&all, "orders");
    assert_eq!(
        attr(&inv.attributes, "faas.coldstart"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(inv.links.len(), 1);
    assert_eq!(inv.links[0].span_id, restore.span_id);
    run.collect(NOW);
    let ms = run.metrics();
    assert_eq!(
        histogram(&ms, "faas.init_duration"),
        None,
        "the snapshot's init is not this environment's"
    );
    assert_eq!(
        histogram(&ms, "aws.lambda.restore_duration"),
        Some((1, 0.26))
    );
    assert_eq!(counter(&ms, "faas.coldstarts"), Some(1));
}

#[test]
fn provisioned_concurrency_is_not_a_cold_start() {
    let mut run = Run::new();
    let init = br#"[
        {"time":"2022-10-12T00:00:00.000Z","type":"platform.initStart","record":{"initializationType":"provisioned-concurrency","phase":"init"}},
        {"time":"2022-10-12T00:00:00.800Z","type":"platform.initReport","record":{"initializationType":"provisioned-concurrency","phase":"init","status":"success","metrics":{"durationMs":800.0}}}]"#;
    run.batch(init);
    run.invoke(1);
    run.feed(&["platform.start.json", "platform.runtimeDone.json"]);
    let all = run.spans();
    let init = span(&all, "aws.lambda.init");
    assert_eq!(
        str_attr(&init.attributes, "aws.lambda.initialization_type"),
        Some("provisioned-concurrency")
    );
    assert_eq!(
        attr(&init.attributes, "faas.coldstart"),
        Some(&Value::BoolValue(false))
    );
    let inv = span(&all, "orders");
    assert_eq!(
        attr(&inv.attributes, "faas.coldstart"),
        Some(&Value::BoolValue(false))
    );
    assert!(inv.links.is_empty());
    run.collect(NOW);
    let ms = run.metrics();
    assert_eq!(counter(&ms, "faas.coldstarts"), None);
    assert_eq!(histogram(&ms, "faas.init_duration"), Some((1, 0.8)));
}

/// Environments restored from one snapshot share its id generator's state; their restore spans
/// must still get different ids.
#[test]
fn restored_environments_do_not_repeat_ids() {
    let restore_span = |instance: &str| {
        let mut run = Run::new();
        let batch = format!(
            r#"[{{"time":"2022-10-12T00:00:14.000Z","type":"platform.restoreStart","record":{{"instanceId":"{instance}"}}}},
               {{"time":"2022-10-12T00:00:14.200Z","type":"platform.restoreRuntimeDone","record":{{"status":"success"}}}},
               {{"time":"2022-10-12T00:00:14.260Z","type":"platform.restoreReport","record":{{"status":"success","metrics":{{"durationMs":260.0}}}}}}]"#
        );
        run.batch(batch.as_bytes());
        span(&run.spans(), "aws.lambda.restore").clone()
    };
    let a = restore_span("2022/10/12/[3]aaaaaaaaaaaa");
    let b = restore_span("2022/10/12/[3]bbbbbbbbbbbb");
    assert_ne!(a.span_id, b.span_id);
    assert_ne!(a.trace_id, b.trace_id);
}

/// The report's `initDurationMs` is the init duration when no `platform.initReport` came (it
/// was dropped, or comes late); when both come, in either order, it is counted once.
#[test]
fn init_duration_comes_from_the_report_when_the_init_report_is_missing_and_counts_once() {
    let invocation = [
        "platform.start.json",
        "platform.runtimeDone.json",
        "platform.report.json",
    ];
    let orders: [&[&str]; 3] = [
        // initReport lost.
        &["platform.initStart.json", "platform.initRuntimeDone.json"],
        // initReport first, as usual.
        &[
            "platform.initStart.json",
            "platform.initRuntimeDone.json",
            "platform.initReport.json",
        ],
        // Every init record lost.
        &[],
    ];
    for before in orders {
        let mut run = Run::new();
        run.feed(before);
        run.invoke(1_665_532_815_299_000_000);
        run.feed(&invocation);
        run.collect(NOW);
        assert_eq!(
            histogram(&run.metrics(), "faas.init_duration"),
            Some((1, 0.2005)),
            "{before:?}"
        );
    }
    // The report first, the initReport late.
    let mut run = Run::new();
    run.feed(&["platform.initStart.json"]);
    run.invoke(1_665_532_815_299_000_000);
    run.feed(&invocation);
    run.feed(&["platform.initReport.json"]);
    run.collect(NOW);
    assert_eq!(
        histogram(&run.metrics(), "faas.init_duration"),
        Some((1, 0.2005))
    );
}

/// A SnapStart report's `restoreDurationMs` is the restore duration when no
/// `platform.restoreReport` came; when both come it is counted once.
#[test]
fn restore_duration_comes_from_the_report_when_the_restore_report_is_missing_and_counts_once() {
    let invocation = [
        "platform.start.json",
        "platform.runtimeDone.json",
        "platform.report.snapstart.json",
    ];
    for (before, after, want) in [
        (vec!["platform.restoreStart.json"], vec![], 0.41287),
        (
            vec!["platform.restoreStart.json", "platform.restoreReport.json"],
            vec![],
            0.26,
        ),
        (
            vec!["platform.restoreStart.json"],
            vec!["platform.restoreReport.json"],
            0.41287,
        ),
    ] {
        let mut run = Run::new();
        run.feed(&before);
        run.invoke(1_665_532_815_299_000_000);
        run.feed(&invocation);
        run.feed(&after);
        run.collect(NOW);
        assert_eq!(
            histogram(&run.metrics(), "aws.lambda.restore_duration"),
            Some((1, want)),
            "{before:?} {after:?}"
        );
    }
}

#[test]
fn a_failed_init_is_counted_and_a_successful_one_is_not() {
    let mut run = Run::new();
    run.batch(br#"[
        {"time":"2022-10-12T00:00:15.000Z","type":"platform.initStart","record":{"initializationType":"on-demand","phase":"init"}},
        {"time":"2022-10-12T00:00:15.265Z","type":"platform.initReport","record":{"initializationType":"on-demand","phase":"init","status":"error","errorType":"Runtime.ExitError","metrics":{"durationMs":265.0}}}]"#);
    let all = run.spans();
    let init = span(&all, "aws.lambda.init");
    assert_eq!(
        str_attr(&init.attributes, "error.type"),
        Some("Runtime.ExitError")
    );
    run.collect(NOW);
    assert_eq!(counter(&run.metrics(), "aws.lambda.init.failures"), Some(1));

    let mut ok = Run::new();
    ok.feed(&["platform.initStart.json", "platform.initReport.json"]);
    ok.collect(NOW);
    assert_eq!(counter(&ok.metrics(), "aws.lambda.init.failures"), None);
}
