//! A function on the `lambda_runtime` crate, used by the emulator's tests: it answers with its
//! request id and the X-Ray trace id it was given.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    println!("rust function handling {}", event.context.request_id);
    Ok(json!({
        "request_id": event.context.request_id,
        "trace": event.context.xray_trace_id,
        "echo": event.payload,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
