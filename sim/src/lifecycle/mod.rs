//! The lifecycle of execution environments: init, invocations, freeze, restore, shutdown.

mod environment;
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
use crate::telemetry::Counters;

use environment::Environment;
use plan::Plan;

fn ms_between(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64() * 1000.0
}

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
pub async fn run(cfg: RunConfig) -> Result<RunReport, SimError> {
    let plan = Plan::new(&cfg)?;
    let listener = bind(cfg.listen).await?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let current = Current::default();
    let server = api::serve(listener, current.clone());
    let counters = Arc::new(Counters::default());
    let cfg = Arc::new(cfg);
    let result = drive(cfg.clone(), &plan, addr, &current, counters.clone()).await;
    server.abort();
    let mut report = result?;
    report.telemetry = counters.snapshot();
    Ok(report)
}

/// Why an environment must be replaced.
enum EnvEnd {
    Finished,
    Reset(&'static str),
}

async fn drive(
    cfg: Arc<RunConfig>,
    plan: &Plan,
    addr: std::net::SocketAddr,
    current: &Current,
    counters: Arc<Counters>,
) -> Result<RunReport, SimError> {
    let mut report = RunReport {
        function_name: cfg.function_name.clone(),
        initialization_type: cfg.init_type.as_str().to_owned(),
        memory_size_mb: cfg.memory_mb,
        ..RunReport::default()
    };
    let mut remaining = cfg.invocations;
    let mut env_index = 0u32;
    let mut next_start = Instant::now();
    loop {
        let mut envr = Environment::new(cfg.clone(), plan, addr, env_index, counters.clone());
        current.set(Some(envr.env.clone()));
        report.environments = env_index + 1;
        let init = envr.init().await;
        let init_ms = envr.init_ms;
        if env_index == 0 {
            report.init_ms = init_ms;
        }
        if let Err(e) = init {
            envr.shutdown("failure").await;
            envr.collect(&mut report);
            current.set(None);
            return Err(e);
        }
        let mut cold_init = match cfg.init_type {
            InitType::OnDemand | InitType::LambdaManagedInstances => init_ms,
            _ => None,
        };
        let mut cold_restore = None;
        if cfg.init_type == InitType::SnapStart {
            match envr.restore().await {
                Ok(ms) => {
                    cold_restore = Some(ms);
                    if env_index == 0 {
                        report.restore_ms = Some(ms);
                    }
                }
                Err(e) => {
                    envr.shutdown("failure").await;
                    envr.collect(&mut report);
                    current.set(None);
                    return Err(e);
                }
            }
        }
        if cfg.init_type == InitType::ProvisionedConcurrency && !cfg.idle_gap.is_zero() {
            tokio::time::sleep(cfg.idle_gap).await;
        }
        let mut end = EnvEnd::Finished;
        if cfg.init_type == InitType::LambdaManagedInstances {
            let results = envr.invoke_concurrently(remaining, cold_init).await;
            remaining = 0;
            report.invocations.extend(results);
        } else {
            while remaining > 0 {
                let now = Instant::now();
                if next_start > now {
                    tokio::time::sleep_until(next_start).await;
                }
                let started = Instant::now();
                next_start = match cfg.schedule {
                    Schedule::Burst => started,
                    Schedule::Interval(d) => started + d,
                };
                let inv = envr.invoke(cold_init.take(), cold_restore.take()).await;
                remaining -= 1;
                let status = inv.status.clone();
                report.invocations.push(inv);
                if status == "timeout" || status == "failure" {
                    end = EnvEnd::Reset(if status == "timeout" {
                        "timeout"
                    } else {
                        "failure"
                    });
                    break;
                }
                envr.freeze();
                if remaining > 0 && !cfg.idle_gap.is_zero() {
                    let gap_end = Instant::now() + cfg.idle_gap;
                    if gap_end > next_start {
                        next_start = gap_end;
                    }
                }
            }
        }
        let reason = match end {
            EnvEnd::Finished => "spindown",
            EnvEnd::Reset(r) => r,
        };
        envr.shutdown(reason).await;
        envr.collect(&mut report);
        current.set(None);
        env_index += 1;
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
