use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::diag::Stats;
use crate::intake::telemetry::decode::decode_batch;
use crate::pipeline::intake_queue;

const HIGH_WATER: f64 = 0.25;

fn complete() -> FlushOutcome {
    FlushOutcome {
        complete: true,
        ..FlushOutcome::default()
    }
}

/// Records what the worker asked of its stages; its buffer is as full as `fill` says.
#[derive(Default, Clone)]
struct Recorder {
    log: Arc<Mutex<Vec<String>>>,
    fill: Arc<Mutex<f64>>,
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
    async fn flush(
        &mut self,
        _deadline: Instant,
        last: bool,
        _cut: Option<crate::export::cut::Cut>,
    ) -> FlushOutcome {
        self.push(if last { "final flush" } else { "flush" }.into());
        complete()
    }
    fn buffer_fill(&self) -> f64 {
        *self.fill.lock().unwrap()
    }
}

fn runtime_done(id: &str) -> Vec<TelemetryRecord> {
    let body = format!(
        r#"[{{"time":"2024-01-01T00:00:00.000Z","type":"platform.runtimeDone","record":{{"requestId":"{id}","status":"success"}}}}]"#
    );
    let batch = decode_batch(body.as_bytes(), 0);
    assert_eq!(batch.records.len(), 1, "fixture must decode");
    batch.records
}

fn report(id: &str) -> Vec<TelemetryRecord> {
    let body = format!(
        r#"[{{"time":"2024-01-01T00:00:00.000Z","type":"platform.report","record":{{"requestId":"{id}","status":"success","metrics":{{"durationMs":1.0,"billedDurationMs":1,"memorySizeMB":128,"maxMemoryUsedMB":20}}}}}}]"#
    );
    let batch = decode_batch(body.as_bytes(), 0);
    assert_eq!(batch.records.len(), 1, "fixture must decode");
    batch.records
}

