use http_body_util::BodyExt;

use super::*;
use crate::intake::telemetry::subscription::{Buffering, SchemaVersion, TelemetryType};

fn api() -> RuntimeApi {
    RuntimeApi::parse("127.0.0.1:9001").unwrap()
}

async fn body_json(req: Request<Full<Bytes>>) -> serde_json::Value {
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn runtime_api_accepts_host_port_only() {
    assert_eq!(api().authority(), "127.0.0.1:9001");
    assert_eq!(
        RuntimeApi::parse("http://localhost:9001/")
            .unwrap()
            .authority(),
        "localhost:9001"
    );
    assert!(RuntimeApi::parse("").is_err());
    assert!(RuntimeApi::parse("localhost").is_err());
    assert!(RuntimeApi::parse(":9001").is_err());
    assert!(RuntimeApi::parse("localhost:http").is_err());
    assert!(RuntimeApi::parse("localhost:9001/path").is_err());
    assert!(RuntimeApi::parse("localhost:0").is_err());
}

#[tokio::test]
async fn register_request_carries_name_feature_and_events() {
    let req = register_request(
        &api(),
        &ExtensionName::new("contrail"),
        &[EventType::Invoke, EventType::Shutdown],
        true,
    )
    .unwrap();
    assert_eq!(req.method(), Method::POST);
    assert_eq!(req.uri(), REGISTER_PATH);
    assert_eq!(req.headers()[header::HOST], "127.0.0.1:9001");
    assert_eq!(req.headers()[EXTENSION_NAME_HEADER], "contrail");
    assert_eq!(req.headers()[ACCEPT_FEATURE_HEADER], "accountId");
    assert!(req.headers().get(EXTENSION_ID_HEADER).is_none());
    assert_eq!(
        body_json(req).await,
        serde_json::json!({"events": ["INVOKE", "SHUTDOWN"]})
    );
}

#[tokio::test]
async fn register_request_for_shutdown_only() {
    let req = register_request(
        &api(),
        &ExtensionName::new("x"),
        &[EventType::Shutdown],
        false,
    )
    .unwrap();
    assert!(req.headers().get(ACCEPT_FEATURE_HEADER).is_none());
    assert_eq!(
        body_json(req).await,
        serde_json::json!({"events": ["SHUTDOWN"]})
    );
}

#[test]
fn register_request_rejects_a_name_that_is_not_a_header_value() {
    let err = register_request(&api(), &ExtensionName::new("bad\nname"), &[], true);
    assert!(matches!(err, Err(ApiError::Request { .. })));
}

#[test]
fn next_request_is_a_get_with_the_identifier() {
    let req = next_request(&api(), &ExtensionId::new("abc-123")).unwrap();
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri(), NEXT_PATH);
    assert_eq!(req.headers()[EXTENSION_ID_HEADER], "abc-123");
    assert!(req.headers().get(header::CONTENT_TYPE).is_none());
}

#[tokio::test]
async fn subscribe_request_body() {
    let sub = Subscription {
        schema: SchemaVersion::V2022_12_13,
        port: 4243,
        types: TelemetryType::ALL.to_vec(),
        buffering: Buffering {
            max_items: 1000,
            max_bytes: 262_144,
            timeout_ms: 25,
        },
    };
    let req = subscribe_request(&api(), &ExtensionId::new("id"), &sub).unwrap();
    assert_eq!(req.method(), Method::PUT);
    assert_eq!(req.uri(), TELEMETRY_PATH);
    assert_eq!(req.headers()[EXTENSION_ID_HEADER], "id");
    assert_eq!(
        body_json(req).await,
        serde_json::json!({
            "schemaVersion": "2022-12-13",
            "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243/"},
            "types": ["platform", "function", "extension"],
            "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25}
        })
    );
}

#[tokio::test]
async fn error_request_sets_the_error_type() {
    let req = error_request(
        &api(),
        &ExtensionId::new("id"),
        ErrorPhase::Init,
        "Extension.ConfigInvalid",
        "X=\"1\" is not valid: no",
    )
    .unwrap();
    assert_eq!(req.uri(), INIT_ERROR_PATH);
    assert_eq!(req.headers()[ERROR_TYPE_HEADER], "Extension.ConfigInvalid");
    let body = body_json(req).await;
    assert_eq!(body["errorMessage"], "X=\"1\" is not valid: no");
    assert_eq!(body["errorType"], "Extension.ConfigInvalid");
    let exit = error_request(
        &api(),
        &ExtensionId::new("id"),
        ErrorPhase::Exit,
        "Extension.Crash",
        "m",
    )
    .unwrap();
    assert_eq!(exit.uri(), EXIT_ERROR_PATH);
}

