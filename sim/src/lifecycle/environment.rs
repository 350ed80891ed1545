//! One execution environment: its children, freeze and thaw, exit watching, and its report.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::invoke::InvokeCtx;
use super::plan::{Plan, child_envs};
use super::{lock, ms_between};
use crate::config::{InitType, RunConfig};
use crate::events::FunctionInfo;
use crate::ids;
use crate::process::{self, Measurements};
use crate::report::{ExtensionReport, RunReport, RuntimeReport};
use crate::state::{Env, EnvInfo, Phase};
use crate::telemetry::{Counters, Event, Hub};

pub(super) struct Environment<'a> {
    pub(super) cfg: Arc<RunConfig>,
    pub(super) plan: &'a Plan,
    pub(super) index: u32,
    pub(super) env: Arc<Env>,
    pub(super) frozen_tx: watch::Sender<bool>,
    pub(super) pids: Arc<Mutex<Vec<u32>>>,
    pub(super) meas: Arc<Mutex<Measurements>>,
    pub(super) sampler: Option<tokio::task::JoinHandle<()>>,
    pub(super) waiters: Vec<tokio::task::JoinHandle<()>>,
    pub(super) ext_pids: Vec<Option<u32>>,
    pub(super) rt_pid: Option<u32>,
    pub(super) ext_env: Vec<(String, String)>,
    pub(super) rt_env: Vec<(String, String)>,
    pub(super) init_ms: Option<f64>,
}

