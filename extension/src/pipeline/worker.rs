//! The processing task: the one owner of the mapping and delivery stages.
//!
//! It takes [`Intake`] from the bounded intake queue and [`Control`] messages from the
//! lifecycle on a separate channel, control first, so a flush is never stuck behind a full data
//! queue. It also remembers which requests' `platform.runtimeDone` and `platform.report` it has
//! processed, and answers the lifecycle's waits for them.
//!
//! The stages themselves sit behind [`Stages`] so this loop can be tested on its own.

use std::collections::VecDeque;
use std::future::Future;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::intake::telemetry::event::{Event, TelemetryRecord};
use crate::lambda_api::InvokeEvent;
use crate::lifecycle::{Control, FlushOutcome};
use crate::pipeline::{Intake, OtlpPayload};

/// How many recent request ids are remembered per kind (Managed Instances run several
/// invocations at once; classic Lambda one at a time).
const REMEMBERED: usize = 64;

/// What the processing task drives: the mapper and the delivery side.
pub trait Stages {
    /// An INVOKE event: the X-Ray header and deadline of a request.
    fn invoke(&mut self, event: &InvokeEvent);
    /// The decoded records of one Telemetry API POST.
    fn telemetry(&mut self, records: Vec<TelemetryRecord>);
    /// One request of the local OTLP receiver.
    fn otlp(&mut self, payload: OtlpPayload);
    /// Export what is buffered, returning by `deadline`. `last` at shutdown: also give up
    /// per-invocation state that is still incomplete, so it is exported rather than lost.
    fn flush(&mut self, deadline: Instant, last: bool) -> impl Future<Output = FlushOutcome>;
}

/// Request ids seen recently, oldest first.
#[derive(Debug, Default)]
struct Recent(VecDeque<String>);

impl Recent {
    fn insert(&mut self, id: &str) {
        if self.contains(id) {
            return;
        }
        if self.0.len() == REMEMBERED {
            self.0.pop_front();
        }
        self.0.push_back(id.to_owned());
    }

    fn contains(&self, id: &str) -> bool {
        self.0.iter().any(|x| x == id)
    }
}

/// Waits for a kind of record, and the ids already seen.
#[derive(Debug, Default)]
struct Watch {
    seen: Recent,
    waiters: Vec<(String, oneshot::Sender<()>)>,
}

impl Watch {
    fn wait(&mut self, request_id: String, reply: oneshot::Sender<()>) {
        if self.seen.contains(&request_id) {
            let _ = reply.send(());
        } else {
            self.waiters.retain(|(_, tx)| !tx.is_closed());
            self.waiters.push((request_id, reply));
        }
    }

    fn saw(&mut self, request_id: &str) {
        self.seen.insert(request_id);
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters[i].0 == request_id {
                let (_, tx) = self.waiters.swap_remove(i);
                let _ = tx.send(());
            } else {
                i += 1;
            }
        }
    }
}

/// The processing loop's state.
#[derive(Debug, Default)]
struct Tracker {
    runtime_done: Watch,
    report: Watch,
}

impl Tracker {
    fn observe(&mut self, records: &[TelemetryRecord]) -> Vec<(bool, String)> {
        records
            .iter()
            .filter_map(|r| match &r.event {
                Event::RuntimeDone(rd) => Some((true, rd.request_id.clone())),
                Event::Report(rep) => Some((false, rep.request_id.clone())),
                _ => None,
            })
            .collect()
    }

    fn mark(&mut self, seen: Vec<(bool, String)>) {
        for (is_runtime_done, id) in seen {
            if is_runtime_done {
                self.runtime_done.saw(&id);
            } else {
                self.report.saw(&id);
            }
        }
    }
}

/// Run the processing task until every control handle is dropped. It keeps serving after a
/// shutdown flush (the process exits right after it), so it never ends while the lifecycle runs:
/// an end is always a failure to the supervisor.
pub async fn run<S: Stages>(
    mut stages: S,
    mut control: mpsc::UnboundedReceiver<Control>,
    mut intake: mpsc::Receiver<Intake>,
) {
    let mut tracker = Tracker::default();
    let mut intake_open = true;
    loop {
        tokio::select! {
            biased;
            msg = control.recv() => match msg {
                None => return,
                Some(msg) => {
                    handle_control(&mut stages, &mut tracker, &mut intake, msg).await;
                }
            },
            item = intake.recv(), if intake_open => match item {
                // Every producer is gone: keep serving control.
                None => intake_open = false,
                Some(item) => process(&mut stages, &mut tracker, item),
            },
        }
    }
}

fn process<S: Stages>(stages: &mut S, tracker: &mut Tracker, item: Intake) {
    match item {
        Intake::Telemetry(records) => {
            let seen = tracker.observe(&records);
            stages.telemetry(records);
            // Answer the waits only once the records are mapped: a flush that follows sees them.
            tracker.mark(seen);
        }
        Intake::Otlp(payload) => stages.otlp(payload),
    }
}

/// Process what is queued right now (not what arrives while doing so), stopping at `deadline`:
/// mapping runs on the one thread the lifecycle also needs; what is left is processed after.
fn drain<S: Stages>(
    stages: &mut S,
    tracker: &mut Tracker,
    intake: &mut mpsc::Receiver<Intake>,
    deadline: Instant,
) {
    let queued = intake.len();
    for _ in 0..queued {
        if Instant::now() >= deadline {
            break;
        }
        match intake.try_recv() {
            Ok(item) => process(stages, tracker, item),
            Err(_) => break,
        }
    }
}