#[test]
fn parses_registration() {
    let mut headers = HeaderMap::new();
    headers.insert(EXTENSION_ID_HEADER, HeaderValue::from_static("ext-1"));
    let body = br#"{"functionName":"f","functionVersion":"$LATEST","handler":"h.main","accountId":"123456789012"}"#;
    let reg = parse_register(StatusCode::OK, &headers, body).unwrap();
    assert_eq!(reg.id.as_str(), "ext-1");
    assert_eq!(reg.function_name, "f");
    assert_eq!(reg.function_version, "$LATEST");
    assert_eq!(reg.handler, "h.main");
    assert_eq!(reg.account_id.as_deref(), Some("123456789012"));

    let reg = parse_register(StatusCode::OK, &headers, b"").unwrap();
    assert_eq!(reg.account_id, None);
}

#[test]
fn registration_without_identifier_or_with_error_status_fails() {
    let err = parse_register(StatusCode::OK, &HeaderMap::new(), b"{}").unwrap_err();
    assert!(err.to_string().contains(EXTENSION_ID_HEADER), "{err}");
    let err = parse_register(
        StatusCode::FORBIDDEN,
        &HeaderMap::new(),
        br#"{"errorType":"Extension.InvalidExtensionName"}"#,
    )
    .unwrap_err();
    assert!(matches!(err, ApiError::Status { status, .. } if status == StatusCode::FORBIDDEN));
    assert!(err.to_string().contains("InvalidExtensionName"), "{err}");
}

#[test]
fn parses_invoke() {
    let body = br#"{"eventType":"INVOKE","deadlineMs":1700000003000,"requestId":"r-1",
        "invokedFunctionArn":"arn:aws:lambda:eu-west-1:123456789012:function:f",
        "tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"}}"#;
    let ev = parse_next(StatusCode::OK, body).unwrap();
    assert_eq!(
        ev,
        NextEvent::Invoke(InvokeEvent {
            request_id: "r-1".into(),
            deadline_ms: 1_700_000_003_000,
            invoked_function_arn: "arn:aws:lambda:eu-west-1:123456789012:function:f".into(),
            xray_header: Some(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into()
            ),
        })
    );
}

#[test]
fn parses_invoke_without_tracing() {
    let body = br#"{"eventType":"INVOKE","deadlineMs":5,"requestId":"r","invokedFunctionArn":"a"}"#;
    let NextEvent::Invoke(ev) = parse_next(StatusCode::OK, body).unwrap() else {
        panic!("not an invoke");
    };
    assert_eq!(ev.xray_header, None);
}

#[test]
fn parses_shutdown() {
    let body =
        br#"{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":1700000002000}"#;
    assert_eq!(
        parse_next(StatusCode::OK, body).unwrap(),
        NextEvent::Shutdown(ShutdownEvent {
            reason: "spindown".into(),
            deadline_ms: 1_700_000_002_000
        })
    );
}

#[test]
fn rejects_bad_events() {
    for body in [
        &br#"{"eventType":"RESTART","deadlineMs":1}"#[..],
        br#"{"eventType":"INVOKE","requestId":"r"}"#,
        br#"{"eventType":"INVOKE","deadlineMs":1}"#,
        b"not json",
    ] {
        assert!(
            matches!(
                parse_next(StatusCode::OK, body),
                Err(ApiError::Invalid { .. })
            ),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(matches!(
        parse_next(StatusCode::INTERNAL_SERVER_ERROR, b"boom"),
        Err(ApiError::Status { .. })
    ));
}

#[test]
fn subscription_outcomes() {
    assert_eq!(
        parse_subscribe(StatusCode::OK, b"OK").unwrap(),
        Subscribed::Yes
    );
    assert_eq!(
        parse_subscribe(
            StatusCode::ACCEPTED,
            br#"{"errorMessage":"Telemetry API is not supported","errorType":"Telemetry.NotSupported"}"#
        )
        .unwrap(),
        Subscribed::NotSupported
    );
    let err = parse_subscribe(
        StatusCode::BAD_REQUEST,
        br#"{"errorType":"ValidationError"}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
    assert!(err.to_string().contains("ValidationError"), "{err}");
}