fn logs_dropped() -> Vec<TelemetryRecord> {
    let body = br#"[{"time":"2024-01-01T00:00:00.000Z","type":"platform.logsDropped","record":{"reason":"Some logs were dropped because the downstream consumer is slower than the logs production rate","droppedRecords":12,"droppedBytes":4096}}]"#;
    let batch = decode_batch(body, 0);
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
    let (handle, control) = channel(HIGH_WATER);
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

/// The init phase's `platform.initReport` is waited for under [`INIT_REPORT`]: before and
/// after it comes.
#[tokio::test(start_paused = true)]
async fn answers_the_wait_for_the_init_report() {
    let (handle, control) = channel(HIGH_WATER);
    let (intake_tx, intake_rx) = intake_queue(8, Arc::new(Stats::default()));
    let task = tokio::spawn(run(Recorder::default(), control, intake_rx));
    let mut waiting = handle.report(INIT_REPORT).unwrap();
    // A runtimeDone or an invocation's report does not answer it.
    intake_tx.offer(Intake::Telemetry(report("r-1")));
    handle.runtime_done("r-1").unwrap();
    tokio::task::yield_now().await;
    assert!(waiting.try_recv().is_err());
    let body = br#"[{"time":"2024-01-01T00:00:00.000Z","type":"platform.initReport","record":{"initializationType":"on-demand","phase":"init","status":"error","errorType":"Runtime.ExitError","metrics":{"durationMs":12.5}}}]"#;
    let batch = decode_batch(body, 0);
    assert_eq!(batch.records.len(), 1, "fixture must decode");
    intake_tx.offer(Intake::Telemetry(batch.records));
    assert_eq!(waiting.await.unwrap(), Waited::Seen);
    assert_eq!(
        handle.report(INIT_REPORT).unwrap().await.unwrap(),
        Waited::Seen
    );
    // Still seen after many invocations' reports (Managed Instances shut down after hundreds).
    for i in 0..100 {
        let id = format!("r-{i}");
        intake_tx.offer(Intake::Telemetry(report(&id)));
        handle.report(&id).unwrap().await.unwrap();
    }
    assert_eq!(
        handle.report(INIT_REPORT).unwrap().await.unwrap(),
        Waited::Seen
    );
    drop(handle);
    task.await.unwrap();
}

/// Lambda says when it dropped records, and a runtimeDone waited for may be among them: a
/// `platform.logsDropped` answers the waits pending when it is processed.
#[tokio::test(start_paused = true)]
async fn a_logs_dropped_record_answers_the_pending_waits() {
    let (handle, control) = channel(HIGH_WATER);
    let (intake_tx, intake_rx) = intake_queue(8, Arc::new(Stats::default()));
    let _task = tokio::spawn(run(Recorder::default(), control, intake_rx));
    let waiting = handle.runtime_done("r-1").unwrap();
    intake_tx.offer(Intake::Telemetry(logs_dropped()));
    let waited = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the drop ends the wait")
        .unwrap();
    assert_eq!(waited, Waited::Dropped);

    // Once a runtimeDone has come again, waits pending at the next drop end with it (reports
    // included), and a record that comes in the same batch as a drop is seen.
    intake_tx.offer(Intake::Telemetry(runtime_done("r-0")));
    handle
        .flush(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    let mut later = handle.runtime_done("r-2").unwrap();
    let mut r3 = handle.runtime_done("r-3").unwrap();
    let report = handle.report("r-1").unwrap();
    let mut both = logs_dropped();
    both.extend(runtime_done("r-3"));
    intake_tx.offer(Intake::Telemetry(both));
    assert_eq!(report.await.unwrap(), Waited::Dropped);
    assert_eq!((&mut r3).await.unwrap(), Waited::Seen);
    assert_eq!(later.try_recv().unwrap(), Waited::Dropped);
}

/// Lambda may report a drop before the lifecycle has asked for the runtimeDone it may have
/// been: a wait asked after a drop, with no runtimeDone seen since, is answered at once.
#[tokio::test(start_paused = true)]
async fn a_wait_asked_after_a_drop_with_no_runtime_done_since_is_answered_at_once() {
    let (handle, control) = channel(HIGH_WATER);
    let (intake_tx, intake_rx) = intake_queue(8, Arc::new(Stats::default()));
    let _task = tokio::spawn(run(Recorder::default(), control, intake_rx));
    intake_tx.offer(Intake::Telemetry(logs_dropped()));
    // A flush round trip proves the drop was processed.
    handle
        .flush(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(5), handle.runtime_done("r-1").unwrap())
        .await
        .expect("answered at once")
        .unwrap();
    assert_eq!(waited, Waited::Dropped);

    // Once a runtimeDone has come since, a drop no longer answers later waits.
    intake_tx.offer(Intake::Telemetry(runtime_done("r-0")));
    handle
        .flush(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    let mut later = handle.runtime_done("r-2").unwrap();
    handle
        .flush(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert!(later.try_recv().is_err(), "r-2 still waits");
}

#[tokio::test]
async fn a_wait_for_another_request_is_not_answered() {
    let (handle, control) = channel(HIGH_WATER);
    let (intake_tx, intake_rx) = intake_queue(8, Arc::new(Stats::default()));
    let _task = tokio::spawn(run(Recorder::default(), control, intake_rx));
    let mut waiting = handle.runtime_done("r-2").unwrap();
    intake_tx.offer(Intake::Telemetry(runtime_done("r-1")));
    // A flush round trip proves r-1's batch was processed.
    let outcome = handle
        .flush(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(outcome, Some(complete()));
    assert!(waiting.try_recv().is_err());
}

#[tokio::test]
async fn flush_processes_queued_data_first_and_the_task_ends_with_its_handle() {
    let (handle, control) = channel(HIGH_WATER);
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
    assert_eq!(outcome, Some(complete()));
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

#[tokio::test]
async fn intake_that_leaves_the_buffer_at_the_mark_wakes_the_lifecycle_and_a_flush_does_not() {
    let (handle, control) = channel(HIGH_WATER);
    let (intake_tx, intake_rx) = intake_queue(8, Arc::new(Stats::default()));
    let stages = Recorder::default();
    let _task = tokio::spawn(run(stages.clone(), control, intake_rx));
    let flushed = |handle: &WorkerHandle| {
        let handle = handle.clone();
        async move {
            handle
                .flush(Instant::now() + Duration::from_secs(5))
                .await
                .unwrap()
        }
    };

    // Under the mark: the fill is published, no wake-up.
    *stages.fill.lock().unwrap() = HIGH_WATER / 2.0;
    intake_tx.offer(Intake::Telemetry(runtime_done("r-1")));
    assert_eq!(flushed(&handle).await, Some(complete()));
    assert_eq!(handle.buffer_fill(), HIGH_WATER / 2.0);
    let mut pressure = std::pin::pin!(handle.pressure());
    assert!(
        futures_poll_once(pressure.as_mut()).await.is_none(),
        "no pressure below the mark"
    );

    // At the mark after intake: the lifecycle is woken.
    *stages.fill.lock().unwrap() = HIGH_WATER;
    intake_tx.offer(Intake::Telemetry(runtime_done("r-2")));
    tokio::time::timeout(Duration::from_secs(5), pressure)
        .await
        .expect("pressure after intake at the mark");
    assert_eq!(handle.buffer_fill(), HIGH_WATER);

    // A flush that leaves the buffer as full publishes the fill but does not wake anyone.
    assert_eq!(flushed(&handle).await, Some(complete()));
    let pressure = std::pin::pin!(handle.pressure());
    assert!(futures_poll_once(pressure).await.is_none());
}

/// Poll `fut` once: `Some` if it is ready now.
async fn futures_poll_once<F: Future + Unpin>(mut fut: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut fut).poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}
