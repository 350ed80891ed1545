//! The instruments Contrail records, each with its name, unit, description and kind, and the
//! histogram boundaries they use. The aggregation is in `metrics.rs`.

/// `faas.invoke_duration` boundaries from the conventions, extended to Lambda's 15-minute limit.
const DURATION_S: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
    300.0, 900.0,
];
/// Post-runtime extension time: sub-millisecond to seconds.
const OVERHEAD_S: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
pub(super) const MIB: f64 = 1024.0 * 1024.0;
/// Lambda memory: 128 MB to 10,240 MB.
const MEMORY_BYTES: &[f64] = &[
    32.0 * MIB,
    64.0 * MIB,
    128.0 * MIB,
    256.0 * MIB,
    512.0 * MIB,
    1024.0 * MIB,
    2048.0 * MIB,
    4096.0 * MIB,
    8192.0 * MIB,
    10240.0 * MIB,
];
/// Estimated costs in US dollars: a 1 ms invocation at 128 MB (about $0.0000002) to 15 minutes
/// at 10,240 MB (about $0.15).
const COST_USD: &[f64] = &[
    0.000_000_25,
    0.000_001,
    0.000_002_5,
    0.000_01,
    0.000_025,
    0.000_1,
    0.000_25,
    0.001,
    0.01,
    0.1,
];
/// Idle time between invocations: a millisecond to the hours an environment may be kept.
const IDLE_S: &[f64] = &[
    0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0,
];
/// Response sizes: up to 6 MB buffered, 200 MB streamed.
const RESPONSE_BYTES: &[f64] = &[
    1024.0,
    16.0 * 1024.0,
    64.0 * 1024.0,
    256.0 * 1024.0,
    MIB,
    6.0 * MIB,
    20.0 * MIB,
    200.0 * MIB,
];

/// Declares [`MetricId`] and its [`MetricId::COUNT`] from one list, so that the count cannot
/// miss an id.
macro_rules! metric_ids {
    ($($id:ident),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum MetricId {
            $($id),*
        }

        impl MetricId {
            /// How many ids there are: [`INSTRUMENTS`] holds exactly this many, so an id
            /// without an instrument does not compile.
            pub(super) const COUNT: usize = [$(MetricId::$id),*].len();
        }
    };
}

metric_ids! {
    InvokeDuration,
    InitDuration,
    InitFailures,
    Coldstarts,
    Invocations,
    Errors,
    Timeouts,
    MemUsage,
    BilledDuration,
    MemorySize,
    RestoreDuration,
    ProducedBytes,
    ExtensionOverhead,
    LogsDroppedRecords,
    LogsDroppedBytes,
    InvocationCost,
    InitCost,
    RestoreCost,
    Utilization,
    Lifetime,
    BusyTime,
    EnvironmentInvocations,
    IdleGap,
    UnusedInit,
    CpuUser,
    CpuSystem,
    ContrailCpu,
    MemoryPeak,
    NetReceive,
    NetTransmit,
    TmpUsage,
    ConnectionsOpened,
}

/// The one attribute of a series whose instrument shares its name with others (the series of
/// one metric, next to each other in [`INSTRUMENTS`]).
pub(super) fn series_attribute(id: MetricId) -> Option<(&'static str, &'static str)> {
    match id {
        MetricId::CpuUser => Some(("cpu.mode", "user")),
        MetricId::CpuSystem => Some(("cpu.mode", "system")),
        MetricId::NetReceive => Some(("network.io.direction", "receive")),
        MetricId::NetTransmit => Some(("network.io.direction", "transmit")),
        _ => None,
    }
}

/// CPU time per invocation: a millisecond to minutes.
const CPU_S: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];
/// Network bytes per invocation.
const NET_BYTES: &[f64] = &[
    0.0,
    1024.0,
    16.0 * 1024.0,
    256.0 * 1024.0,
    MIB,
    16.0 * MIB,
    256.0 * MIB,
    1024.0 * MIB,
];
/// Remote ports followed by `aws.lambda.connections`, at most; connections to others are
/// counted under port 0.
pub(super) const MAX_PORTS: usize = 32;

