//! A fleet of execution environments under load ([`crate::fleet`]): one dispatcher that routes
//! each request ([`Pool`]), and one task per environment that initializes it, runs the
//! invocations it is given, freezes it between them, and shuts it down when told to (idle
//! timeout, end of the run) or after a reset. Each environment has its own API endpoint, its
//! own cgroups, its own copy of the extensions and its own processes, as on Lambda.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::environment::Environment;
use super::plan::Plan;
use super::{bind, lock, ms_between};
use crate::api::{self, Current};
use crate::config::{InitType, RunConfig};
use crate::error::SimError;
use crate::fleet::pool::{Pool, Route};
use crate::fleet::report::{self, EnvironmentReport, FleetReport, RequestRecord};
use crate::fleet::{FleetConfig, Load, expand, machine_limit};
use crate::ports::free_loopback_port;
use crate::report::{RunReport, Summary};
use crate::resources;
use crate::telemetry::Counters;
use clients::generate;
use serve::{AbortOnDrop, copy_extensions, serve_environment};

mod clients;
mod serve;

/// A request waiting for its answer.
struct Request {
    reply: oneshot::Sender<Answer>,
}

/// What the invoker of a request gets back.
enum Answer {
    Throttled(&'static str),
    Ran {
        environment: u32,
        cold: bool,
        status: String,
        error_type: Option<String>,
        /// The extensions' time after the runtime's answer: the caller already had it.
        post_runtime_ms: f64,
    },
    /// Its new environment could not start.
    NotStarted {
        environment: Option<u32>,
        /// The init's `errorType` if it failed as Lambda reports it, else why it did not start.
        error: String,
    },
}

enum Job {
    Invoke(Request),
    Shutdown,
}

/// What an environment's task tells the dispatcher.
enum Note {
    /// Frozen, waiting for a request.
    Idle(usize),
    /// Shutting down on its own (a reset, a failed init): route nothing more to it.
    Reset(usize),
    /// Gone, with what it measured.
    Gone(usize, Box<(RunReport, EnvironmentReport)>),
}

static RUNS: AtomicU32 = AtomicU32::new(0);

/// Runs the load against a fleet of environments and reports every request and environment.
pub async fn run_fleet(config: FleetConfig) -> Result<FleetReport, SimError> {
    let function = &config.function;
    if function.init_type != InitType::OnDemand {
        return Err(SimError::InvalidConfig(
            "a fleet's environments start on demand; use --provisioned-concurrency for \
             provisioned ones (SnapStart and Managed Instances are not modelled at scale)"
                .into(),
        ));
    }
    let pool = Pool::new(config.reserved_concurrency, config.account_concurrency);
    // A reserved concurrency of 0 is Lambda's way to throttle a function; an account of 0 is not.
    if config.account_concurrency == 0 {
        return Err(SimError::InvalidConfig(
            "an account concurrency of 0 is not a Lambda account".into(),
        ));
    }
    if config.provisioned_concurrency > pool.limit() {
        return Err(SimError::InvalidConfig(format!(
            "provisioned concurrency {} is above the function's concurrency limit {} (Lambda \
             refuses it: reserve at least as much as you provision)",
            config.provisioned_concurrency,
            pool.limit()
        )));
    }
    let (cpus, memory_total_mb) = crate::fleet::this_machine();
    let machine = machine_limit(function.memory_mb, cpus, memory_total_mb);
    if config.max_environments == Some(0) {
        return Err(SimError::InvalidConfig(
            "the most environments at once must be 1 or more".into(),
        ));
    }
    let most = config.max_environments.map_or(machine, |m| m.min(machine));
    let needed = pool
        .limit()
        .min(config.load.most_in_flight())
        .max(config.provisioned_concurrency);
    if (matches!(config.load, Load::Spike { .. }) || config.provisioned_concurrency > most)
        && needed > most
    {
        return Err(too_many(needed, most, function.memory_mb));
    }
    // The per-environment variables are checked like the function's own.
    let mut checked = function.clone();
    checked.env.extend(config.environment_env.iter().cloned());
    let plan = Plan::new(&checked)?;
    let freezes = function.freeze;
    let on_demand = Arc::new(resources::Plan::new(
        &function.resources,
        function.memory_mb,
        InitType::OnDemand,
        freezes,
    )?);
    let provisioned = if config.provisioned_concurrency > 0 {
        Arc::new(resources::Plan::new(
            &function.resources,
            function.memory_mb,
            InitType::ProvisionedConcurrency,
            freezes,
        )?)
    } else {
        on_demand.clone()
    };
    let workdir = std::env::temp_dir().join(format!(
        "contrail-sim-fleet-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&workdir).map_err(|e| {
        SimError::InvalidConfig(format!("cannot create {}: {e}", workdir.display()))
    })?;
    let (notes_tx, notes_rx) = mpsc::unbounded_channel();
    let mut fleet = Fleet {
        config: &config,
        plan,
        on_demand,
        provisioned,
        counters: Arc::new(Counters::default()),
        workdir: workdir.clone(),
        tasks: Vec::new(),
        jobs: Vec::new(),
        notes_tx,
        notes_rx,
        pieces: Vec::new(),
        pool,
        start: Instant::now(),
        created: Vec::new(),
        cold_starts: 0,
        peak: 0,
    };
    let (timeline, mut pieces, cold_starts) = fleet.drive(most).await?;
    pieces.sort_by_key(|(_, e)| e.index);
    let mut resources = fleet_resources(&pieces, fleet.on_demand.report());
    if config.provisioned_concurrency > 0 {
        resources.summary = format!(
            "{}; provisioned environments: {}",
            resources.summary,
            fleet.provisioned.report().summary
        );
    }
    let mut run = RunReport {
        function_name: function.function_name.clone(),
        initialization_type: InitType::OnDemand.as_str().to_owned(),
        memory_size_mb: function.memory_mb,
        resources,
        environments: pieces.len() as u32,
        ..RunReport::default()
    };
    let mut environments = Vec::new();
    for (piece, mut environment) in pieces {
        if let Some(created) = fleet.created.get(environment.index as usize) {
            environment.created_at_ms = signed_ms(fleet.start, *created);
        }
        if environment.index == 0 {
            run.runtime = piece.runtime;
            run.init_ms = environment.init_ms;
        }
        run.extensions.extend(piece.extensions);
        run.invocations.extend(piece.invocations);
        environments.push(environment);
    }
    run.telemetry = fleet.counters.snapshot();
    let post: Vec<f64> = run.invocations.iter().map(|i| i.post_runtime_ms).collect();
    run.post_runtime = Summary::of(&post);
    Ok(FleetReport {
        load: config.load.to_string(),
        concurrency_limit: fleet.pool.limit(),
        limit_reason: fleet.pool.reason().to_owned(),
        provisioned_concurrency: config.provisioned_concurrency,
        machine_limit: most,
        requests: timeline.len() as u64,
        throttled: report::throttles(&timeline),
        cold_starts,
        peak_in_flight: fleet.peak,
        timeline,
        environments,
        run,
    })
}

/// Milliseconds from `a` to `b`, negative if `b` is earlier.
fn signed_ms(a: Instant, b: Instant) -> f64 {
    if b >= a {
        ms_between(a, b)
    } else {
        -ms_between(b, a)
    }
}

/// Where a request that needed a cold start goes once there is room.
enum Room {
    /// Its environment can start.
    Ready,
    /// An environment went idle while it waited: it goes there.
    Warm(usize),
}

/// How long a cold start waits for environments shutting down to be gone when the machine
/// is full with them. An environment's shutdown ends within the SHUTDOWN phase's 2 s, plus the
/// time to kill its processes and collect its report.
const SHUTTING_DOWN_WAIT: Duration = Duration::from_secs(10);

fn too_many(needed: u32, most: u32, memory_mb: u32) -> SimError {
    SimError::InvalidConfig(format!(
        "the load needs {needed} environments at once, more than this machine runs at \
         {memory_mb} MB ({most}: their memory limits within three quarters of its memory, their \
         CPU shares within twice its CPUs); lower the load, or set --reserved-concurrency {most} \
         or less to see Lambda throttle the rest"
    ))
}

/// What the on-demand environments were given (`plan`), with every environment's CPU
/// throttling and OOM kills summed.
fn fleet_resources(
    pieces: &[(RunReport, EnvironmentReport)],
    plan: crate::report::ResourceReport,
) -> crate::report::ResourceReport {
    let mut total = plan;
    for (p, _) in pieces {
        if let Some(t) = &p.resources.throttling {
            let sum = total.throttling.get_or_insert_with(Default::default);
            sum.periods += t.periods;
            sum.throttled_periods += t.throttled_periods;
            sum.throttled_ms += t.throttled_ms;
        }
        total.oom_kills += p.resources.oom_kills;
    }
    total
}

struct Fleet<'c> {
    config: &'c FleetConfig,
    plan: Plan,
    on_demand: Arc<resources::Plan>,
    provisioned: Arc<resources::Plan>,
    counters: Arc<Counters>,
    workdir: PathBuf,
    /// Each environment's task.
    tasks: Vec<JoinHandle<()>>,
    /// Each environment's job queue (none once it is told to shut down or is gone).
    jobs: Vec<Option<mpsc::UnboundedSender<Job>>>,
    notes_tx: mpsc::UnboundedSender<Note>,
    notes_rx: mpsc::UnboundedReceiver<Note>,
    pieces: Vec<(RunReport, EnvironmentReport)>,
    pool: Pool,
    start: Instant,
    /// When each environment was created.
    created: Vec<Instant>,
    cold_starts: u64,
    /// The most requests in flight at once.
    peak: u32,
}

