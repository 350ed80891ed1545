//! Wiring: register, read the configuration, start the tasks, subscribe, run the lifecycle.
//!
//! Start-up order is chosen for the INIT time users pay for: only what the register call needs
//! comes before it; everything else (configuration, sockets, the subscription) comes after, and
//! the exporter's TLS set-up happens in the worker, off the path to the first `next`.
//!
//! Tasks (one current-thread runtime, see `docs/adr/0005-process-model.md`):
//! - the lifecycle loop (`next`, flush decisions, shutdown);
//! - the worker (the task named `processing` in messages), sole owner of mapping and delivery;
//! - the Telemetry API listener and the local OTLP receivers (HTTP and gRPC), which only
//!   decode and queue.
//!
//! A task that ends or panics reports on the `fatal` channel; the lifecycle then degrades to the
//! idle loop. A panic of the lifecycle itself is caught here and degrades the same way.

use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::config::env::{Env, ProcessEnv};
use crate::config::{self, Bootstrap, Platform, Settings};
use crate::diag;
use crate::diag::Stats;
use crate::export::cut::Cut;
use crate::intake::telemetry::subscription::{Subscribed, Subscription, TelemetryType};
use crate::intake::{receiver, telemetry};
use crate::lambda_api::{Client, ErrorPhase, ExtensionId, ExtensionName, Registration};
use crate::lifecycle::policy::{FlushPolicy, FlushSettings, HIGH_WATER};
use crate::lifecycle::{self, Degraded, Ended, Lifecycle};
use crate::pipeline::stages::{Pipeline, now_unix_nano};
use crate::pipeline::worker::{self, WorkerHandle};
use crate::pipeline::{IntakeBudget, intake_queue};

/// Units (one Telemetry API POST or one receiver request each) the intake queue holds. The
/// worker keeps up except while it flushes (bounded by the flush budget), when a few
/// POSTs of the 25 ms buffering window pile up. The local receiver may fill only half of it:
/// the other half stays free for the Telemetry API.
pub(crate) const INTAKE_CAPACITY: usize = 64;

/// The error type reported through `init/error` for bad configuration.
pub(crate) const CONFIG_INVALID: &str = "Extension.ConfigInvalid";

/// Run the extension in this process; the binary's whole `main`.
pub fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            diag::error!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // A LocalSet: every task runs on this one thread, so their futures need not be `Send`.
    let code = tokio::task::LocalSet::new().block_on(&runtime, run(&ProcessEnv));
    // Dropping the runtime would wait for blocking-pool threads (a name lookup of an abandoned
    // export can take seconds) and outlive the SHUTDOWN deadline; the process is exiting.
    runtime.shutdown_background();
    code
}