async fn handle_control<S: Stages>(
    stages: &mut S,
    tracker: &mut Tracker,
    intake: &mut mpsc::Receiver<Intake>,
    msg: Control,
) {
    match msg {
        Control::Invoke(event) => stages.invoke(&event),
        Control::WaitRuntimeDone { request_id, reply } => {
            tracker.runtime_done.wait(request_id, reply)
        }
        Control::WaitReport { request_id, reply } => tracker.report.wait(request_id, reply),
        Control::Flush { deadline, reply } => {
            drain(stages, tracker, intake, deadline);
            let outcome = stages.flush(deadline, false).await;
            let _ = reply.send(outcome);
        }
        Control::Shutdown { deadline, reply } => {
            drain(stages, tracker, intake, deadline);
            let outcome = stages.flush(deadline, true).await;
            let _ = reply.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::diag::stats::Stats;
    use crate::intake::telemetry::event::decode_batch;
    use crate::lifecycle::control_channel;
    use crate::pipeline::intake_queue;

    /// Records what the processing task asked of its stages.
    #[derive(Default, Clone)]
    struct Recorder {
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Recorder {
        fn push(&self, entry: String) {
            self.log.lock().unwrap().push(entry);
        }
        fn entries(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
    }

    impl Stages for Recorder {
        fn invoke(&mut self, event: &InvokeEvent) {
            self.push(format!("invoke {}", event.request_id));
        }
        fn telemetry(&mut self, records: Vec<TelemetryRecord>) {
            for r in records {
                self.push(r.event.kind().to_owned());
            }
        }
        fn otlp(&mut self, _payload: OtlpPayload) {
            self.push("otlp".into());
        }
        async fn flush(&mut self, _deadline: Instant, last: bool) -> FlushOutcome {
            self.push(if last { "final flush" } else { "flush" }.into());
            FlushOutcome { complete: true }
        }
    }

    fn runtime_done(id: &str) -> Vec<TelemetryRecord> {
        let body = format!(
            r#"[{{"time":"2024-01-01T00:00:00.000Z","type":"platform.runtimeDone","record":{{"requestId":"{id}","status":"success"}}}}]"#
        );
        let batch = decode_batch(body.as_bytes());
        assert_eq!(batch.records.len(), 1, "fixture must decode");
        batch.records
    }

    fn report(id: &str) -> Vec<TelemetryRecord> {
        let body = format!(
            r#"[{{"time":"2024-01-01T00:00:00.000Z","type":"platform.report","record":{{"requestId":"{id}","status":"success","metrics":{{"durationMs":1.0,"billedDurationMs":1,"memorySizeMB":128,"maxMemoryUsedMB":20}}}}}}]"#
        );
        let batch = decode_batch(body.as_bytes());
        assert_eq!(batch.records.len(), 1, "fixture must decode");
        batch.records
    }

    fn invoke(id: &str) -> InvokeEvent {
        InvokeEvent {
            request_id: id.into(),
            deadline_ms: 0,
            invoked_function_arn: "arn".into(),
            xray_header: None,
        }
    }

    #[tokio::test]
    async fn answers_runtime_done_waits_before_and_after_the_record() {
        let (handle, control) = control_channel();
        let (intake_tx, intake_rx) = intake_queue(8, Arc::new(Stats::default()));
        let task = tokio::spawn(run(Recorder::default(), control, intake_rx));

        // Wait registered before the record arrives.
        let waiting = handle.runtime_done("r-1").unwrap();
        intake_tx.offer(Intake::Telemetry(runtime_done("r-1")));
        waiting.await.unwrap();

        // Asked after it was processed: answered at once.
        handle.runtime_done("r-1").unwrap().await.unwrap();

        // Reports are tracked separately.
        let rep = handle.report("r-1").unwrap();
        intake_tx.offer(Intake::Telemetry(report("r-1")));
        rep.await.unwrap();

        drop(handle);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_wait_for_another_request_is_not_answered() {
        let (handle, control) = control_channel();
        let (intake_tx, intake_rx) = intake_queue(8, Arc::new(Stats::default()));
        let _task = tokio::spawn(run(Recorder::default(), control, intake_rx));
        let mut waiting = handle.runtime_done("r-2").unwrap();
        intake_tx.offer(Intake::Telemetry(runtime_done("r-1")));
        // A flush round trip proves r-1's batch was processed.
        let outcome = handle
            .flush(Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(outcome, Some(FlushOutcome { complete: true }));
        assert!(waiting.try_recv().is_err());
    }

    #[tokio::test]
    async fn flush_processes_queued_data_first_and_the_task_ends_with_its_handle() {
        let (handle, control) = control_channel();
        let (intake_tx, intake_rx) = intake_queue(8, Arc::new(Stats::default()));
        // Everything is queued before the task first runs: control is served first, yet the
        // final flush must come after the data queued ahead of it.
        handle.invoke(invoke("r-1")).unwrap();
        intake_tx.offer(Intake::Telemetry(runtime_done("r-1")));
        intake_tx.offer(Intake::Telemetry(report("r-1")));
        let stages = Recorder::default();
        let task = tokio::spawn(run(stages.clone(), control, intake_rx));
        let outcome = handle
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(outcome, Some(FlushOutcome { complete: true }));
        assert_eq!(
            stages.entries(),
            vec![
                "invoke r-1",
                "platform.runtimeDone",
                "platform.report",
                "final flush"
            ]
        );
        // Still serving after the shutdown flush; it ends when the lifecycle's handle goes.
        handle.runtime_done("r-1").unwrap().await.unwrap();
        drop(handle);
        task.await.unwrap();
    }
}
