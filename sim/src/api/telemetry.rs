//! The Telemetry API's one call: `PUT /2022-07-01/telemetry`, a registered extension's
//! subscription, validated as the platform does and handed to the environment's hub (see
//! [`crate::telemetry`]).

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use time::OffsetDateTime;

use super::extensions::find_extension;
use super::{Resp, error, read_body};
use crate::config::InitType;
use crate::events;
use crate::state::EnvState;
use crate::telemetry::{Event, parse_subscription};

pub(super) async fn subscribe(environment: Arc<EnvState>, req: Request<Incoming>) -> Resp {
    let index = match find_extension(&environment, &req) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let body = match read_body(req, 64 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let managed = environment.info.init_type == InitType::LambdaManagedInstances;
    let subscription = match parse_subscription(&body, managed) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, "ValidationError", &e.0),
    };
    if let Some(required) = environment.info.required_schema
        && subscription.schema != required
    {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            &format!(
                "schemaVersion {} is not accepted here: use {}",
                subscription.schema.as_str(),
                required.as_str()
            ),
        );
    }
    let name = environment.update(|state| {
        let extension = &mut state.extensions[index];
        extension.subscribed = Some(subscription.schema);
        extension.name.clone()
    });
    let types = subscription.types.clone();
    environment.hub.subscribe(subscription);
    environment.hub.publish(Event::platform(
        OffsetDateTime::now_utc(),
        "platform.telemetrySubscription",
        events::telemetry_subscription(&name, "Subscribed", &types),
    ));
    let mut r = Response::new(Full::new(Bytes::from_static(b"OK")));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}
