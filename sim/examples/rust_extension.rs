//! An extension on the `lambda-extension` crate, used by the emulator's tests. It subscribes to
//! the Telemetry API (the crate sends schema 2022-07-01) and writes every event and telemetry
//! record it receives to $RUST_EXT_OUT as JSON lines, each with the time it was written (`at`,
//! Unix seconds). With $RUST_EXT_TIMER_MS it also writes a `tick` line from a background timer
//! of that period. With $RUST_EXT_SHUTDOWN_MS it takes that long to answer SHUTDOWN (an
//! extension flushing its data).

use std::io::Write;
use std::sync::{Arc, Mutex};

use lambda_extension::{
    Error, Extension, LambdaEvent, LambdaTelemetry, NextEvent, SharedService, service_fn,
};

/// Seconds since the Unix epoch.
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Writes `line` with the time it was written (`at`).
fn append(out: &Arc<Mutex<std::fs::File>>, mut line: serde_json::Value) {
    line["at"] = serde_json::json!(now());
    if let Ok(mut f) = out.lock() {
        let _ = writeln!(f, "{line}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let path = std::env::var("RUST_EXT_OUT")?;
    let port: u16 = std::env::var("RUST_EXT_TELEMETRY_PORT")?.parse()?;
    let out = Arc::new(Mutex::new(std::fs::File::create(path)?));
    if let Ok(ms) = std::env::var("RUST_EXT_TIMER_MS") {
        let period = std::time::Duration::from_millis(ms.parse()?);
        let ticks = out.clone();
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(period);
            loop {
                timer.tick().await;
                append(&ticks, serde_json::json!({"kind": "tick"}));
            }
        });
    }
    let shutdown_delay = match std::env::var("RUST_EXT_SHUTDOWN_MS") {
        Ok(ms) => std::time::Duration::from_millis(ms.parse()?),
        Err(_) => std::time::Duration::ZERO,
    };
    let events_out = out.clone();
    let events = service_fn(move |event: LambdaEvent| {
        let out = events_out.clone();
        async move {
            let kind = match &event.next {
                NextEvent::Invoke(i) => {
                    serde_json::json!({"kind": "INVOKE", "requestId": i.request_id, "tracing": i.tracing.value})
                }
                NextEvent::Shutdown(s) => {
                    tokio::time::sleep(shutdown_delay).await;
                    serde_json::json!({"kind": "SHUTDOWN", "reason": s.shutdown_reason})
                }
            };
            append(&out, kind);
            Ok::<(), Error>(())
        }
    });
    let tel_out = out.clone();
    let telemetry = SharedService::new(service_fn(move |batch: Vec<LambdaTelemetry>| {
        let out = tel_out.clone();
        async move {
            for t in batch {
                append(
                    &out,
                    serde_json::json!({"kind": "telemetry", "record": serde_json::to_value(&t)?}),
                );
            }
            Ok::<(), Error>(())
        }
    }));
    Extension::new()
        .with_events_processor(events)
        .with_telemetry_processor(telemetry)
        .with_telemetry_port_number(port)
        .run()
        .await
}