impl Drop for Fleet<'_> {
    /// A run that ends early (an error, an interrupt that drops it) leaves nothing behind:
    /// each environment's task is aborted, which drops the environment (its processes are
    /// killed, its cgroups removed) and its API server; then the extensions' copies go.
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

type Outcome = (Vec<RequestRecord>, Vec<(RunReport, EnvironmentReport)>, u64);

impl Fleet<'_> {
    async fn drive(&mut self, most: u32) -> Result<Outcome, SimError> {
        let provisioned = self.config.provisioned_concurrency;
        for _ in 0..provisioned {
            let i = self.pool.add_provisioned();
            self.spawn(i, None).await?;
        }
        // The load starts once every provisioned environment is ready (or failed).
        while self.pool.warming() > 0 && !self.tasks.iter().all(JoinHandle::is_finished) {
            tokio::select! {
                Some(note) = self.notes_rx.recv() => self.note(note),
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        self.start = Instant::now();
        let (requests_tx, mut requests) = mpsc::unbounded_channel();
        let timeline: Arc<Mutex<Vec<RequestRecord>>> = Arc::default();
        let mut load = tokio::spawn(generate(
            self.config.load.clone(),
            self.start,
            requests_tx,
            timeline.clone(),
        ));
        let mut failure = None;
        loop {
            let expiry = self.pool.next_expiry(self.config.idle_timeout);
            tokio::select! {
                biased;
                Some(note) = self.notes_rx.recv() => self.note(note),
                Some(request) = requests.recv() => {
                    if let Err(e) = self.route(request, most).await {
                        failure = Some(e);
                        break;
                    }
                }
                () = sleep_until_some(expiry) => {
                    for i in self.pool.expire(Instant::now(), self.config.idle_timeout) {
                        self.tell(i, Job::Shutdown);
                    }
                }
                _ = &mut load => break,
            }
        }
        load.abort();
        for i in self.pool.retire_all() {
            self.tell(i, Job::Shutdown);
        }
        // Every environment ends with its report; one whose task died (a panic) never sends
        // it, and is not waited for once every task has ended.
        while self.pieces.len() < self.jobs.len() {
            tokio::select! {
                Some(note) = self.notes_rx.recv() => self.note(note),
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if self.tasks.iter().all(JoinHandle::is_finished) && self.notes_rx.is_empty() {
                        break;
                    }
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let mut timeline = std::mem::take(&mut *lock(&timeline));
        timeline.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        Ok((timeline, std::mem::take(&mut self.pieces), self.cold_starts))
    }

    /// Wait until the environment `i` a cold start would add fits on this machine.
    /// Environments shutting down (after a failed init, a reset or an idle timeout) still hold
    /// their processes and memory, so the start waits for them to be gone, at most
    /// [`SHUTTING_DOWN_WAIT`], and its request waits with it, as it would for a slow start;
    /// if an environment goes idle meanwhile, the request goes there instead
    /// ([`Room::Warm`]). An error when the requests in flight alone fill the machine, or when
    /// the wait is over.
    async fn room_for_one(&mut self, i: usize, most: u32) -> Result<Room, SimError> {
        let memory_mb = self.config.function.memory_mb;
        let until = Instant::now() + SHUTTING_DOWN_WAIT;
        loop {
            // The environments not gone, and the one to start.
            let not_gone = (self.jobs.len() - self.pieces.len()) as u32 + 1;
            if not_gone <= most {
                return Ok(Room::Ready);
            }
            // The requests in flight, this one's start among them.
            let in_flight = self.pool.in_flight();
            if in_flight > most {
                return Err(too_many(in_flight, most, memory_mb));
            }
            tokio::select! {
                Some(note) = self.notes_rx.recv() => {
                    self.note(note);
                    if let Some(j) = self.pool.reroute_warm(i) {
                        return Ok(Room::Warm(j));
                    }
                }
                () = tokio::time::sleep_until(until) => {
                    return Err(SimError::InvalidConfig(format!(
                        "{} environment(s) were still shutting down after {} s, and one more \
                         would be past the {most} this machine runs at {memory_mb} MB; lower \
                         the load",
                        not_gone - in_flight,
                        SHUTTING_DOWN_WAIT.as_secs()
                    )));
                }
            }
        }
    }

    fn note(&mut self, note: Note) {
        match note {
            Note::Idle(i) => self.pool.idle(i, Instant::now()),
            Note::Reset(i) => {
                self.pool.retire(i);
            }
            Note::Gone(i, piece) => {
                self.pool.retire(i);
                if let Some(j) = self.jobs.get_mut(i) {
                    *j = None;
                }
                self.pieces.push(*piece);
                let _ = std::fs::remove_dir_all(self.workdir.join(format!("environment-{i}")));
            }
        }
    }

    fn tell(&mut self, i: usize, job: Job) {
        let shutdown = matches!(job, Job::Shutdown);
        if let Some(Some(tx)) = self.jobs.get(i) {
            let _ = tx.send(job);
        }
        if shutdown {
            if let Some(j) = self.jobs.get_mut(i) {
                *j = None;
            }
        }
    }

    async fn route(&mut self, request: Request, most: u32) -> Result<(), SimError> {
        match self.pool.route() {
            Route::Throttle(reason) => {
                let _ = request.reply.send(Answer::Throttled(reason));
                Ok(())
            }
            Route::Warm(i) => {
                self.peak = self.peak.max(self.pool.in_flight());
                self.tell(i, Job::Invoke(request));
                Ok(())
            }
            Route::Cold => {
                let i = self.jobs.len();
                match self.room_for_one(i, most).await {
                    Ok(Room::Ready) => {}
                    Ok(Room::Warm(j)) => {
                        self.peak = self.peak.max(self.pool.in_flight());
                        self.tell(j, Job::Invoke(request));
                        return Ok(());
                    }
                    Err(e) => {
                        self.pool.retire(i);
                        self.jobs.push(None);
                        self.pieces
                            .push((RunReport::default(), EnvironmentReport::default()));
                        let _ = request.reply.send(Answer::NotStarted {
                            environment: None,
                            error: "beyond this machine's limit".into(),
                        });
                        return Err(e);
                    }
                }
                self.cold_starts += 1;
                self.peak = self.peak.max(self.pool.in_flight());
                if let Err(e) = self.spawn(i, Some(request)).await {
                    self.pool.retire(i);
                    return Err(e);
                }
                Ok(())
            }
        }
    }

    /// Starts environment `i`: its endpoint, its copy of the extensions, its variables, and
    /// the task that runs it (with `first` as its first request, else provisioned).
    async fn spawn(&mut self, i: usize, first: Option<Request>) -> Result<(), SimError> {
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let listener = bind(listen).await?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: listen,
            source,
        })?;
        let current = Current::default();
        let server = AbortOnDrop(api::serve(listener, current.clone()));
        let provisioned = first.is_none();
        let mut function: RunConfig = self.config.function.clone();
        function.listen = addr;
        if provisioned {
            function.init_type = InitType::ProvisionedConcurrency;
        }
        let own = expand(&self.config.environment_env, free_loopback_port).map_err(|source| {
            SimError::Bind {
                addr: listen,
                source,
            }
        })?;
        function.env.extend(own);
        let plan = copy_extensions(&self.plan, &self.workdir.join(format!("environment-{i}")))?;
        let resources = if provisioned {
            self.provisioned.clone()
        } else {
            self.on_demand.clone()
        };
        let environment = Environment::new(
            Arc::new(function),
            Arc::new(plan),
            resources,
            addr,
            i as u32,
            self.counters.clone(),
        )?;
        current.set(Some(environment.shared.clone()));
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        self.jobs.push(Some(jobs_tx));
        self.created.push(Instant::now());
        self.tasks.push(tokio::spawn(serve_environment(
            environment,
            server,
            jobs_rx,
            self.notes_tx.clone(),
            first,
        )));
        Ok(())
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
