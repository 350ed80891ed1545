//! Cost, utilization and the cold-start breakdown, from records whose figures are worked out
//! by hand here.

use super::*;
use crate::mapping::OwnInit;
use crate::mapping::cost::{Architecture, CostConfig};

/// 2022-10-12T00:00:00Z, the day of the fixtures.
const DAY: u64 = 1_665_532_800_000_000_000;
const MS: u64 = 1_000_000;

fn priced() -> Run {
    let env = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
    ];
    let (cost, warnings) = CostConfig::from_env(&env, Architecture::X86_64);
    assert!(warnings.is_empty());
    Run::with(MappingConfig {
        cost,
        ..MappingConfig::default()
    })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= b.abs() * 1e-9
}

#[test]
fn the_fixture_report_costs_what_the_prices_say() {
    let mut run = priced();
    run.feed(COLD_INIT);
    run.invoke(NOW);
    run.feed(&[
        "platform.start.json",
        "platform.runtimeDone.json",
        "platform.report.json",
    ]);
    run.collect(NOW);
    let m = run.metrics();
    // Billed 125 ms at 512 MB: 0.0625 GB-s × $0.0000166667 = $0.00000104166875, plus the
    // $0.0000002 request charge: $0.00000124166875.
    let (count, usd) = histogram(&m, "aws.lambda.invocation.cost").unwrap();
    assert_eq!(count, 1);
    assert!(close(usd, 0.000_001_241_668_75), "{usd}");
    // The on-demand INIT of 200.5 ms, billed as 201 ms: 0.1005 GB-s × $0.0000166667.
    let (count, usd) = histogram(&m, "aws.lambda.init.cost").unwrap();
    assert_eq!(count, 1);
    assert!(close(usd, 0.000_001_675_003_35), "{usd}");
    assert_eq!(histogram(&m, "aws.lambda.restore.cost"), None);
}

#[test]
fn without_prices_nothing_is_estimated() {
    let mut run = Run::new();
    run.feed(COLD_INIT);
    run.invoke(NOW);
    run.feed(&["platform.start.json", "platform.report.json"]);
    run.collect(NOW);
    let m = run.metrics();
    assert!(m.iter().all(|m| !m.name.ends_with(".cost")), "{m:?}");
    assert!(gauge(&m, "aws.lambda.environment.utilization").is_some());
}

#[test]
fn a_snapstart_restore_costs_the_memory_restored() {
    let mut run = priced();
    run.feed(&[
        "platform.restoreStart.json",
        "platform.restoreRuntimeDone.json",
        "platform.restoreReport.json",
    ]);
    // No report after it: priced at shutdown without runtime hooks. 512 MB = 0.5 GB ×
    // $0.0001397998.
    run.finish(NOW);
    let (count, usd) = histogram(&run.metrics(), "aws.lambda.restore.cost").unwrap();
    assert_eq!(count, 1);
    assert!(close(usd, 0.000_069_899_9), "{usd}");
    assert_eq!(histogram(&run.metrics(), "aws.lambda.init.cost"), None);
}

#[test]
fn a_restore_s_first_report_adds_its_billed_hooks() {
    let mut run = priced();
    run.feed(&[
        "platform.restoreStart.json",
        "platform.restoreRuntimeDone.json",
        "platform.restoreReport.json",
    ]);
    run.invoke(NOW);
    run.feed(&["platform.start.json", "platform.report.snapstart.json"]);
    run.finish(NOW);
    let m = run.metrics();
    // 2,048 MB restored: 2 GB × $0.0001397998 = $0.0002795996; 117 ms of billed hooks at 2 GB:
    // 0.234 GB-s × $0.0000166667 = $0.0000039000078. Once, not again at SHUTDOWN.
    let (count, usd) = histogram(&m, "aws.lambda.restore.cost").unwrap();
    assert_eq!(count, 1);
    assert!(close(usd, 0.000_283_499_607_8), "{usd}");
    // The invocation: 125 ms at 2 GB = 0.25 GB-s × $0.0000166667 + $0.0000002.
    let (_, usd) = histogram(&m, "aws.lambda.invocation.cost").unwrap();
    assert!(close(usd, 0.000_004_366_675), "{usd}");
    assert_eq!(
        histogram(&m, "aws.lambda.init.cost"),
        None,
        "a restore is no INIT"
    );
}

fn at(ms: u64) -> String {
    let secs = ms / 1000;
    format!("2022-10-12T00:00:{:02}.{:03}Z", secs, ms % 1000)
}

/// An invocation starting at `start_ms` for `duration_ms`, as its start and report records.
fn invocation(id: &str, start_ms: u64, duration_ms: u64) -> String {
    format!(
        r#"[{{"time":"{}","type":"platform.start","record":{{"requestId":"{id}"}}}},
           {{"time":"{}","type":"platform.report","record":{{"requestId":"{id}","status":"success","metrics":{{"durationMs":{duration_ms},"billedDurationMs":{duration_ms},"memorySizeMB":512,"maxMemoryUsedMB":80}}}}}}]"#,
        at(start_ms),
        at(start_ms + duration_ms),
    )
}