pub(super) enum Kind {
    Counter,
    Histogram(&'static [f64]),
    Gauge,
}

pub(super) struct Instrument {
    pub(super) id: MetricId,
    pub(super) name: &'static str,
    pub(super) unit: &'static str,
    pub(super) description: &'static str,
    pub(super) kind: Kind,
}

/// Every instrument, in [`MetricId`] order: `INSTRUMENTS[id as usize]` is `id`'s.
pub(super) const INSTRUMENTS: [Instrument; MetricId::COUNT] = [
    Instrument {
        id: MetricId::InvokeDuration,
        name: "faas.invoke_duration",
        unit: "s",
        description: "Duration of the function's invocations (platform.report durationMs).",
        kind: Kind::Histogram(DURATION_S),
    },
    Instrument {
        id: MetricId::InitDuration,
        name: "faas.init_duration",
        unit: "s",
        description: "Duration of the environment's initialization (platform.initReport).",
        kind: Kind::Histogram(DURATION_S),
    },
    Instrument {
        id: MetricId::InitFailures,
        name: "aws.lambda.init.failures",
        unit: "{init}",
        description: "Inits that failed (platform.initReport, or the init's runtimeDone, with a status other than success).",
        kind: Kind::Counter,
    },
    Instrument {
        id: MetricId::Coldstarts,
        name: "faas.coldstarts",
        unit: "{coldstart}",
        description: "Invocations that were the first after a cold start or a SnapStart restore.",
        kind: Kind::Counter,
    },
    Instrument {
        id: MetricId::Invocations,
        name: "faas.invocations",
        unit: "{invocation}",
        description: "Successful invocations.",
        kind: Kind::Counter,
    },
    Instrument {
        id: MetricId::Errors,
        name: "faas.errors",
        unit: "{error}",
        description: "Invocations that ended in an error or a failure (timeouts excluded).",
        kind: Kind::Counter,
    },
    Instrument {
        id: MetricId::Timeouts,
        name: "faas.timeouts",
        unit: "{timeout}",
        description: "Invocations that timed out.",
        kind: Kind::Counter,
    },
    Instrument {
        id: MetricId::MemUsage,
        name: "faas.mem_usage",
        unit: "By",
        description: "Maximum memory used per invocation.",
        kind: Kind::Histogram(MEMORY_BYTES),
    },
    Instrument {
        id: MetricId::BilledDuration,
        name: "aws.lambda.billed_duration",
        unit: "s",
        description: "Billed duration per invocation.",
        kind: Kind::Histogram(DURATION_S),
    },
    Instrument {
        id: MetricId::MemorySize,
        name: "aws.lambda.memory_size",
        unit: "By",
        description: "Memory configured for the function.",
        kind: Kind::Gauge,
    },
    Instrument {
        id: MetricId::RestoreDuration,
        name: "aws.lambda.restore_duration",
        unit: "s",
        description: "Duration of SnapStart restores (platform.restoreReport).",
        kind: Kind::Histogram(DURATION_S),
    },
    Instrument {
        id: MetricId::ProducedBytes,
        name: "aws.lambda.produced_bytes",
        unit: "By",
        description: "Size of the function's responses.",
        kind: Kind::Histogram(RESPONSE_BYTES),
    },
    Instrument {
        id: MetricId::ExtensionOverhead,
        name: "aws.lambda.extension_overhead",
        unit: "s",
        description: "Time extensions took after the runtime finished (billed).",
        kind: Kind::Histogram(OVERHEAD_S),
    },
    Instrument {
        id: MetricId::LogsDroppedRecords,
        name: "aws.lambda.logs_dropped.records",
        unit: "{record}",
        description: "Telemetry records Lambda dropped (platform.logsDropped).",
        kind: Kind::Counter,
    },
    Instrument {
        id: MetricId::LogsDroppedBytes,
        name: "aws.lambda.logs_dropped.bytes",
        unit: "By",
        description: "Telemetry bytes Lambda dropped (platform.logsDropped).",
        kind: Kind::Counter,
    },
    Instrument {
        id: MetricId::InvocationCost,
        name: "aws.lambda.invocation.cost",
        unit: "{USD}",
        description: "Estimated cost of each invocation at list prices: billed duration × memory × price per GB-second, plus the request charge (the first invocation's billed duration holds an on-demand INIT).",
        kind: Kind::Histogram(COST_USD),
    },
    Instrument {
        id: MetricId::InitCost,
        name: "aws.lambda.init.cost",
        unit: "{USD}",
        description: "Estimated cost of an on-demand INIT phase at list prices: a part of the first invocation's cost, not to be added to it.",
        kind: Kind::Histogram(COST_USD),
    },
    Instrument {
        id: MetricId::RestoreCost,
        name: "aws.lambda.restore.cost",
        unit: "{USD}",
        description: "Estimated cost of a SnapStart restore at list prices: memory restored × price per GB, plus the billed restore duration.",
        kind: Kind::Histogram(COST_USD),
    },
    Instrument {
        id: MetricId::Utilization,
        name: "aws.lambda.environment.utilization",
        unit: "1",
        description: "Busy time ÷ lifetime of this execution environment so far.",
        kind: Kind::Gauge,
    },
    Instrument {
        id: MetricId::Lifetime,
        name: "aws.lambda.environment.lifetime",
        unit: "s",
        description: "Time since this execution environment's init or restore began, frozen time included.",
        kind: Kind::Gauge,
    },
    Instrument {
        id: MetricId::BusyTime,
        name: "aws.lambda.environment.busy_time",
        unit: "s",
        description: "Time this execution environment spent in invoke phases so far.",
        kind: Kind::Gauge,
    },
    Instrument {
        id: MetricId::EnvironmentInvocations,
        name: "aws.lambda.environment.invocations",
        unit: "{invocation}",
        description: "Invocations this execution environment has run so far.",
        kind: Kind::Gauge,
    },
    Instrument {
        id: MetricId::IdleGap,
        name: "aws.lambda.environment.idle_gap",
        unit: "s",
        description: "Idle time before each invocation: since the previous invoke phase ended, or since init.",
        kind: Kind::Histogram(IDLE_S),
    },
    Instrument {
        id: MetricId::UnusedInit,
        name: "aws.lambda.environment.unused_init",
        unit: "{environment}",
        description: "Execution environments shut down without running an invocation.",
        kind: Kind::Counter,
    },
    Instrument {
        id: MetricId::CpuUser,
        name: "faas.cpu_usage",
        unit: "s",
        description: "CPU time of the function's processes per invocation, by cpu.mode (/proc).",
        kind: Kind::Histogram(CPU_S),
    },
    Instrument {
        id: MetricId::CpuSystem,
        name: "faas.cpu_usage",
        unit: "s",
        description: "CPU time of the function's processes per invocation, by cpu.mode (/proc).",
        kind: Kind::Histogram(CPU_S),
    },
    Instrument {
        id: MetricId::ContrailCpu,
        name: "aws.lambda.contrail.cpu_usage",
        unit: "s",
        description: "Contrail's own CPU time per invocation.",
        kind: Kind::Histogram(OVERHEAD_S),
    },
    Instrument {
        id: MetricId::MemoryPeak,
        name: "aws.lambda.function.memory.peak",
        unit: "By",
        description: "Highest RSS of the function's processes during each invocation (/proc).",
        kind: Kind::Histogram(MEMORY_BYTES),
    },
    Instrument {
        id: MetricId::NetReceive,
        name: "faas.net_io",
        unit: "By",
        description: "Network bytes of the environment per invocation, lo excluded, by network.io.direction.",
        kind: Kind::Histogram(NET_BYTES),
    },
    Instrument {
        id: MetricId::NetTransmit,
        name: "faas.net_io",
        unit: "By",
        description: "Network bytes of the environment per invocation, lo excluded, by network.io.direction.",
        kind: Kind::Histogram(NET_BYTES),
    },
    Instrument {
        id: MetricId::TmpUsage,
        name: "aws.lambda.tmp.usage",
        unit: "By",
        description: "Bytes used on /tmp at the end of the last invocation.",
        kind: Kind::Gauge,
    },
    Instrument {
        id: MetricId::ConnectionsOpened,
        name: "aws.lambda.connections.opened",
        unit: "{connection}",
        description: "TCP connections the function's processes opened during invocations (still established at their end).",
        kind: Kind::Counter,
    },
];

/// `aws.lambda.connections`: established TCP connections of the function's processes at the
/// end of the last invocation, one series per remote port (`server.port`).
pub(super) const CONNECTIONS_NAME: &str = "aws.lambda.connections";
pub(super) const CONNECTIONS_DESCRIPTION: &str = "Established TCP connections of the function's processes at the end of the last invocation, by remote port (server.port; 0: any other port once 32 are followed).";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_instrument_sits_at_its_id() {
        for (i, instrument) in INSTRUMENTS.iter().enumerate() {
            assert_eq!(instrument.id as usize, i, "{}", instrument.name);
        }
    }
}
