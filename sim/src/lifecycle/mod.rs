//! The lifecycle of execution environments, phase by phase, as Lambda runs them.
//!
//! | Lambda phase | file |
//! |---|---|
//! | before anything starts: which programs run, with which variables | [`plan`] |
//! | one environment: its children, freeze between invocations, thaw, exits, its report | [`environment`] |
//! | INIT (extensions register, the runtime starts, everyone calls `next`) and SnapStart RESTORE | [`init`] |
//! | INVOKE: `platform.start`, the INVOKE event, the answer, `runtimeDone`, the return to `next`, `platform.report` | [`invoke`] |
//! | SHUTDOWN: SIGTERM to the runtime, the SHUTDOWN event, SIGKILL at the deadline | [`shutdown`] |
//! | many environments under load: routing, cold starts, throttles, idle timeout | [`fleet`] |
//!
//! This file runs them in order ([`run`]): one environment after the other, a new one after
//! each reset (a timed-out or failed invocation), until every invocation has run. [`run_fleet`]
//! runs many at once.

mod environment;
mod fleet;
mod init;
mod invoke;
mod plan;
mod shutdown;

use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::api::{self, Current};
use crate::config::{InitType, RunConfig, Schedule};
use crate::error::SimError;
use crate::report::{RunReport, Summary};
use crate::resources;
use crate::telemetry::Counters;

use environment::Environment;
use plan::Plan;

pub use fleet::run_fleet;

/// Milliseconds from `a` to `b` (0 if `b` is earlier).
fn ms_between(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64() * 1000.0
}

/// Locks `m`, also after a panic elsewhere poisoned it (the data stay usable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, SimError> {
    TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            SimError::PortInUse(addr)
        } else {
            SimError::Bind { addr, source }
        }
    })
}

/// Runs the whole thing: start the environment, invoke, shut down, and report.
pub async fn run(config: RunConfig) -> Result<RunReport, SimError> {
    let plan = Arc::new(Plan::new(&config)?);
    let resources = Arc::new(resources::Plan::new(
        &config.resources,
        config.memory_mb,
        config.init_type,
        config.freeze && config.init_type != InitType::LambdaManagedInstances,
    )?);
    let listener = bind(config.listen).await?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: config.listen,
        source,
    })?;
    let current = Current::default();
    let server = api::serve(listener, current.clone());
    let counters = Arc::new(Counters::default());
    let config = Arc::new(config);
    let result = drive(
        config.clone(),
        plan,
        resources,
        addr,
        &current,
        counters.clone(),
    )
    .await;
    server.abort();
    let mut report = result?;
    report.telemetry = counters.snapshot();
    Ok(report)
}

/// What a started environment measured of its cold start.
struct ColdStart {
    /// The init duration the first invocation's report carries.
    init_ms: Option<f64>,
    /// SnapStart: the restore duration the first invocation's report carries.
    restore_ms: Option<f64>,
}

/// Init, and for SnapStart the restore, of a new environment.
async fn start(
    environment: &mut Environment,
    report: &mut RunReport,
) -> Result<ColdStart, SimError> {
    let init = environment.init().await;
    let first = environment.index == 0;
    if first {
        report.init_ms = environment.init_ms;
    }
    init?;
    let init_type = environment.config.init_type;
    let mut cold = ColdStart {
        init_ms: match init_type {
            InitType::OnDemand | InitType::LambdaManagedInstances => environment.init_ms,
            InitType::ProvisionedConcurrency | InitType::SnapStart => None,
        },
        restore_ms: None,
    };
    if init_type == InitType::SnapStart {
        let ms = environment.restore().await?;
        cold.restore_ms = Some(ms);
        if first {
            report.restore_ms = Some(ms);
        }
    }
    Ok(cold)
}

async fn drive(
    config: Arc<RunConfig>,
    plan: Arc<Plan>,
    resources: Arc<resources::Plan>,
    addr: std::net::SocketAddr,
    current: &Current,
    counters: Arc<Counters>,
) -> Result<RunReport, SimError> {
    let mut report = RunReport {
        function_name: config.function_name.clone(),
        initialization_type: config.init_type.as_str().to_owned(),
        memory_size_mb: config.memory_mb,
        resources: resources.report(),
        ..RunReport::default()
    };
    let mut remaining = config.invocations;
    let mut index = 0u32;
    let mut next_start = Instant::now();
    loop {
        let mut environment = Environment::new(
            config.clone(),
            plan.clone(),
            resources.clone(),
            addr,
            index,
            counters.clone(),
        )?;
        current.set(Some(environment.shared.clone()));
        report.environments = index + 1;
        let cold = match start(&mut environment, &mut report).await {
            Ok(cold) => cold,
            Err(e) => {
                environment.shutdown("failure").await;
                environment.collect(&mut report);
                current.set(None);
                return Err(e);
            }
        };
        if config.init_type == InitType::ProvisionedConcurrency && !config.idle_gap.is_zero() {
            tokio::time::sleep(config.idle_gap).await;
        }
        let mut shutdown_reason = "spindown";
        if config.init_type == InitType::LambdaManagedInstances {
            let results = environment
                .invoke_concurrently(remaining, cold.init_ms)
                .await;
            remaining = 0;
            report.invocations.extend(results);
        } else {
            let (mut cold_init, mut cold_restore) = (cold.init_ms, cold.restore_ms);
            while remaining > 0 {
                let now = Instant::now();
                if next_start > now {
                    tokio::time::sleep_until(next_start).await;
                }
                let started = Instant::now();
                next_start = match config.schedule {
                    Schedule::Burst => started,
                    Schedule::Interval(d) => started + d,
                };
                let invocation = environment
                    .invoke(cold_init.take(), cold_restore.take())
                    .await;
                remaining -= 1;
                let reset = invoke::reset_reason(&invocation);
                report.invocations.push(invocation);
                if let Some(reason) = reset {
                    shutdown_reason = reason;
                    break;
                }
                environment.freeze().await;
                if remaining > 0 && !config.idle_gap.is_zero() {
                    let gap_end = Instant::now() + config.idle_gap;
                    if gap_end > next_start {
                        next_start = gap_end;
                    }
                }
            }
        }
        environment.shutdown(shutdown_reason).await;
        environment.collect(&mut report);
        current.set(None);
        index += 1;
        if remaining == 0 {
            break;
        }
    }
    let post: Vec<f64> = report
        .invocations
        .iter()
        .map(|i| i.post_runtime_ms)
        .collect();
    report.post_runtime = Summary::of(&post);
    Ok(report)
}