fn init(end_ms: u64) -> String {
    format!(
        r#"[{{"time":"{}","type":"platform.initStart","record":{{"initializationType":"on-demand","phase":"init"}}}},
           {{"time":"{}","type":"platform.initReport","record":{{"initializationType":"on-demand","phase":"init","status":"success","metrics":{{"durationMs":{end_ms}}}}}}}]"#,
        at(0),
        at(end_ms),
    )
}

#[test]
fn a_scripted_schedule_gives_the_utilization_computed_by_hand() {
    let mut run = Run::new();
    // Init 0–400 ms; busy 100 ms; idle 900 ms; busy 250 ms; idle 4,750 ms; busy 1,000 ms.
    run.batch(init(400).as_bytes());
    run.batch(invocation("a", 400, 100).as_bytes());
    run.batch(invocation("b", 1_400, 250).as_bytes());
    run.batch(invocation("c", 6_400, 1_000).as_bytes());
    // Observed at a flush at 10 s: 1,350 ms busy of 10,000 ms.
    run.collect(DAY + 10_000 * MS);
    let m = run.metrics();
    let u = gauge(&m, "aws.lambda.environment.utilization").unwrap();
    assert!((u - 0.135).abs() < 1e-9, "{u}");
    assert!((gauge(&m, "aws.lambda.environment.busy_time").unwrap() - 1.35).abs() < 1e-9);
    assert!((gauge(&m, "aws.lambda.environment.lifetime").unwrap() - 10.0).abs() < 1e-9);
    assert_eq!(gauge(&m, "aws.lambda.environment.invocations"), Some(3.0));
    // Gaps 0, 0.9 s and 4.75 s.
    let (count, sum) = histogram(&m, "aws.lambda.environment.idle_gap").unwrap();
    assert_eq!(count, 3);
    assert!((sum - 5.65).abs() < 1e-9, "{sum}");
    assert_eq!(counter(&m, "aws.lambda.environment.unused_init"), None);
    // At SHUTDOWN 10 s later, idle since 7.4 s: 1.35 ÷ 20 = 6.75 %.
    run.clear();
    run.finish(DAY + 20_000 * MS);
    let u = gauge(&run.metrics(), "aws.lambda.environment.utilization").unwrap();
    assert!((u - 0.0675).abs() < 1e-9, "{u}");
}

#[test]
fn an_environment_shut_down_without_an_invocation_reports_unused_init() {
    let mut run = Run::new();
    run.batch(init(300).as_bytes());
    run.collect(DAY + 1_000 * MS);
    assert_eq!(
        counter(&run.metrics(), "aws.lambda.environment.unused_init"),
        None,
        "not before SHUTDOWN"
    );
    run.clear();
    run.finish(DAY + 60_000 * MS);
    let m = run.metrics();
    assert_eq!(counter(&m, "aws.lambda.environment.unused_init"), Some(1));
    assert_eq!(gauge(&m, "aws.lambda.environment.invocations"), Some(0.0));
    assert_eq!(gauge(&m, "aws.lambda.environment.utilization"), Some(0.0));
    assert!((gauge(&m, "aws.lambda.environment.lifetime").unwrap() - 60.0).abs() < 1e-9);
}

#[test]
fn init_has_contrail_runtime_and_extension_children() {
    // Contrail's own times known before the init span is emitted.
    let own = OwnInit {
        process_start_ns: DAY + 15_070 * MS,
        first_next_ns: DAY + 15_090 * MS,
    };
    let mut run = Run::new();
    run.mapper.on_own_init(own);
    run.feed(COLD_INIT);
    let spans = run.spans();
    let init = span(&spans, "aws.lambda.init");
    let times = |name: &str| {
        let s = span(&spans, name);
        assert_eq!(s.parent_span_id, init.span_id, "{name}");
        assert_eq!(s.trace_id, init.trace_id, "{name}");
        (s.start_time_unix_nano, s.end_time_unix_nano)
    };
    // initStart 15.064 s, initRuntimeDone 15.264 s, initReport: 200.5 ms from the start.
    assert_eq!(
        times("aws.lambda.init.runtime"),
        (DAY + 15_064 * MS, DAY + 15_264 * MS)
    );
    assert_eq!(
        times("aws.lambda.init.extensions"),
        (DAY + 15_264 * MS, DAY + 15_264 * MS + 500_000)
    );
    assert_eq!(
        times("aws.lambda.init.contrail"),
        (own.process_start_ns, own.first_next_ns)
    );
    // Told again, or told after the init span: one span, under the same parent.
    run.mapper.on_own_init(own);
    run.collect(NOW);
    let n = run
        .spans()
        .iter()
        .filter(|s| s.name == "aws.lambda.init.contrail")
        .count();
    assert_eq!(n, 1);

    let mut late = Run::new();
    late.feed(COLD_INIT);
    assert!(
        late.spans()
            .iter()
            .all(|s| s.name != "aws.lambda.init.contrail")
    );
    late.mapper.on_own_init(own);
    late.collect(NOW);
    let spans = late.spans();
    let init = span(&spans, "aws.lambda.init");
    assert_eq!(
        span(&spans, "aws.lambda.init.contrail").parent_span_id,
        init.span_id
    );
}
