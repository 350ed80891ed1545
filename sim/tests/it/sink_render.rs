//! Rendering a crafted `Received`: structure, order, indentation, log placement, metrics.

use crate::support::otlp::*;
use contrail_sim::sink::{Received, render};

/// Two traces (the later one listed first in arrival), an orphan, a duplicate, logs with and
/// without trace, a trace known only from its logs, and metrics.
fn crafted() -> Received {
    let mut failed = span(1, 4, 2, "runtimeOverhead", 80, 100);
    failed.status = error_status("Task timed out");
    let mut received = Received::default();
    received.traces.push(traces(
        "late-service",
        vec![span(2, 21, 0, "second-invoke", 1000, 1050)],
    ));
    received.traces.push(traces(
        "checkout",
        vec![
            // Children before their parent, out of time order.
            span(1, 3, 2, "responseDuration", 40, 60),
            span(1, 2, 1, "invoke", 10, 100),
            failed,
            span(1, 1, 0, "coldstart-root", 0, 100),
            // Its parent (id 99) never arrived.
            span(1, 5, 99, "lost-child", 20, 30),
            span(1, 6, 5, "grandchild-of-lost", 22, 25),
        ],
    ));
    // The same invoke span again.
    received
        .traces
        .push(traces("checkout", vec![span(1, 2, 1, "invoke", 10, 100)]));
    received.logs.push(logs(
        "checkout",
        vec![
            log(1, 3, 50, "ERROR", "second line"),
            log(1, 2, 15, "INFO", "first line\nwith newline"),
            log(0, 0, 5, "WARN", "platform says hi"),
            log(3, 0, 7, "DEBUG", "trace without spans"),
        ],
    ));
    // Two exports of the same two metrics, which the summary adds up: the invocation count
    // points (value, time, cold start) and the durations of a histogram at a time.
    type Export<'a> = (&'a [(i64, u64, &'a str)], &'a [f64], u64);
    let exports: [Export<'_>; 2] = [
        (&[(1, 1, "true"), (2, 2, "false")], &[100.0, 40.5], 3),
        (&[(3, 4, "false")], &[10.0], 5),
    ];
    for (points, durations, at) in exports {
        let points = points
            .iter()
            .map(|&(value, at, cold)| int_point(value, at, vec![string_kv("faas.coldstart", cold)]))
            .collect();
        received.metrics.push(metrics(
            "checkout",
            vec![
                delta_sum("faas.invocations", "{invocation}", points),
                delta_histogram("faas.duration", "ms", durations, at),
            ],
        ));
    }
    received
}

fn line_index(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line contains {needle:?} in:\n{text}"))
}

fn line<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines().nth(line_index(text, needle)).unwrap()
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

#[test]
fn traces_are_waterfalls_with_their_logs_underneath() {
    let text = render(&crafted());
    println!("{text}");

    // Traces in order of their start, each header with trace id and service.
    let t1 = line_index(&text, &format!("== trace {}01", "ab".repeat(15)));
    let t3 = line_index(&text, &format!("== trace {}03", "ab".repeat(15)));
    let t2 = line_index(&text, &format!("== trace {}02", "ab".repeat(15)));
    assert!(t1 < t3 && t3 < t2, "{text}");
    assert!(line(&text, "ab01 ").contains("service.name=checkout faas.name=checkout"));
    assert!(line(&text, "ab01 ").contains("6 spans"));
    assert!(line(&text, "ab02 ").contains("service.name=late-service"));
    assert!(line(&text, "ab03 ").contains("no spans received"));

    // Root first, children indented under their parent, siblings by start time.
    let root = line_index(&text, "coldstart-root");
    let invoke = line_index(&text, " invoke ");
    let duration = line_index(&text, "responseDuration");
    let overhead = line_index(&text, "runtimeOverhead");
    assert!(t1 < root && root < invoke && invoke < duration && duration < overhead);
    let root_indent = indent(line(&text, "coldstart-root"));
    assert_eq!(indent(line(&text, " invoke ")), root_indent + 2);
    assert_eq!(indent(line(&text, "responseDuration")), root_indent + 4);
    assert_eq!(indent(line(&text, "runtimeOverhead")), root_indent + 4);

    // Durations, status, duplicates.
    assert!(line(&text, "coldstart-root").contains("100.000 ms"));
    assert!(line(&text, "coldstart-root").ends_with("|  -"));
    assert!(line(&text, "responseDuration").contains("20.000 ms"));
    assert!(line(&text, "runtimeOverhead").contains("|  ERROR: Task timed out"));
    assert!(!line(&text, "responseDuration").contains("ERROR"));
    assert!(line(&text, " invoke ").contains("(received 2x)"));

    // Bars: 40 columns; the root spans all of them, a child starts further right.
    let bar = |needle: &str| -> String {
        let l = line(&text, needle);
        let start = l.find('|').unwrap();
        let end = l.rfind('|').unwrap();
        l[start + 1..end].to_owned()
    };
    assert_eq!(bar("coldstart-root"), "=".repeat(40));
    let child = bar("responseDuration");
    assert_eq!(child.len(), 40);
    assert_eq!(child.trim_start().len(), 40 - 16, "{child:?}");
    assert_eq!(child.trim().len(), 8, "{child:?}");

    // Orphans stay in their trace, after the tree, with their own children under them.
    let orphans = line_index(&text, "orphans (parent span not received)");
    let lost = line_index(&text, "lost-child");
    let grandchild = line_index(&text, "grandchild-of-lost");
    assert!(overhead < orphans && orphans < lost && lost < grandchild && grandchild < t3);
    assert_eq!(
        indent(line(&text, "grandchild-of-lost")),
        indent(line(&text, "lost-child")) + 2
    );

    // Logs of trace 1 under its spans, in time order, with severity and span name.
    let logs = line_index(&text, "  logs:");
    let first = line_index(&text, "first line");
    let second = line_index(&text, "second line");
    assert!(grandchild < logs && logs < first && first < second && second < t3);
    assert!(line(&text, "first line").contains("+15.000 ms"));
    assert!(line(&text, "first line").contains("INFO"));
    assert!(line(&text, "first line").contains("first line\\nwith newline  [invoke]"));
    assert!(line(&text, "second line").contains("ERROR"));
    assert!(line(&text, "second line").contains("[responseDuration]"));
    // The trace known only from a log line shows that line.
    let orphan_log = line_index(&text, "trace without spans");
    assert!(t3 < orphan_log && orphan_log < t2);

    // Logs without a trace id in their own section after the traces.
    let untraced = line_index(&text, "== logs without a trace id (1)");
    let hi = line_index(&text, "platform says hi");
    assert!(t2 < untraced && untraced < hi);
    assert!(line(&text, "platform says hi").contains("WARN"));
}

#[test]
fn metrics_summary_adds_up_deltas_per_attribute_set() {
    let text = render(&crafted());
    let section = line_index(&text, "== metrics (2)");
    let invocations = line_index(
        &text,
        "faas.invocations ({invocation})  sum, delta, monotonic",
    );
    let duration = line_index(&text, "faas.duration (ms)  histogram, delta");
    assert!(section < invocations && invocations < duration);
    assert!(line(&text, "faas.coldstart=true").contains("sum=1  (1 points)"));
    assert!(line(&text, "faas.coldstart=false").contains("sum=5  (2 points)"));
    let hist = text.lines().nth(duration + 1).unwrap();
    assert!(hist.contains("(no attributes)"), "{hist}");
    assert!(hist.contains("count=3 sum=150.5 min=10 max=100"), "{hist}");
}

#[test]
fn header_counts_and_empty_input() {
    let mut received = crafted();
    received.counters.requests = 6;
    received.counters.bytes = 1234;
    received.counters.bad_requests = 1;
    received.counters.rejected = 2;
    let text = render(&received);
    let first = text.lines().next().unwrap();
    assert!(first.contains("6 requests accepted (traces 3, metrics 2, logs 1), 1234 bytes"));
    assert!(first.contains("1 bad, 2 answered with a scripted error"));
    assert!(text.contains("1 spans arrived more than once"));

    let empty = render(&Received::default());
    assert_eq!(empty.lines().count(), 1, "{empty}");
    assert!(empty.contains("0 requests accepted"));
}
