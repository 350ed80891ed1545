//! What the environment's processes used (`intake::environment`): the attributes and events of
//! the invocation and init spans, and the metrics. The names are in the README's mapping
//! table.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyVal;
use opentelemetry_proto::tonic::trace::v1::span::Event as SpanEvent;

use crate::intake::environment::{InitUsage, Usage};
use crate::mapping::Mapper;
use crate::mapping::metrics::MetricId;
use crate::mapping::otlp::{kv, kv_int, kv_str};

fn kv_f64(key: &str, value: f64) -> KeyValue {
    kv(key, AnyVal::DoubleValue(value))
}

fn kv_u64(key: &str, value: u64) -> KeyValue {
    kv_int(key, i64::try_from(value).unwrap_or(i64::MAX))
}

impl Mapper {
    /// The readings of one invocation: metrics now, and the span's attributes when it is
    /// made (if it has been made already, only the metrics).
    pub(crate) fn on_usage(&mut self, usage: Usage, t: u64) {
        self.metrics.record(MetricId::CpuUser, usage.cpu_user, t);
        self.metrics
            .record(MetricId::CpuSystem, usage.cpu_system, t);
        self.metrics
            .record(MetricId::ContrailCpu, usage.contrail_cpu, t);
        if usage.processes > 0 {
            self.metrics
                .record(MetricId::MemoryPeak, usage.rss_peak as f64, t);
        }
        if let (Some(rx), Some(tx)) = (usage.net_rx, usage.net_tx) {
            self.metrics.record(MetricId::NetReceive, rx as f64, t);
            self.metrics.record(MetricId::NetTransmit, tx as f64, t);
        }
        if let Some(tmp) = usage.tmp_used {
            self.metrics.record(MetricId::TmpUsage, tmp as f64, t);
        }
        let opened: u32 = usage.opened.values().sum();
        self.metrics
            .record(MetricId::ConnectionsOpened, f64::from(opened), t);
        self.metrics.record_connections(&usage.connections, t);
        if let Some(inv) = self.pending.get_mut(&usage.request_id)
            && !inv.span_emitted
        {
            inv.usage = Some(Box::new(usage));
        }
    }

    /// What the processes had used by init's end, for the init span if it is still to come.
    pub(crate) fn on_init_usage(&mut self, usage: InitUsage) {
        self.init_usage = Some(usage);
    }
}

/// The invocation span's attributes and events from its readings.
pub(super) fn usage_attributes(
    usage: &Usage,
    attributes: &mut Vec<KeyValue>,
    events: &mut Vec<SpanEvent>,
) {
    attributes.push(kv_f64("aws.lambda.function.cpu.user_time", usage.cpu_user));
    attributes.push(kv_f64(
        "aws.lambda.function.cpu.system_time",
        usage.cpu_system,
    ));
    attributes.push(kv_f64("aws.lambda.contrail.cpu_time", usage.contrail_cpu));
    attributes.push(kv_u64(
        "aws.lambda.function.processes",
        usage.processes.into(),
    ));
    if usage.processes > 0 {
        attributes.push(kv_u64("aws.lambda.function.memory.usage", usage.rss_end));
        attributes.push(kv_u64("aws.lambda.function.memory.peak", usage.rss_peak));
        attributes.push(kv_str(
            "aws.lambda.function.memory.peak_source",
            if usage.peak_exact {
                "kernel"
            } else {
                "samples"
            },
        ));
        attributes.push(kv_u64("aws.lambda.function.threads", usage.threads.into()));
        attributes.push(kv_u64(
            "aws.lambda.function.file_descriptors",
            usage.fds.into(),
        ));
    }
    if let (Some(rx), Some(tx)) = (usage.net_rx, usage.net_tx) {
        attributes.push(kv_u64("aws.lambda.network.io.receive", rx));
        attributes.push(kv_u64("aws.lambda.network.io.transmit", tx));
    }
    if let Some(tmp) = usage.tmp_used {
        attributes.push(kv_u64("aws.lambda.tmp.usage", tmp));
    }
    let established: u32 = usage.connections.values().sum();
    let opened: u32 = usage.opened.values().sum();
    attributes.push(kv_u64(
        "aws.lambda.connections.established",
        established.into(),
    ));
    attributes.push(kv_u64("aws.lambda.connections.opened", opened.into()));
    for (port, n) in &usage.connections {
        events.push(SpanEvent {
            time_unix_nano: usage.end_ns,
            name: "aws.lambda.connections".to_owned(),
            attributes: vec![
                kv_int("server.port", i64::from(*port)),
                kv_u64("aws.lambda.connections.established", (*n).into()),
                kv_u64(
                    "aws.lambda.connections.opened",
                    usage.opened.get(port).copied().unwrap_or(0).into(),
                ),
            ],
            ..Default::default()
        });
    }
    for (t, rss) in &usage.samples {
        events.push(SpanEvent {
            time_unix_nano: *t,
            name: "aws.lambda.memory.sample".to_owned(),
            attributes: vec![kv_u64("process.memory.usage", *rss)],
            ..Default::default()
        });
    }
}

/// The init span's attributes from the readings at init's end.
pub(super) fn init_attributes(usage: &InitUsage, attributes: &mut Vec<KeyValue>) {
    attributes.push(kv_f64("aws.lambda.function.cpu.user_time", usage.cpu_user));
    attributes.push(kv_f64(
        "aws.lambda.function.cpu.system_time",
        usage.cpu_system,
    ));
    attributes.push(kv_f64("aws.lambda.contrail.cpu_time", usage.contrail_cpu));
    attributes.push(kv_u64("aws.lambda.function.memory.usage", usage.rss));
    attributes.push(kv_u64("aws.lambda.function.memory.peak", usage.rss_peak));
}
