//! The real `contrail` binary against a fake Lambda Extensions/Telemetry API.

use std::time::Duration;

use crate::support::{
    EXTENSION_ID, Extension, FakeLambda, INIT_ERROR, NEXT, REGISTER, SUBSCRIBE, Script, listening,
    post_json,
};

/// Lambda's shutdown window with external extensions.
const SHUTDOWN_WINDOW: Duration = Duration::from_millis(2000);

async fn shut_down(fake: &FakeLambda, ext: &mut Extension) {
    let deadline = fake.push_shutdown(SHUTDOWN_WINDOW);
    let status = ext.wait_exit(deadline).await;
    assert_eq!(
        status.code(),
        Some(0),
        "must exit 0 before the shutdown deadline; stderr:\n{}",
        ext.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_with_its_file_name_subscribes_and_shuts_down() {
    let fake = FakeLambda::start(Script::default()).await;
    let mut ext = Extension::spawn(&fake, "contrail", &[]);

    let register = fake.wait_for(REGISTER, 1).await.remove(0);
    assert_eq!(register.method, "POST");
    assert_eq!(register.header("Lambda-Extension-Name"), Some("contrail"));
    assert_eq!(
        register.header("Lambda-Extension-Accept-Feature"),
        Some("accountId")
    );
    assert_eq!(
        register.json(),
        serde_json::json!({"events": ["INVOKE", "SHUTDOWN"]})
    );

    let subscribe = fake.wait_for(SUBSCRIBE, 1).await.remove(0);
    assert_eq!(subscribe.method, "PUT");
    assert_eq!(
        subscribe.header("Lambda-Extension-Identifier"),
        Some(EXTENSION_ID)
    );
    let body = subscribe.json();
    assert_eq!(body["schemaVersion"], "2022-12-13");
    assert_eq!(
        body["types"],
        serde_json::json!(["platform", "function", "extension"])
    );
    assert_eq!(
        body["buffering"],
        serde_json::json!({"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25})
    );
    assert_eq!(body["destination"]["protocol"], "HTTP");
    let uri = body["destination"]["URI"].as_str().unwrap();
    let port: u16 = uri
        .strip_prefix("http://sandbox.localdomain:")
        .and_then(|rest| rest.strip_suffix('/'))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected destination {uri}"));
    assert_ne!(port, 9001);

    // The destination answers a Telemetry API POST (sandbox.localdomain is this host).
    let status = post_json(
        port,
        r#"[{"time":"2024-01-01T00:00:00.000Z","type":"platform.initStart","record":{"initializationType":"on-demand","phase":"init"}}]"#,
    )
    .await;
    assert_eq!(status, 200);

    let next = fake.wait_for(NEXT, 1).await.remove(0);
    assert_eq!(next.method, "GET");
    assert_eq!(
        next.header("Lambda-Extension-Identifier"),
        Some(EXTENSION_ID)
    );
    // Subscription before the first next: it must happen during init.
    assert!(subscribe.at <= next.at);

    shut_down(&fake, &mut ext).await;
    assert!(fake.requests_to(INIT_ERROR).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_under_the_name_it_was_installed_as() {
    let fake = FakeLambda::start(Script::default()).await;
    let mut ext = Extension::spawn(&fake, "otel-layer-ext", &[]);
    let register = fake.wait_for(REGISTER, 1).await.remove(0);
    assert_eq!(
        register.header("Lambda-Extension-Name"),
        Some("otel-layer-ext")
    );
    fake.wait_for(NEXT, 1).await;
    shut_down(&fake, &mut ext).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_invocations_then_shutdown() {
    let fake = FakeLambda::start(Script::default()).await;
    let mut ext = Extension::spawn(&fake, "contrail", &[("CONTRAIL_LOG_LEVEL", "info")]);
    let port = listening(&fake).await;

    fake.push_invoke("req-1", Duration::from_secs(30));
    // The runtime finishes: platform.runtimeDone for this request.
    let status = post_json(
        port,
        r#"[{"time":"2024-01-01T00:00:01.000Z","type":"platform.start","record":{"requestId":"req-1"}},
            {"time":"2024-01-01T00:00:01.100Z","type":"platform.runtimeDone","record":{"requestId":"req-1","status":"success","metrics":{"durationMs":100.0}}}]"#,
    )
    .await;
    assert_eq!(status, 200);
    // The extension is done with the invocation: it calls next again.
    fake.wait_for(NEXT, 2).await;

    fake.push_invoke("req-2", Duration::from_secs(30));
    post_json(
        port,
        r#"[{"time":"2024-01-01T00:00:02.100Z","type":"platform.runtimeDone","record":{"requestId":"req-2","status":"success"}}]"#,
    )
    .await;
    fake.wait_for(NEXT, 3).await;

    shut_down(&fake, &mut ext).await;
    let stderr = ext.stderr();
    assert!(stderr.contains("SHUTDOWN (spindown)"), "stderr:\n{stderr}");
    assert!(
        !stderr.contains("telemetry is disabled"),
        "stderr:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_without_runtime_done_still_ends_before_its_deadline() {
    // No telemetry arrives for this request: the extension must still call next (the policy
    // gives up waiting by the invocation deadline minus its margin).
    let fake = FakeLambda::start(Script::default()).await;
    let mut ext = Extension::spawn(&fake, "contrail", &[]);
    fake.wait_for(NEXT, 1).await;
    fake.push_invoke("req-silent", Duration::from_millis(600));
    fake.wait_for(NEXT, 2).await;
    shut_down(&fake, &mut ext).await;
}

/// Lambda reports dropped records with `platform.logsDropped`; the runtimeDone being waited
/// for may be among them, so a drop seen while waiting ends the wait, however far the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_reported_while_waiting_for_runtime_done_ends_the_wait() {
    let fake = FakeLambda::start(Script::default()).await;
    // The bound of the wait as long as the invocation: only the drop can end it.
    let mut ext = Extension::spawn(
        &fake,
        "contrail",
        &[
            ("CONTRAIL_FLUSH", "end"),
            ("CONTRAIL_RUNTIME_DONE_WAIT_MS", "600000"),
        ],
    );
    let port = listening(&fake).await;
    fake.push_invoke("req-dropped", Duration::from_secs(600));
    // Lambda delivers an invocation's records one buffering window (25 ms or more) after the
    // invocation started, when the extension has long had its INVOKE: so here.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = post_json(
        port,
        r#"[{"time":"2024-01-01T00:00:01.000Z","type":"platform.start","record":{"requestId":"req-dropped"}},
            {"time":"2024-01-01T00:00:01.300Z","type":"platform.logsDropped","record":{"reason":"Some logs were dropped because the downstream consumer is slower than the logs production rate","droppedRecords":40,"droppedBytes":65536}}]"#,
    )
    .await;
    assert_eq!(status, 200);
    // Without the drop ending it, the wait would last until 100 ms before the deadline.
    fake.wait_for(NEXT, 2).await;
    shut_down(&fake, &mut ext).await;
}

/// However long the invocation may run, a runtimeDone that does not come is waited for only up
/// to `CONTRAIL_RUNTIME_DONE_WAIT_MS` (here 1 s; the deadline is 10 minutes away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_for_a_runtime_done_that_never_comes_is_bounded() {
    let fake = FakeLambda::start(Script::default()).await;
    let mut ext = Extension::spawn(
        &fake,
        "contrail",
        &[
            ("CONTRAIL_FLUSH", "end"),
            ("CONTRAIL_RUNTIME_DONE_WAIT_MS", "1000"),
        ],
    );
    let port = listening(&fake).await;
    fake.push_invoke("req-lost", Duration::from_secs(600));
    let status = post_json(
        port,
        r#"[{"time":"2024-01-01T00:00:01.000Z","type":"platform.start","record":{"requestId":"req-lost"}}]"#,
    )
    .await;
    assert_eq!(status, 200);
    fake.wait_for(NEXT, 2).await;
    shut_down(&fake, &mut ext).await;
    assert!(fake.requests_to(INIT_ERROR).is_empty(), "{}", ext.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_not_supported_is_not_a_failure() {
    let fake = FakeLambda::start(Script::not_supported()).await;
    let mut ext = Extension::spawn(&fake, "contrail", &[]);
    fake.wait_for(SUBSCRIBE, 1).await;
    fake.wait_for(NEXT, 1).await;
    fake.push_invoke("req-1", Duration::from_secs(30));
    fake.wait_for(NEXT, 2).await;
    shut_down(&fake, &mut ext).await;
    let stderr = ext.stderr();
    assert_eq!(
        stderr.matches("Telemetry.NotSupported").count(),
        1,
        "warned once:\n{stderr}"
    );
    assert!(!stderr.contains("disabled"), "not degraded:\n{stderr}");
    assert!(fake.requests_to(INIT_ERROR).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_register_shutdown_only_and_use_the_new_schema() {
    let fake = FakeLambda::start(Script::default()).await;
    let mut ext = Extension::spawn(
        &fake,
        "contrail",
        &[("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances")],
    );
    let register = fake.wait_for(REGISTER, 1).await.remove(0);
    assert_eq!(register.json(), serde_json::json!({"events": ["SHUTDOWN"]}));
    let subscribe = fake.wait_for(SUBSCRIBE, 1).await.remove(0);
    assert_eq!(subscribe.json()["schemaVersion"], "2025-01-29");
    fake.wait_for(NEXT, 1).await;
    shut_down(&fake, &mut ext).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_reported_through_init_error() {
    let fake = FakeLambda::start(Script::default()).await;
    let mut ext = Extension::spawn(
        &fake,
        "contrail",
        &[
            ("CONTRAIL_TELEMETRY_TIMEOUT_MS", "5"),
            ("CONTRAIL_RECEIVER_ENDPOINT", "http://localhost:4318"),
            ("CONTRAIL_TELEMETRY_TYPES", "platform,traces"),
        ],
    );
    let report = fake.wait_for(INIT_ERROR, 1).await.remove(0);
    assert_eq!(
        report.header("Lambda-Extension-Function-Error-Type"),
        Some("Extension.ConfigInvalid")
    );
    assert_eq!(
        report.header("Lambda-Extension-Identifier"),
        Some(EXTENSION_ID)
    );
    let message = report.json()["errorMessage"].as_str().unwrap().to_owned();
    for expected in [
        "CONTRAIL_TELEMETRY_TIMEOUT_MS=\"5\" is not valid: expected a whole number from 25 to 30000",
        "CONTRAIL_RECEIVER_ENDPOINT=\"http://localhost:4318\" is not valid",
        "CONTRAIL_TELEMETRY_TYPES=\"platform,traces\" is not valid",
    ] {
        assert!(message.contains(expected), "{expected} not in {message}");
    }
    let status = ext
        .wait_exit(crate::support::epoch_ms_in(crate::support::PATIENCE))
        .await;
    assert!(
        status.code().is_some_and(|c| c != 0),
        "must exit non-zero, got {status:?}"
    );
    // Nothing after the error report: no subscription, no next.
    assert!(fake.requests_to(SUBSCRIBE).is_empty());
    assert!(fake.requests_to(NEXT).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_subscription_degrades_to_the_idle_loop() {
    let fake = FakeLambda::start(Script::subscribe_fails()).await;
    let mut ext = Extension::spawn(&fake, "contrail", &[]);
    fake.wait_for(SUBSCRIBE, 1).await;
    fake.wait_for(NEXT, 1).await;
    fake.push_invoke("req-1", Duration::from_secs(30));
    fake.wait_for(NEXT, 2).await;
    fake.push_invoke("req-2", Duration::from_secs(30));
    fake.wait_for(NEXT, 3).await;
    shut_down(&fake, &mut ext).await;
    let stderr = ext.stderr();
    assert_eq!(
        stderr.matches("telemetry is disabled").count(),
        1,
        "says why once:\n{stderr}"
    );
    assert!(stderr.contains("500"), "names the failure:\n{stderr}");
    assert!(fake.requests_to(INIT_ERROR).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_cannot_bind_degrades_to_the_idle_loop() {
    // Hold the port the extension is configured to listen on.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let fake = FakeLambda::start(Script::default()).await;
    let mut ext = Extension::spawn(&fake, "contrail", &[("CONTRAIL_TELEMETRY_PORT", &port)]);
    fake.wait_for(NEXT, 1).await;
    fake.push_invoke("req-1", Duration::from_secs(30));
    fake.wait_for(NEXT, 2).await;
    shut_down(&fake, &mut ext).await;
    let stderr = ext.stderr();
    assert!(
        stderr.contains("cannot bind the Telemetry API listener"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("telemetry is disabled").count(),
        1,
        "{stderr}"
    );
    // No subscription to a destination that does not exist.
    assert!(fake.requests_to(SUBSCRIBE).is_empty());
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_runtime_api_it_exits_with_a_clear_error() {
    let exe = env!("CARGO_BIN_EXE_contrail");
    let out = std::process::Command::new(exe)
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("contrail: ERROR AWS_LAMBDA_RUNTIME_API is not set"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_waiting_for_a_runtime_done_that_never_comes() {
    let fake = FakeLambda::start(Script::default()).await;
    let mut ext = Extension::spawn(&fake, "contrail", &[]);
    fake.wait_for(NEXT, 1).await;
    // Subscribed, but no telemetry ever arrives: each wait lasts until the deadline's margin.
    fake.push_invoke("req-1", Duration::from_millis(500));
    fake.wait_for(NEXT, 2).await;
    fake.push_invoke("req-2", Duration::from_millis(500));
    fake.wait_for(NEXT, 3).await;
    // Now a long invocation: waiting for runtimeDone would hold it for 10 minutes (far past
    // the tests' patience); the extension must call next without waiting.
    fake.push_invoke("req-3", Duration::from_secs(600));
    fake.wait_for(NEXT, 4).await;
    shut_down(&fake, &mut ext).await;
    let stderr = ext.stderr();
    assert_eq!(
        stderr
            .matches("platform.runtimeDone did not arrive for 2 invocations")
            .count(),
        1,
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_platform_stream_it_does_not_wait_for_runtime_done() {
    let fake = FakeLambda::start(Script::default()).await;
    let mut ext = Extension::spawn(
        &fake,
        "contrail",
        &[("CONTRAIL_TELEMETRY_TYPES", "function")],
    );
    let subscribe = fake.wait_for(SUBSCRIBE, 1).await.remove(0);
    assert_eq!(subscribe.json()["types"], serde_json::json!(["function"]));
    fake.wait_for(NEXT, 1).await;
    fake.push_invoke("req-1", Duration::from_secs(600));
    fake.wait_for(NEXT, 2).await;
    shut_down(&fake, &mut ext).await;
}