impl<'a> Environment<'a> {
    pub(super) fn new(
        cfg: Arc<RunConfig>,
        plan: &'a Plan,
        addr: std::net::SocketAddr,
        index: u32,
        counters: Arc<Counters>,
    ) -> Environment<'a> {
        let (frozen_tx, frozen_rx) = watch::channel(false);
        let hub = Arc::new(Hub::new(
            frozen_rx.clone(),
            cfg.telemetry_queue_limit,
            counters,
        ));
        let instance_id = ids::instance_id();
        let info = EnvInfo {
            function_name: cfg.function_name.clone(),
            function_version: cfg.function_version.clone(),
            function_arn: format!(
                "arn:aws:lambda:{}:{}:function:{}",
                cfg.region, cfg.account_id, cfg.function_name
            ),
            handler: cfg.handler.clone(),
            account_id: cfg.account_id.clone(),
            init_type: cfg.init_type,
            memory_mb: cfg.memory_mb,
            instance_id: instance_id.clone(),
            required_schema: cfg.required_schema,
        };
        let (ext_env, rt_env) = child_envs(&cfg, plan, addr, &instance_id);
        let env = Arc::new(Env::new(info, hub));
        let pids: Arc<Mutex<Vec<u32>>> = Arc::default();
        let meas: Arc<Mutex<Measurements>> = Arc::default();
        let sampler = {
            let pids = pids.clone();
            let meas = meas.clone();
            let frozen = frozen_rx;
            tokio::spawn(async move {
                loop {
                    if !*frozen.borrow() {
                        let p = lock(&pids).clone();
                        let mut m = lock(&meas).clone();
                        let p2 = p.clone();
                        m = tokio::task::spawn_blocking(move || {
                            m.sample(&p2);
                            m
                        })
                        .await
                        .unwrap_or_default();
                        let mut g = lock(&meas);
                        for (pid, s) in m.per_pid {
                            let e = g.per_pid.entry(pid).or_default();
                            e.peak_rss_kb = e.peak_rss_kb.max(s.peak_rss_kb);
                            e.cpu_ms = e.cpu_ms.max(s.cpu_ms);
                            e.rss_kb = s.rss_kb;
                        }
                        g.peak_env_rss_kb = g.peak_env_rss_kb.max(m.peak_env_rss_kb);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        Environment {
            cfg,
            plan,
            index,
            env,
            frozen_tx,
            pids,
            meas,
            sampler: Some(sampler),
            waiters: Vec::new(),
            ext_pids: Vec::new(),
            rt_pid: None,
            ext_env,
            rt_env,
            init_ms: None,
        }
    }

    pub(super) fn function_info(&self) -> FunctionInfo<'_> {
        FunctionInfo {
            function_name: &self.env.info.function_name,
            function_arn: &self.env.info.function_arn,
            function_version: &self.env.info.function_version,
            instance_id: &self.env.info.instance_id,
            memory_mb: self.env.info.memory_mb,
            runtime_version: self.cfg.runtime_version.as_deref(),
        }
    }

    pub(super) fn publish(&self, kind: &str, record: Value) {
        self.env
            .hub
            .publish(Event::platform(OffsetDateTime::now_utc(), kind, record));
    }

    pub(super) fn sample_now(&self) {
        let p = lock(&self.pids).clone();
        lock(&self.meas).sample(&p);
    }

    pub(super) fn all_pgids(&self) -> Vec<u32> {
        lock(&self.pids).clone()
    }

    /// Stops every child process (SIGSTOP of each process group) until [`Environment::thaw`].
    pub(super) fn freeze(&self) {
        if !self.cfg.freeze || self.cfg.init_type == InitType::LambdaManagedInstances {
            return;
        }
        self.sample_now();
        let _ = self.frozen_tx.send(true);
        for pg in self.all_pgids() {
            process::signal_group(pg, Signal::SIGSTOP);
        }
    }

    pub(super) fn thaw(&self) {
        if !*self.frozen_tx.borrow() {
            return;
        }
        for pg in self.all_pgids() {
            process::signal_group(pg, Signal::SIGCONT);
        }
        let _ = self.frozen_tx.send(false);
    }

    pub(super) fn watch_exit(&mut self, mut child: tokio::process::Child, ext_idx: Option<usize>) {
        let env = self.env.clone();
        self.waiters.push(tokio::spawn(async move {
            let status = child.wait().await;
            let desc = match status {
                Ok(s) => process::describe_exit(s),
                Err(e) => format!("wait failed: {e}"),
            };
            env.update(|st| {
                let shutting_down = st.phase == Phase::Shutdown;
                match ext_idx {
                    Some(i) => {
                        if let Some(e) = st.exts.get_mut(i) {
                            e.exited = Some(desc);
                            e.crashed = !shutting_down && e.error_type.is_none();
                            e.waiter = None;
                        }
                    }
                    None => {
                        if !shutting_down {
                            st.rt.exited = Some(desc);
                        } else {
                            st.rt.exited.get_or_insert(desc);
                        }
                    }
                }
            });
        }));
    }

    pub(super) fn ctx(&self) -> Arc<InvokeCtx> {
        Arc::new(InvokeCtx {
            cfg: self.cfg.clone(),
            env: self.env.clone(),
            meas: self.meas.clone(),
            pids: self.pids.clone(),
            index: self.index,
        })
    }

    pub(super) fn collect(&self, report: &mut RunReport) {
        let meas = lock(&self.meas).clone();
        let st = self.env.lock();
        for (i, e) in st.exts.iter().enumerate() {
            let stats = self
                .ext_pids
                .get(i)
                .copied()
                .flatten()
                .and_then(|p| meas.per_pid.get(&p));
            report.extensions.push(ExtensionReport {
                name: e.name.clone(),
                path: self
                    .plan
                    .extensions
                    .get(i)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                environment: self.index,
                events: e.events.clone(),
                telemetry_schema: e.subscribed.map(|s| s.as_str().to_owned()),
                spawn_to_register_ms: e.registered_at.map(|t| ms_between(e.spawned_at, t)),
                spawn_to_first_next_ms: e.first_next_at.map(|t| ms_between(e.spawned_at, t)),
                peak_rss_kb: stats.map(|s| s.peak_rss_kb),
                cpu_ms: stats.map(|s| s.cpu_ms),
                exit: e.exited.clone(),
                crashed: e.crashed,
                error_type: e.error_type.clone(),
            });
        }
        if self.index == 0 {
            let stats = self.rt_pid.and_then(|p| meas.per_pid.get(&p));
            let ready = match (st.rt.first_next_at, st.rt.restore_next_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            report.runtime = RuntimeReport {
                command: self.cfg.runtime_command.clone(),
                init_ms: match (st.rt.spawned_at, ready) {
                    (Some(s), Some(r)) => Some(ms_between(s, r)),
                    _ => None,
                },
                peak_rss_kb: stats.map(|s| s.peak_rss_kb),
                cpu_ms: stats.map(|s| s.cpu_ms),
                exit: st.rt.exited.clone(),
            };
        }
    }
}