/// The whole life of the extension. Must run inside a [`tokio::task::LocalSet`].
pub(crate) async fn run(env: &dyn Env) -> ExitCode {
    // Contrail's own share of init starts here (`aws.lambda.init.contrail`): one clock read.
    let process_start_ns = now_unix_nano();
    let boot = match Bootstrap::from_env(env, ExtensionName::of_current_exe()) {
        Ok(boot) => boot,
        Err(err) => {
            diag::error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let mut client = Client::new(boot.api.clone());
    let registration = match client.register(&boot.name, boot.platform.events()).await {
        Ok(r) => r,
        Err(err) => {
            diag::error!("registering as {:?} failed: {err}", boot.name.as_str());
            return ExitCode::FAILURE;
        }
    };
    let id = registration.id.clone();

    let settings = match Settings::from_env(env) {
        Ok(parsed) => {
            diag::set_level(parsed.value.log_level);
            for warning in &parsed.warnings {
                diag::warn!("{warning}");
            }
            parsed.value
        }
        Err(errors) => {
            let message = config::error_message(&errors);
            diag::error!("{message}");
            lifecycle::report_error(&mut client, &id, ErrorPhase::Init, CONFIG_INVALID, &message)
                .await;
            return ExitCode::FAILURE;
        }
    };

    let flush = settings.flush;
    let (tasks, lifecycle) =
        match start(&settings, &registration, boot.platform, flush, &mut client).await {
            Ok(started) => (
                started.tasks,
                Lifecycle::new(
                    client,
                    id,
                    started.worker,
                    FlushPolicy::new(flush),
                    started.fatal,
                    started.stream,
                    started.stats,
                ),
            ),
            Err(reason) => return idle(&mut client, &id, &reason).await,
        };

    let api = boot.api.clone();
    let fallback_id = lifecycle.id().clone();
    let mut lifecycle = lifecycle;
    lifecycle.set_process_start(process_start_ns);
    let outcome = tokio::task::spawn_local(lifecycle.run()).await;
    match outcome {
        Ok((Ended::Shutdown, _, _)) => ExitCode::SUCCESS,
        Ok((Ended::ApiGone(err), _, _)) => {
            diag::error!("the Extensions API is unusable: {err}");
            ExitCode::FAILURE
        }
        Ok((Ended::Degraded(reason), mut client, id)) => {
            drop(tasks);
            idle(&mut client, &id, &reason).await
        }
        Err(_) => {
            drop(tasks);
            let mut client = Client::new(api);
            idle(&mut client, &fallback_id, &Degraded::Panicked).await
        }
    }
}

async fn idle(client: &mut Client, id: &ExtensionId, reason: &Degraded) -> ExitCode {
    match lifecycle::idle_loop(client, id, reason).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            diag::error!("the Extensions API is unusable: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The tasks beside the lifecycle; dropping this stops them.
pub(crate) struct Tasks(Vec<AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}

impl Tasks {
    /// Spawn `fut`; when it ends or panics, report `name` on `fatal`.
    fn spawn<F>(&mut self, name: &'static str, fatal: &mpsc::UnboundedSender<Degraded>, fut: F)
    where
        F: Future<Output = ()> + 'static,
    {
        self.spawn_boxed(name, fatal, Box::pin(fut));
    }

    /// [`Tasks::spawn`] on a boxed future: every task, and every task's watcher, is then of one
    /// type, so tokio's task code is in the binary once rather than once per kind of task.
    fn spawn_boxed(
        &mut self,
        name: &'static str,
        fatal: &mpsc::UnboundedSender<Degraded>,
        fut: Pin<Box<dyn Future<Output = ()>>>,
    ) {
        let handle = tokio::task::spawn_local(fut);
        self.0.push(handle.abort_handle());
        let fatal = fatal.clone();
        let watcher = tokio::task::spawn_local(async move {
            let result = handle.await;
            // A closed channel means the lifecycle has ended (shutdown or degrade) and let go
            // of the tasks: their end is expected then.
            if !fatal.is_closed() && !matches!(&result, Err(e) if e.is_cancelled()) {
                let reason = Degraded::TaskEnded(name);
                // Said now: the lifecycle may be blocked in `next` for a long time.
                lifecycle::announce_degraded(&reason);
                let _ = fatal.send(reason);
            }
        });
        self.0.push(watcher.abort_handle());
    }
}

/// What [`start`] sets up.
struct Started {
    tasks: Tasks,
    worker: WorkerHandle,
    fatal: lifecycle::FatalReceiver,
    /// The stream, when the Telemetry API accepted the subscription.
    stream: Option<lifecycle::Stream>,
    stats: Arc<Stats>,
}

/// Bind the sockets, start the tasks and subscribe. `Err` degrades to the idle loop.
async fn start(
    settings: &Settings,
    registration: &Registration,
    platform: Platform,
    flush: FlushSettings,
    client: &mut Client,
) -> Result<Started, Degraded> {
    let telemetry_config = &settings.telemetry;
    let bind_addr = format!("0.0.0.0:{}", telemetry_config.port);
    let listener =
        TcpListener::bind(&bind_addr)
            .await
            .map_err(|source| Degraded::ListenerBind {
                addr: bind_addr.clone(),
                source,
            })?;
    let port = listener
        .local_addr()
        .map_err(|source| Degraded::ListenerBind {
            addr: bind_addr,
            source,
        })?
        .port();

    let stats = Arc::new(Stats::default());
    let (intake, intake_rx) = intake_queue(INTAKE_CAPACITY, stats.clone());
    let (deliveries, delivered) = telemetry::listener::Deliveries::new();
    let runtime_done = deliveries.runtime_done();
    let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
    let (worker_handle, inbox) = worker::channel(HIGH_WATER);
    let mut tasks = Tasks(Vec::new());

    let mut stages = Pipeline::new(settings, registration, platform, stats.clone());
    // It waits for the first INVOKE (or flush) before it fetches anything.
    if let Some(resolver) = stages.take_resolver() {
        tasks.spawn_boxed("secrets resolver", &fatal_tx, resolver.0);
    }
    tasks.spawn(
        "processing",
        &fatal_tx,
        worker::run(stages, inbox, intake_rx),
    );
    tasks.spawn(
        "Telemetry API listener",
        &fatal_tx,
        telemetry::listener::serve(
            listener,
            intake.clone(),
            deliveries,
            telemetry::listener::DEFAULT_MAX_BODY_BYTES,
        ),
    );
    // One bound on the bytes of both receivers' requests in memory (ADR 0015).
    let receiver_budget = IntakeBudget::new(settings.receiver.max_pending_bytes);
    if let Some(endpoint) = settings.receiver.endpoint {
        match TcpListener::bind(endpoint).await {
            Ok(receiver_listener) => tasks.spawn(
                "OTLP receiver",
                &fatal_tx,
                receiver::serve(
                    receiver_listener,
                    intake.leaving_free(INTAKE_CAPACITY / 2),
                    settings.receiver.clone(),
                    receiver_budget.clone(),
                ),
            ),
            // The telemetry pipeline works without it; the function's SDK gets connection
            // refused, which SDKs handle.
            Err(err) => diag::warn!(
                "the local OTLP receiver is off: cannot listen on {endpoint}: {err} (set {} to another address or off)",
                receiver::ENDPOINT_VAR
            ),
        }
    }
    if let Some(endpoint) = settings.receiver.grpc_endpoint {
        match TcpListener::bind(endpoint).await {
            Ok(grpc_listener) => tasks.spawn(
                "OTLP/gRPC receiver",
                &fatal_tx,
                receiver::grpc::serve(
                    grpc_listener,
                    intake.leaving_free(INTAKE_CAPACITY / 2),
                    receiver::grpc::GrpcOptions::of(&settings.receiver),
                    receiver_budget,
                ),
            ),
            Err(err) => diag::warn!(
                "the local OTLP/gRPC receiver is off: cannot listen on {endpoint}: {err} (set {} to another address or off)",
                receiver::GRPC_ENDPOINT_VAR
            ),
        }
    }
    if platform == Platform::ManagedInstances {
        // No INVOKE events and no freeze: flush on a timer.
        let ticker = worker_handle.clone();
        tasks.spawn("flush timer", &fatal_tx, async move {
            let mut interval = tokio::time::interval(flush.interval);
            interval.tick().await;
            loop {
                interval.tick().await;
                // No invocation waits for it: a flush that may probe a held backend (ADR 0014),
                // never cut.
                let deadline = Instant::now() + flush.budget;
                let Ok(rx) = ticker.flush_while_running(deadline, Cut::never()) else {
                    return;
                };
                if WorkerHandle::reply(rx, deadline).await.is_err() {
                    return;
                }
            }
        });
    }

    let subscription = Subscription {
        schema: platform.schema(),
        port,
        types: telemetry_config.types.clone(),
        buffering: telemetry_config.buffering,
    };
    let subscribed = match client.subscribe(&registration.id, &subscription).await {
        Ok(Subscribed::Yes) => true,
        Ok(Subscribed::NotSupported) => {
            diag::warn!(
                "the Telemetry API is not available here (Telemetry.NotSupported): no platform telemetry; the local OTLP receiver still works"
            );
            false
        }
        Err(err) => return Err(Degraded::Subscribe(err)),
    };
    let stream = subscribed.then(|| lifecycle::Stream {
        // runtimeDone and report come only with the `platform` stream.
        platform: telemetry_config.types.contains(&TelemetryType::Platform),
        deliveries: delivered,
        runtime_done,
        buffering: Duration::from_millis(u64::from(telemetry_config.buffering.timeout_ms)),
    });
    Ok(Started {
        tasks,
        worker: worker_handle,
        fatal: fatal_rx,
        stream,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_or_ends_is_reported_and_an_aborted_one_is_not() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel();
                let mut tasks = Tasks(Vec::new());
                tasks.spawn("panicking", &fatal_tx, async { panic!("boom") });
                let reason = fatal_rx.recv().await.unwrap();
                assert!(
                    matches!(reason, Degraded::TaskEnded("panicking")),
                    "{reason}"
                );

                tasks.spawn("ending", &fatal_tx, async {});
                let reason = fatal_rx.recv().await.unwrap();
                assert!(matches!(reason, Degraded::TaskEnded("ending")), "{reason}");

                tasks.spawn("forever", &fatal_tx, std::future::pending());
                drop(tasks);
                drop(fatal_tx);
                // Aborting is not a failure: the channel closes without a message.
                assert!(fatal_rx.recv().await.is_none());
            })
            .await;
    }
}
