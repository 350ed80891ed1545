//! What the environment's processes used: the invocation span's attributes and events, the
//! metrics.

use super::*;
use crate::intake::environment::Usage;

fn usage() -> Usage {
    Usage {
        request_id: RID.to_owned(),
        processes: 2,
        cpu_user: 0.25,
        cpu_system: 0.05,
        contrail_cpu: 0.000_08,
        rss_end: 40 << 20,
        rss_peak: 96 << 20,
        peak_exact: true,
        net_rx: Some(1000),
        net_tx: Some(500),
        fds: 12,
        threads: 5,
        tmp_used: Some(8 << 20),
        connections: [(443, 1), (5432, 3)].into_iter().collect(),
        opened: [(5432, 2)].into_iter().collect(),
        samples: vec![(NOW + 1, 50 << 20), (NOW + 2, 90 << 20)],
        end_ns: NOW + 3,
    }
}

fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key) {
        Some(Value::IntValue(v)) => Some(*v),
        _ => None,
    }
}

fn double_attr(attrs: &[KeyValue], key: &str) -> Option<f64> {
    match attr(attrs, key) {
        Some(Value::DoubleValue(v)) => Some(*v),
        _ => None,
    }
}

#[test]
fn readings_become_attributes_and_events_of_the_invocation_span() {
    let mut run = Run::new();
    run.invoke(NOW);
    run.feed(&["platform.start.json"]);
    run.mapper.on_usage(usage(), NOW + 3);
    run.feed(&["platform.runtimeDone.json"]);
    let spans = run.spans();
    let s = span(&spans, "orders");
    let a = &s.attributes;
    assert_eq!(
        double_attr(a, "aws.lambda.function.cpu.user_time"),
        Some(0.25)
    );
    assert_eq!(
        double_attr(a, "aws.lambda.function.cpu.system_time"),
        Some(0.05)
    );
    assert_eq!(
        double_attr(a, "aws.lambda.contrail.cpu_time"),
        Some(0.000_08)
    );
    assert_eq!(
        int_attr(a, "aws.lambda.function.memory.peak"),
        Some(96 << 20)
    );
    assert_eq!(
        int_attr(a, "aws.lambda.function.memory.usage"),
        Some(40 << 20)
    );
    assert_eq!(
        str_attr(a, "aws.lambda.function.memory.peak_source"),
        Some("kernel")
    );
    assert_eq!(int_attr(a, "aws.lambda.function.threads"), Some(5));
    assert_eq!(
        int_attr(a, "aws.lambda.function.file_descriptors"),
        Some(12)
    );
    assert_eq!(int_attr(a, "aws.lambda.network.io.receive"), Some(1000));
    assert_eq!(int_attr(a, "aws.lambda.network.io.transmit"), Some(500));
    assert_eq!(int_attr(a, "aws.lambda.tmp.usage"), Some(8 << 20));
    assert_eq!(int_attr(a, "aws.lambda.connections.established"), Some(4));
    assert_eq!(int_attr(a, "aws.lambda.connections.opened"), Some(2));
    let samples: Vec<i64> = s
        .events
        .iter()
        .filter(|e| e.name == "aws.lambda.memory.sample")
        .filter_map(|e| int_attr(&e.attributes, "process.memory.usage"))
        .collect();
    assert_eq!(samples, vec![50 << 20, 90 << 20]);
    let ports: Vec<(i64, i64, i64)> = s
        .events
        .iter()
        .filter(|e| e.name == "aws.lambda.connections")
        .map(|e| {
            (
                int_attr(&e.attributes, "server.port").unwrap_or(-1),
                int_attr(&e.attributes, "aws.lambda.connections.established").unwrap_or(-1),
                int_attr(&e.attributes, "aws.lambda.connections.opened").unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(ports, vec![(443, 1, 0), (5432, 3, 2)]);
    assert!(
        s.events
            .iter()
            .filter(|e| e.name == "aws.lambda.connections")
            .all(|e| e.time_unix_nano == NOW + 3),
        "the connections are as of the end"
    );
}

#[test]
fn readings_become_metrics_with_their_series() {
    let mut run = Run::new();
    run.invoke(NOW);
    run.mapper.on_usage(usage(), NOW + 3);
    run.collect(NOW + 10);
    let metrics = run.metrics();
    let cpu = metrics
        .iter()
        .find(|m| m.name == "faas.cpu_usage")
        .expect("faas.cpu_usage");
    assert_eq!(
        metrics
            .iter()
            .filter(|m| m.name == "faas.cpu_usage")
            .count(),
        1
    );
    let Some(metric::Data::Histogram(h)) = &cpu.data else {
        panic!("a histogram")
    };
    let modes: Vec<(Option<&str>, Option<f64>)> = h
        .data_points
        .iter()
        .map(|p| (str_attr(&p.attributes, "cpu.mode"), p.sum))
        .collect();
    assert_eq!(
        modes,
        vec![(Some("user"), Some(0.25)), (Some("system"), Some(0.05))]
    );
    let net = metrics
        .iter()
        .find(|m| m.name == "faas.net_io")
        .expect("faas.net_io");
    let Some(metric::Data::Histogram(h)) = &net.data else {
        panic!("a histogram")
    };
    assert_eq!(h.data_points.len(), 2);
    assert_eq!(counter(&metrics, "aws.lambda.connections.opened"), Some(2));
    let conns = metrics
        .iter()
        .find(|m| m.name == "aws.lambda.connections")
        .expect("aws.lambda.connections");
    let Some(metric::Data::Gauge(g)) = &conns.data else {
        panic!("a gauge")
    };
    let by_port: Vec<(Option<i64>, Option<number_data_point::Value>)> = g
        .data_points
        .iter()
        .map(|p| (int_attr(&p.attributes, "server.port"), p.value))
        .collect();
    assert_eq!(
        by_port,
        vec![
            (Some(443), Some(number_data_point::Value::AsInt(1))),
            (Some(5432), Some(number_data_point::Value::AsInt(3)))
        ]
    );
    // The next invocation closed every connection: the ports stay, at 0.
    let mut next = usage();
    next.connections.clear();
    next.opened.clear();
    run.clear();
    run.mapper.on_usage(next, NOW + 20);
    run.collect(NOW + 30);
    let metrics = run.metrics();
    let Some(metric::Data::Gauge(g)) = metrics
        .iter()
        .find(|m| m.name == "aws.lambda.connections")
        .and_then(|m| m.data.clone())
    else {
        panic!("a gauge")
    };
    assert!(
        g.data_points
            .iter()
            .all(|p| p.value == Some(number_data_point::Value::AsInt(0)))
    );
}
