//! The lifecycle of execution environments: init, invocations, freeze, restore, shutdown.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::api::{self, Current};
use crate::config::{InitType, RunConfig, Schedule};
use crate::error::SimError;
use crate::events::{self, FunctionInfo};
use crate::ids;
use crate::process::{self, Measurements, Role, SpawnSpec};
use crate::report::{ExtensionReport, InvocationReport, RunReport, RuntimeReport, Summary};
use crate::state::{Dispatch, Env, EnvInfo, ExtSlot, Phase, State};
use crate::telemetry::{Counters, Event, Hub};

/// Environment variables of a child process.
type Vars = Vec<(String, String)>;

/// Variables Lambda sets itself; a function may not configure them.
const RESERVED: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_LOG_FORMAT",
    "AWS_LAMBDA_LOG_LEVEL",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// Variables only the runtime process sees.
const RUNTIME_ONLY: &[&str] = &[
    "_HANDLER",
    "LAMBDA_TASK_ROOT",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_EXECUTION_ENV",
    "AWS_XRAY_CONTEXT_MISSING",
    "AWS_XRAY_DAEMON_ADDRESS",
    "_AWS_XRAY_DAEMON_ADDRESS",
    "_AWS_XRAY_DAEMON_PORT",
];

/// The validated inputs of a run.
struct Plan {
    extensions: Vec<PathBuf>,
    program: String,
    args: Vec<String>,
    task_root: PathBuf,
    inherited: Vec<(String, String)>,
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn resolve_program(name: &str) -> Result<String, SimError> {
    if name.contains('/') {
        let p = Path::new(name);
        if !p.exists() {
            return Err(SimError::RuntimeNotFound(name.to_owned()));
        }
        if !is_executable(p) {
            return Err(SimError::RuntimeNotExecutable(name.to_owned()));
        }
        return Ok(name.to_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let cand = dir.join(name);
        if is_executable(&cand) {
            return Ok(cand.to_string_lossy().into_owned());
        }
    }
    Err(SimError::RuntimeNotFound(name.to_owned()))
}

impl Plan {
    fn new(cfg: &RunConfig) -> Result<Plan, SimError> {
        let mut extensions = Vec::new();
        if let Some(dir) = &cfg.extensions_dir {
            let rd = std::fs::read_dir(dir).map_err(|source| SimError::ExtensionsDir {
                dir: dir.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            extensions.extend(found);
        }
        extensions.extend(cfg.extensions.iter().cloned());
        for p in &extensions {
            if !p.exists() {
                return Err(SimError::ExtensionNotFound(p.clone()));
            }
            if !is_executable(p) {
                return Err(SimError::ExtensionNotExecutable(p.clone()));
            }
        }
        if extensions.len() > 10 {
            return Err(SimError::TooManyExtensions(extensions.len()));
        }
        let mut names: Vec<String> = extensions.iter().map(|p| file_name(p)).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(SimError::InvalidConfig(format!(
                "two extensions are named {:?}: extension file names must be unique",
                w[0]
            )));
        }
        let mut cmd = cfg.runtime_command.clone();
        if cmd.is_empty() {
            return Err(SimError::NoRuntimeCommand);
        }
        for (k, _) in &cfg.env {
            if RESERVED.contains(&k.as_str()) {
                return Err(SimError::InvalidConfig(format!(
                    "{k} is reserved by Lambda and set by the environment itself"
                )));
            }
            if k.is_empty() || k.contains('=') {
                return Err(SimError::InvalidConfig(format!(
                    "{k:?} is not a valid variable name"
                )));
            }
        }
        if let Some((_, wrapper)) = cfg.env.iter().find(|(k, _)| k == "AWS_LAMBDA_EXEC_WRAPPER") {
            cmd.insert(0, wrapper.clone());
        }
        let program = resolve_program(&cmd[0])?;
        let args = cmd[1..].to_vec();
        let task_root = match &cfg.task_root {
            Some(p) => p.clone(),
            None => std::env::current_dir().map_err(|e| {
                SimError::InvalidConfig(format!("cannot read the current directory: {e}"))
            })?,
        };
        let task_root = std::fs::canonicalize(&task_root).map_err(|e| {
            SimError::InvalidConfig(format!("task root {}: {e}", task_root.display()))
        })?;
        if cfg.concurrency == 0 {
            return Err(SimError::InvalidConfig(
                "concurrency must be at least 1".into(),
            ));
        }
        if cfg.concurrency > 1 && cfg.init_type != InitType::LambdaManagedInstances {
            return Err(SimError::InvalidConfig(
                "several invocations at once need --init-type lambda-managed-instances".into(),
            ));
        }
        if cfg.memory_mb < 128 || cfg.memory_mb > 10_240 {
            return Err(SimError::InvalidConfig(format!(
                "memory size {} MB is outside Lambda's 128-10240 MB",
                cfg.memory_mb
            )));
        }
        if cfg.timeout.is_zero() || cfg.timeout > Duration::from_secs(900) {
            return Err(SimError::InvalidConfig(
                "timeout must be between 1 ms and 900 s".into(),
            ));
        }
        let inherited = std::env::vars()
            .filter(|(k, _)| {
                !RESERVED.contains(&k.as_str())
                    && !RUNTIME_ONLY.contains(&k.as_str())
                    && !k.starts_with("AWS_LAMBDA_")
            })
            .collect();
        Ok(Plan {
            extensions,
            program,
            args,
            task_root,
            inherited,
        })
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn ms_between(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64() * 1000.0
}

fn set(vars: &mut Vec<(String, String)>, k: &str, v: impl Into<String>) {
    let v = v.into();
    match vars.iter_mut().find(|(name, _)| name == k) {
        Some(slot) => slot.1 = v,
        None => vars.push((k.to_owned(), v)),
    }
}

/// The environments of the extensions and of the runtime.
fn child_envs(
    cfg: &RunConfig,
    plan: &Plan,
    api_addr: std::net::SocketAddr,
    instance_id: &str,
) -> (Vars, Vars) {
    let mut common = plan.inherited.clone();
    set(&mut common, "AWS_LAMBDA_RUNTIME_API", api_addr.to_string());
    set(&mut common, "AWS_LAMBDA_FUNCTION_NAME", &cfg.function_name);
    set(
        &mut common,
        "AWS_LAMBDA_FUNCTION_VERSION",
        &cfg.function_version,
    );
    set(
        &mut common,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        cfg.memory_mb.to_string(),
    );
    set(&mut common, "AWS_REGION", &cfg.region);
    set(&mut common, "AWS_DEFAULT_REGION", &cfg.region);
    set(
        &mut common,
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        cfg.init_type.as_str(),
    );
    set(
        &mut common,
        "AWS_LAMBDA_LOG_FORMAT",
        cfg.log_format.env_value(),
    );
    if let Some(level) = &cfg.log_level {
        set(&mut common, "AWS_LAMBDA_LOG_LEVEL", level);
    }
    set(&mut common, "TZ", ":UTC");
    set(&mut common, "LANG", "en_US.UTF-8");
    for (k, v) in &cfg.env {
        set(&mut common, k, v);
    }
    let ext_env = common.clone();
    let mut rt = common;
    let today = OffsetDateTime::now_utc().date();
    set(&mut rt, "_HANDLER", &cfg.handler);
    set(
        &mut rt,
        "LAMBDA_TASK_ROOT",
        plan.task_root.to_string_lossy(),
    );
    set(
        &mut rt,
        "AWS_LAMBDA_LOG_GROUP_NAME",
        format!("/aws/lambda/{}", cfg.function_name),
    );
    set(
        &mut rt,
        "AWS_LAMBDA_LOG_STREAM_NAME",
        format!(
            "{:04}/{:02}/{:02}/[{}]{}",
            today.year(),
            u8::from(today.month()),
            today.day(),
            cfg.function_version,
            instance_id
        ),
    );
    set(&mut rt, "AWS_XRAY_CONTEXT_MISSING", "LOG_ERROR");
    set(&mut rt, "AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129:2000");
    set(&mut rt, "_AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129");
    set(&mut rt, "_AWS_XRAY_DAEMON_PORT", "2000");
    (ext_env, rt)
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

/// What an invocation needs, shareable with concurrent invocation tasks.
struct InvokeCtx {
    cfg: Arc<RunConfig>,
    env: Arc<Env>,
    meas: Arc<Mutex<Measurements>>,
    pids: Arc<Mutex<Vec<u32>>>,
    index: u32,
}

struct Environment<'a> {
    cfg: Arc<RunConfig>,
    plan: &'a Plan,
    index: u32,
    env: Arc<Env>,
    frozen_tx: watch::Sender<bool>,
    pids: Arc<Mutex<Vec<u32>>>,
    meas: Arc<Mutex<Measurements>>,
    sampler: Option<tokio::task::JoinHandle<()>>,
    waiters: Vec<tokio::task::JoinHandle<()>>,
    ext_pids: Vec<Option<u32>>,
    rt_pid: Option<u32>,
    ext_env: Vec<(String, String)>,
    rt_env: Vec<(String, String)>,
    init_ms: Option<f64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// What stops init or an invocation early.
fn failure(st: &State) -> Option<(String, &'static str, String)> {
    for e in &st.exts {
        // After init/error or exit/error no call of the extension succeeds: it will never be
        // back in next, so waiting for it would only end at the deadline.
        if let Some(et) = &e.error_type {
            return Some((et.clone(), "error", e.name.clone()));
        }
        if e.crashed {
            return Some((
                "Extension.Crash".into(),
                "failure",
                format!("{} ({})", e.name, e.exited.as_deref().unwrap_or("exited")),
            ));
        }
    }
    if let Some(status) = &st.rt.exited {
        return Some(("Runtime.ExitError".into(), "failure", status.clone()));
    }
    None
}

impl<'a> Environment<'a> {
    fn new(
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
            log_format: cfg.log_format,
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

    fn function_info(&self) -> FunctionInfo<'_> {
        FunctionInfo {
            function_name: &self.env.info.function_name,
            function_arn: &self.env.info.function_arn,
            function_version: &self.env.info.function_version,
            instance_id: &self.env.info.instance_id,
            memory_mb: self.env.info.memory_mb,
            runtime_version: self.cfg.runtime_version.as_deref(),
        }
    }

    fn publish(&self, kind: &str, record: Value) {
        self.env
            .hub
            .publish(Event::platform(OffsetDateTime::now_utc(), kind, record));
    }

    fn sample_now(&self) {
        let p = lock(&self.pids).clone();
        lock(&self.meas).sample(&p);
    }

    fn all_pgids(&self) -> Vec<u32> {
        lock(&self.pids).clone()
    }

    /// Stops every child process (SIGSTOP of each process group) until [`Environment::thaw`].
    fn freeze(&self) {
        if !self.cfg.freeze || self.cfg.init_type == InitType::LambdaManagedInstances {
            return;
        }
        self.sample_now();
        let _ = self.frozen_tx.send(true);
        for pg in self.all_pgids() {
            process::signal_group(pg, Signal::SIGSTOP);
        }
    }

    fn thaw(&self) {
        if !*self.frozen_tx.borrow() {
            return;
        }
        for pg in self.all_pgids() {
            process::signal_group(pg, Signal::SIGCONT);
        }
        let _ = self.frozen_tx.send(false);
    }

    fn watch_exit(&mut self, mut child: tokio::process::Child, ext_idx: Option<usize>) {
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

    fn init_deadline(&self, start: Instant) -> Instant {
        match self.cfg.init_type {
            InitType::ProvisionedConcurrency | InitType::SnapStart => {
                start + self.cfg.init_timeout.max(Duration::from_secs(900))
            }
            _ => start + self.cfg.init_timeout,
        }
    }

    async fn init(&mut self) -> Result<(), SimError> {
        let init_type = self.cfg.init_type;
        let start = Instant::now();
        let deadline = self.init_deadline(start);
        self.publish(
            "platform.initStart",
            events::init_start(init_type, &self.function_info()),
        );
        // 1. Every extension starts; all must register before the runtime starts.
        for (i, path) in self.plan.extensions.iter().enumerate() {
            let name = file_name(path);
            let spawned = Instant::now();
            self.env
                .update(|st| st.exts.push(ExtSlot::new(name.clone(), spawned)));
            let spec = SpawnSpec {
                program: &path.to_string_lossy(),
                args: &[],
                env: &self.ext_env,
                cwd: path.parent().unwrap_or(Path::new("/")),
                role: Role::Extension,
                label: name.clone(),
                echo: self.cfg.echo_output,
                log_format: self.cfg.log_format,
            };
            let child =
                process::spawn(spec, self.env.hub.clone()).map_err(|source| SimError::Spawn {
                    what: format!("extension {}", path.display()),
                    source,
                })?;
            let pid = child.id();
            if let Some(pid) = pid {
                lock(&self.pids).push(pid);
            }
            self.ext_pids.push(pid);
            self.env.update(|st| st.exts[i].pid = pid);
            self.watch_exit(child, Some(i));
        }
        let registered = self
            .env
            .wait_until(Some(deadline), |st| {
                if let Some(f) = failure(st) {
                    return Some(Err(f));
                }
                if let Some(e) = st.exts.iter().find(|e| e.error_type.is_some()) {
                    return Some(Err((
                        e.error_type.clone().unwrap_or_default(),
                        "error",
                        e.name.clone(),
                    )));
                }
                st.exts.iter().all(|e| e.id.is_some()).then_some(Ok(()))
            })
            .await;
        match registered {
            Some(Ok(())) => {}
            Some(Err(f)) => return Err(self.init_failed(start, None, f)),
            None => {
                let waiting = self.waiting_names(|e| e.id.is_none(), "to register");
                return Err(self.init_timed_out(start, waiting));
            }
        }
        // 2. The runtime starts.
        self.env.update(|st| st.registration_open = false);
        let spawned = Instant::now();
        self.env.update(|st| st.rt.spawned_at = Some(spawned));
        let spec = SpawnSpec {
            program: &self.plan.program,
            args: &self.plan.args,
            env: &self.rt_env,
            cwd: &self.plan.task_root,
            role: Role::Function,
            label: "function".to_owned(),
            echo: self.cfg.echo_output,
            log_format: self.cfg.log_format,
        };
        let child = process::spawn(spec, self.env.hub.clone()).map_err(|source| {
            if source.kind() == std::io::ErrorKind::PermissionDenied {
                SimError::RuntimeNotExecutable(self.plan.program.clone())
            } else {
                SimError::Spawn {
                    what: format!("runtime {}", self.plan.program),
                    source,
                }
            }
        })?;
        self.rt_pid = child.id();
        if let Some(pid) = self.rt_pid {
            lock(&self.pids).push(pid);
        }
        self.env.update(|st| st.rt.pid = self.rt_pid);
        self.watch_exit(child, None);
        let snap = init_type == InitType::SnapStart;
        let runtime_ready = self
            .env
            .wait_until(Some(deadline), |st| {
                if let Some(et) = &st.rt.init_error {
                    return Some(Err((et.clone(), "error", "runtime".to_owned())));
                }
                if let Some(f) = failure(st) {
                    return Some(Err(f));
                }
                (st.rt.parked() > 0 || (snap && st.rt.in_restore_next())).then_some(Ok(()))
            })
            .await;
        match runtime_ready {
            Some(Ok(())) => {
                let rt_start_wall = OffsetDateTime::now_utc()
                    - time::Duration::seconds_f64(spawned.elapsed().as_secs_f64());
                let rt_ms = ms_between(spawned, Instant::now());
                self.publish(
                    "platform.initRuntimeDone",
                    events::init_runtime_done(
                        init_type,
                        "success",
                        None,
                        vec![events::span("runtimeInit", rt_start_wall, rt_ms)],
                    ),
                );
            }
            Some(Err(f)) => {
                let st = f.1;
                self.publish(
                    "platform.initRuntimeDone",
                    events::init_runtime_done(init_type, st, Some(&f.0), vec![]),
                );
                return Err(self.init_failed(start, Some(()), f));
            }
            None => {
                self.publish(
                    "platform.initRuntimeDone",
                    events::init_runtime_done(init_type, "timeout", None, vec![]),
                );
                return Err(self.init_timed_out(start, "the runtime to call next".into()));
            }
        }
        // 3. Init ends when every extension is in next too.
        let all_next = self
            .env
            .wait_until(Some(deadline), |st| {
                if let Some(f) = failure(st) {
                    return Some(Err(f));
                }
                st.exts.iter().all(|e| e.in_next()).then_some(Ok(()))
            })
            .await;
        match all_next {
            Some(Ok(())) => {}
            Some(Err(f)) => return Err(self.init_failed(start, Some(()), f)),
            None => {
                let waiting = self.waiting_names(|e| !e.in_next(), "to call next");
                return Err(self.init_timed_out(start, waiting));
            }
        }
        let init_ms = ms_between(start, Instant::now());
        self.init_ms = Some(init_ms);
        self.publish(
            "platform.initReport",
            events::init_report(init_type, "success", None, init_ms),
        );
        self.env.update(|st| st.phase = Phase::Running);
        self.env.hub.close_backlog();
        self.freeze();
        Ok(())
    }

    fn waiting_names(&self, pred: impl Fn(&ExtSlot) -> bool, what: &str) -> String {
        let st = self.env.lock();
        let names: Vec<String> = st
            .exts
            .iter()
            .filter(|e| pred(e))
            .map(|e| e.name.clone())
            .collect();
        format!("extension(s) {} {what}", names.join(", "))
    }

    fn init_failed(
        &mut self,
        start: Instant,
        runtime_done_sent: Option<()>,
        f: (String, &'static str, String),
    ) -> SimError {
        let (error_type, status, who) = f;
        let init_type = self.cfg.init_type;
        if runtime_done_sent.is_none() {
            self.publish(
                "platform.initRuntimeDone",
                events::init_runtime_done(init_type, status, Some(&error_type), vec![]),
            );
        }
        let ms = ms_between(start, Instant::now());
        self.init_ms = Some(ms);
        self.publish(
            "platform.initReport",
            events::init_report(init_type, status, Some(&error_type), ms),
        );
        if error_type == "Extension.Crash" {
            let name = who.split(' ').next().unwrap_or("").to_owned();
            let status = who
                .split_once(" (")
                .map(|(_, s)| s.trim_end_matches(')').to_owned())
                .unwrap_or_default();
            return SimError::ExtensionCrashedDuringInit { name, status };
        }
        if error_type == "Runtime.ExitError" {
            return SimError::RuntimeExitedDuringInit { status: who };
        }
        if who == "runtime" {
            return SimError::RuntimeInitError { error_type };
        }
        SimError::ExtensionInitError {
            name: who,
            error_type,
        }
    }

    fn init_timed_out(&mut self, start: Instant, waiting_for: String) -> SimError {
        let ms = ms_between(start, Instant::now());
        self.init_ms = Some(ms);
        self.publish(
            "platform.initReport",
            events::init_report(self.cfg.init_type, "timeout", None, ms),
        );
        SimError::InitTimeout {
            limit_ms: self.init_deadline(start).duration_since(start).as_millis(),
            waiting_for,
        }
    }

    /// SnapStart: the snapshot is taken (the environment frozen), then restored.
    async fn restore(&mut self) -> Result<f64, SimError> {
        let was = self.cfg.freeze;
        if was {
            self.freeze();
        }
        self.thaw();
        let start = Instant::now();
        let deadline = start + self.cfg.init_timeout;
        self.publish(
            "platform.restoreStart",
            events::restore_start(&self.function_info()),
        );
        self.env.update(|st| {
            if let Some(w) = st.rt.restore_waiter.take() {
                let _ = w.send(());
            }
        });
        let r = self
            .env
            .wait_until(Some(deadline), |st| {
                if let Some(et) = &st.rt.restore_error {
                    return Some(Err(et.clone()));
                }
                if let Some((et, _, _)) = failure(st) {
                    return Some(Err(et));
                }
                (st.rt.parked() > 0).then_some(Ok(()))
            })
            .await;
        let ms = ms_between(start, Instant::now());
        let (status, et) = match &r {
            Some(Ok(())) => ("success", None),
            Some(Err(et)) => ("error", Some(et.clone())),
            None => ("timeout", None),
        };
        self.publish(
            "platform.restoreRuntimeDone",
            events::restore_runtime_done(status, et.as_deref()),
        );
        self.publish(
            "platform.restoreReport",
            events::restore_report(status, et.as_deref(), ms),
        );
        match r {
            Some(Ok(())) => Ok(ms),
            Some(Err(error_type)) => Err(SimError::RestoreError { error_type }),
            None => Err(SimError::RestoreError {
                error_type: "timeout".into(),
            }),
        }
    }

    fn ctx(&self) -> Arc<InvokeCtx> {
        Arc::new(InvokeCtx {
            cfg: self.cfg.clone(),
            env: self.env.clone(),
            meas: self.meas.clone(),
            pids: self.pids.clone(),
            index: self.index,
        })
    }

    async fn invoke(
        &mut self,
        cold_init: Option<f64>,
        cold_restore: Option<f64>,
    ) -> InvocationReport {
        self.thaw();
        invoke_one(self.ctx(), cold_init, cold_restore, false).await
    }

    async fn invoke_concurrently(
        &mut self,
        n: u32,
        cold_init: Option<f64>,
    ) -> Vec<InvocationReport> {
        self.thaw();
        let ctx = self.ctx();
        let mut set = tokio::task::JoinSet::new();
        let mut started = 0u32;
        let mut out = Vec::new();
        let mut cold = cold_init;
        let limit = self.cfg.concurrency.max(1);
        while started < n || !set.is_empty() {
            while started < n && (set.len() as u32) < limit {
                set.spawn(invoke_one(ctx.clone(), cold.take(), None, true));
                started += 1;
            }
            if let Some(Ok(r)) = set.join_next().await {
                out.push(r);
            }
        }
        out
    }

    async fn shutdown(&mut self, reason: &str) {
        self.thaw();
        self.sample_now();
        let start = Instant::now();
        let deadline = start + self.cfg.shutdown_timeout;
        let deadline_ms = ids::epoch_millis(OffsetDateTime::now_utc())
            + i64::try_from(self.cfg.shutdown_timeout.as_millis()).unwrap_or(2_000);
        self.env.update(|st| st.phase = Phase::Shutdown);
        // The runtime first: SIGTERM, then SIGKILL after 300 ms.
        if let Some(pid) = self.rt_pid {
            process::signal_group(pid, Signal::SIGTERM);
            let rt_deadline = (start + Duration::from_millis(300)).min(deadline);
            let exited = self
                .env
                .wait_until(Some(rt_deadline), |st| st.rt.exited.is_some().then_some(()))
                .await;
            if exited.is_none() {
                process::signal_group(pid, Signal::SIGKILL);
            }
        }
        // Then SHUTDOWN to every extension that registered for it.
        let targets: Vec<usize> = {
            let st = self.env.lock();
            st.exts
                .iter()
                .enumerate()
                .filter(|(_, e)| e.exited.is_none() && e.wants("SHUTDOWN"))
                .map(|(i, _)| i)
                .collect()
        };
        for &i in &targets {
            self.env.deliver_to_extension(
                i,
                json!({"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms}),
            );
        }
        let _ = self
            .env
            .wait_until(Some(deadline), |st| {
                targets
                    .iter()
                    .all(|&i| st.exts[i].exited.is_some())
                    .then_some(())
            })
            .await;
        for pg in self.all_pgids() {
            process::signal_group(pg, Signal::SIGKILL);
        }
        let settle = Instant::now() + Duration::from_secs(5);
        for w in self.waiters.drain(..) {
            let _ = tokio::time::timeout_at(settle, w).await;
        }
        // Wake anything still parked, then stop deliveries.
        self.env.update(|st| {
            st.rt.waiters.clear();
            st.rt.restore_waiter = None;
            for e in &mut st.exts {
                e.waiter = None;
            }
        });
        self.env.hub.stop().await;
        if let Some(s) = self.sampler.take() {
            s.abort();
        }
    }

    fn collect(&self, report: &mut RunReport) {
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

/// One invocation, from `platform.start` to `platform.report`.
async fn invoke_one(
    ctx: Arc<InvokeCtx>,
    cold_init: Option<f64>,
    cold_restore: Option<f64>,
    concurrent: bool,
) -> InvocationReport {
    let cfg = &ctx.cfg;
    let env = &ctx.env;
    let start_wall = OffsetDateTime::now_utc();
    let t0 = Instant::now();
    let request_id = ids::request_id();
    let header = ids::trace_header(start_wall);
    let span_id = ids::span_id();
    let deadline = t0 + cfg.timeout;
    let deadline_ms =
        ids::epoch_millis(start_wall) + i64::try_from(cfg.timeout.as_millis()).unwrap_or(i64::MAX);
    let tracing = events::tracing(&span_id, &header);
    let publish = |kind: &str, record: Value| {
        env.hub
            .publish(Event::platform(OffsetDateTime::now_utc(), kind, record));
    };
    publish(
        "platform.start",
        events::start(&request_id, &cfg.function_version, &tracing),
    );
    if cold_init.is_some() || cold_restore.is_some() {
        for (kind, record) in &cfg.inject_telemetry {
            publish(kind, record.clone());
        }
    }
    let invoke_exts: Vec<usize> = {
        let st = env.lock();
        st.exts
            .iter()
            .enumerate()
            .filter(|(_, e)| e.wants("INVOKE") && e.exited.is_none())
            .map(|(i, _)| i)
            .collect()
    };
    for &i in &invoke_exts {
        env.deliver_to_extension(
            i,
            json!({
                "eventType": "INVOKE",
                "deadlineMs": deadline_ms,
                "requestId": request_id,
                "invokedFunctionArn": env.info.function_arn,
                "tracing": {"type": "X-Amzn-Trace-Id", "value": header},
            }),
        );
    }
    env.dispatch_to_runtime(Dispatch {
        request_id: request_id.clone(),
        deadline_ms,
        trace_header: header.clone(),
        body: bytes::Bytes::from(cfg.payload.clone()),
        client_context: cfg.client_context.clone(),
        cognito_identity: cfg.cognito_identity.clone(),
    });
    enum Done {
        Answered(crate::state::Outcome),
        Failed(String),
    }
    let first = env
        .wait_until(Some(deadline), |st| {
            if let Some(o) = st
                .invocations
                .get(&request_id)
                .and_then(|s| s.outcome.clone())
            {
                return Some(Done::Answered(o));
            }
            failure(st).map(|f| Done::Failed(f.0))
        })
        .await;
    let mut status = "success".to_owned();
    let mut error_type = None;
    let runtime_ms: f64;
    let end: Instant;
    let mut post_runtime_ms = 0.0;
    let mut overhead_span = None;
    match first {
        Some(Done::Answered(o)) => {
            runtime_ms = ms_between(t0, o.finished);
            if let Some(et) = &o.error_type {
                status = "error".into();
                error_type = Some(et.clone());
            }
            let spans = vec![
                events::span("responseLatency", start_wall, ms_between(t0, o.started)),
                events::span(
                    "responseDuration",
                    o.started_wall,
                    ms_between(o.started, o.finished),
                ),
            ];
            publish(
                "platform.runtimeDone",
                events::runtime_done(&events::RuntimeDone {
                    request_id: &request_id,
                    status: &status,
                    error_type: error_type.as_deref(),
                    duration_ms: runtime_ms,
                    produced_bytes: Some(o.bytes),
                    spans,
                    tracing: &tracing,
                }),
            );
            // The invoke ends when every extension (and, one at a time, the runtime) is back in next.
            let back = env
                .wait_until(Some(deadline), |st| {
                    if let Some(f) = failure(st) {
                        return Some(Err(f.0));
                    }
                    let exts_back = invoke_exts.iter().all(|&i| {
                        let e = &st.exts[i];
                        e.in_next() && e.pending.is_empty()
                    });
                    let rt_back = concurrent || st.rt.parked() > 0;
                    (exts_back && rt_back).then_some(Ok(()))
                })
                .await;
            let response_wall = o.started_wall
                + time::Duration::seconds_f64(o.finished.duration_since(o.started).as_secs_f64());
            match back {
                Some(Ok(())) => {
                    let st = env.lock();
                    let last_ext = invoke_exts
                        .iter()
                        .filter_map(|&i| st.exts[i].last_next_at)
                        .max();
                    end = match last_ext {
                        Some(t) if t > o.finished => t,
                        _ => o.finished,
                    };
                    post_runtime_ms = match last_ext {
                        Some(t) => ms_between(o.finished, t),
                        None => 0.0,
                    };
                }
                Some(Err(et)) => {
                    status = "failure".into();
                    error_type = Some(et);
                    end = Instant::now();
                    post_runtime_ms = ms_between(o.finished, end);
                }
                None => {
                    status = "timeout".into();
                    error_type = None;
                    end = Instant::now();
                    post_runtime_ms = ms_between(o.finished, end);
                }
            }
            if post_runtime_ms > 0.0 {
                overhead_span = Some(events::span(
                    "extensionOverhead",
                    response_wall,
                    post_runtime_ms,
                ));
            }
        }
        Some(Done::Failed(et)) => {
            status = "failure".into();
            error_type = Some(et);
            end = Instant::now();
            runtime_ms = ms_between(t0, end);
            publish(
                "platform.runtimeDone",
                events::runtime_done(&events::RuntimeDone {
                    request_id: &request_id,
                    status: &status,
                    error_type: error_type.as_deref(),
                    duration_ms: runtime_ms,
                    produced_bytes: None,
                    spans: vec![],
                    tracing: &tracing,
                }),
            );
        }
        None => {
            status = "timeout".into();
            end = Instant::now();
            runtime_ms = ms_between(t0, end);
            publish(
                "platform.runtimeDone",
                events::runtime_done(&events::RuntimeDone {
                    request_id: &request_id,
                    status: &status,
                    error_type: None,
                    duration_ms: runtime_ms,
                    produced_bytes: None,
                    spans: vec![],
                    tracing: &tracing,
                }),
            );
        }
    }
    let duration_ms = ms_between(t0, end);
    let init_billed = match cfg.init_type {
        InitType::OnDemand => cold_init.map_or(0, |i| i.ceil() as u64),
        _ => 0,
    };
    let billed = (duration_ms.ceil() as u64).max(1) + init_billed;
    let max_mem_mb = {
        let p = lock(&ctx.pids).clone();
        let mut m = lock(&ctx.meas);
        m.sample(&p);
        m.peak_env_rss_kb.div_ceil(1024)
    };
    publish(
        "platform.report",
        events::report(&events::Report {
            request_id: &request_id,
            status: &status,
            error_type: error_type.as_deref(),
            duration_ms,
            billed_duration_ms: billed,
            memory_mb: cfg.memory_mb,
            max_memory_used_mb: max_mem_mb,
            init_duration_ms: cold_init,
            restore_duration_ms: cold_restore,
            spans: overhead_span.into_iter().collect(),
            tracing: &tracing,
            duration_only: cfg.init_type == InitType::LambdaManagedInstances,
        }),
    );
    InvocationReport {
        request_id,
        trace_header: header,
        span_id,
        environment: ctx.index,
        status,
        error_type,
        duration_ms: events::round3(duration_ms),
        runtime_duration_ms: events::round3(runtime_ms),
        post_runtime_ms: events::round3(post_runtime_ms),
        billed_duration_ms: billed,
        max_memory_used_mb: max_mem_mb,
        init_duration_ms: cold_init,
        restore_duration_ms: cold_restore,
    }
}
