use super::*;

#[test]
fn defaults_export_nowhere() {
    let env: [(&str, &str); 0] = [];
    let c = ExportConfig::from_env(&env).unwrap();
    assert!(!c.has_endpoint());
    assert_eq!(c.buffer_max_bytes, DEFAULT_BUFFER_MAX_BYTES);
    assert_eq!(c.traces.timeout, DEFAULT_TIMEOUT);
}

#[test]
fn base_endpoint_gets_signal_paths_and_per_signal_is_used_as_is() {
    let env = [
        (ENDPOINT_VAR, "https://otlp.example.com/base/"),
        (
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "http://logs.example.com:9000/ingest",
        ),
    ];
    let c = ExportConfig::from_env(&env).unwrap();
    assert_eq!(
        c.traces.endpoint.unwrap().to_string(),
        "https://otlp.example.com/base/v1/traces"
    );
    assert_eq!(
        c.metrics.endpoint.unwrap().to_string(),
        "https://otlp.example.com/base/v1/metrics"
    );
    assert_eq!(
        c.logs.endpoint.unwrap().to_string(),
        "http://logs.example.com:9000/ingest"
    );
    let env = [(ENDPOINT_VAR, "http://collector:4318")];
    let c = ExportConfig::from_env(&env).unwrap();
    assert_eq!(
        c.logs.endpoint.unwrap().to_string(),
        "http://collector:4318/v1/logs"
    );
}

#[test]
fn headers_are_percent_decoded_and_per_signal_replaces() {
    let env = [
        (HEADERS_VAR, "api-key=a%20b%3Dc, x-team = core"),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "only=metrics"),
    ];
    let c = ExportConfig::from_env(&env).unwrap();
    assert_eq!(c.traces.headers.len(), 2);
    assert_eq!(c.traces.headers[0].0.as_str(), "api-key");
    assert_eq!(c.traces.headers[0].1.as_bytes(), b"a b=c");
    assert_eq!(c.traces.headers[1].1.as_bytes(), b"core");
    assert_eq!(c.metrics.headers.len(), 1);
    assert_eq!(c.metrics.headers[0].0.as_str(), "only");
}

#[test]
fn every_bad_variable_is_reported_and_secrets_are_redacted() {
    let env = [
        (ENDPOINT_VAR, "ftp://x"),
        (HEADERS_VAR, "api-key=secret%zz"),
        (TIMEOUT_VAR, "0"),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "brotli"),
        (PROTOCOL_VAR, "grpc"),
        (BUFFER_MAX_BYTES_VAR, "1"),
    ];
    let errors = ExportConfig::from_env(&env).unwrap_err();
    let vars: Vec<&str> = errors.iter().map(|e| e.var.as_str()).collect();
    for var in [
        ENDPOINT_VAR,
        HEADERS_VAR,
        TIMEOUT_VAR,
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        PROTOCOL_VAR,
        BUFFER_MAX_BYTES_VAR,
    ] {
        assert!(vars.contains(&var), "{var} not reported in {errors:?}");
    }
    let all = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!all.contains("secret"), "{all}");
    assert!(all.contains("gRPC export is not supported"), "{all}");
}

#[test]
fn own_receiver_is_refused_as_an_endpoint() {
    for url in [
        "http://localhost:4318",
        "http://127.0.0.1:4318/",
        "http://[::1]:4318",
        "http://localhost:4317",
        "https://127.0.0.1:4317",
    ] {
        let env = [(ENDPOINT_VAR, url)];
        let errors = ExportConfig::from_env(&env).unwrap_err();
        assert!(errors[0].reason.contains("loop"), "{url}: {errors:?}");
    }
    let env = [(ENDPOINT_VAR, "http://127.0.0.1:4319")];
    assert!(ExportConfig::from_env(&env).is_ok());
}

#[test]
fn contrail_names_win_over_otel_names() {
    let env = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://sdk-backend.example:4318",
        ),
        (
            "CONTRAIL_EXPORTER_OTLP_ENDPOINT",
            "https://contrail-backend.example",
        ),
        ("CONTRAIL_EXPORTER_OTLP_TRACES_COMPRESSION", "brotli"),
    ];
    let errors = ExportConfig::from_env(&env).expect_err("bad compression");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].var, "CONTRAIL_EXPORTER_OTLP_TRACES_COMPRESSION");

    let env = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://sdk-backend.example:4318",
        ),
        (
            "CONTRAIL_EXPORTER_OTLP_ENDPOINT",
            "https://contrail-backend.example",
        ),
    ];
    let config = ExportConfig::from_env(&env).expect("valid");
    let traces = config.traces.endpoint.expect("endpoint").to_string();
    assert!(
        traces.starts_with("https://contrail-backend.example"),
        "{traces}"
    );
}
