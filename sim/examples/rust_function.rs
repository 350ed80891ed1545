//! A function on the `lambda_runtime` crate, used by the emulator's tests: it answers with its
//! request id and the X-Ray trace id it was given. Asked by its event, it first does work the
//! resource model acts on: `{"spin_ms": N}` burns N ms of CPU time (of its own thread, so the
//! work is the same at every memory size), `{"alloc_mb": N}` allocates N MB and touches every
//! page of it, `{"sleep_ms": N}` waits N ms (busy without using CPU), `{"fail": true}` answers
//! with an error. With $INIT_SPIN_MS it burns that much CPU before its first `next` (init work).

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

/// The CPU time of the calling thread (`/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu() -> Result<Duration, Error> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let ns: u64 = stat
        .split_whitespace()
        .next()
        .ok_or("empty schedstat")?
        .parse()?;
    Ok(Duration::from_nanos(ns))
}

/// Burns `cpu` of CPU time on this thread.
fn spin(cpu: Duration) -> Result<u64, Error> {
    let until = thread_cpu()? + cpu;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    loop {
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        if thread_cpu()? >= until {
            return Ok(x);
        }
    }
}

/// `mb` MB, every page written.
fn allocate(mb: u64) -> Vec<u8> {
    let len = usize::try_from(mb << 20).unwrap_or(usize::MAX);
    let mut v = vec![0u8; len];
    for i in (0..len).step_by(4096) {
        v[i] = 1;
    }
    v
}

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    println!("rust function handling {}", event.context.request_id);
    let mut spun = None;
    if let Some(ms) = event.payload.get("spin_ms").and_then(Value::as_u64) {
        spun = Some(spin(Duration::from_millis(ms))?);
    }
    if let Some(ms) = event.payload.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if event.payload.get("fail").and_then(Value::as_bool) == Some(true) {
        return Err("asked to fail".into());
    }
    let held = event
        .payload
        .get("alloc_mb")
        .and_then(Value::as_u64)
        .map(allocate);
    Ok(json!({
        "request_id": event.context.request_id,
        "trace": event.context.xray_trace_id,
        "echo": event.payload,
        "spun": spun,
        "allocated_mb": held.map(|v| v.len() >> 20),
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    if let Ok(ms) = std::env::var("INIT_SPIN_MS") {
        spin(Duration::from_millis(ms.parse()?))?;
    }
    lambda_runtime::run(service_fn(handler)).await
}
