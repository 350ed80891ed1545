//! Reading every module's configuration together, as the extension does after registering.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::env::ConfigError;
use crate::config::{
    Bootstrap, BootstrapError, INITIALIZATION_TYPE_VAR, Platform, RUNTIME_API_VAR, Settings,
    error_message,
};
use crate::diag::{LOG_LEVEL_VAR, Level};
use crate::intake::receiver::ReceiverConfig;
use crate::intake::telemetry::subscription::TELEMETRY_TIMEOUT_MS_VAR;
use crate::intake::telemetry::subscription::{Buffering, TelemetryType};
use crate::lambda_api::{EventType, ExtensionName};
use crate::lifecycle::policy::FlushMode;
use crate::mapping::MappingConfig;
use crate::mapping::resource::resource_str;

fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// What Lambda sets for an extension, plus a typical Contrail configuration.
fn lambda_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
        ("AWS_REGION", "eu-west-1"),
    ]
}

#[test]
fn a_lambda_environment_without_contrail_variables_uses_the_defaults() {
    let vars = env(&lambda_env());
    let boot = Bootstrap::from_env(&vars, Some(ExtensionName::new("contrail"))).unwrap();
    assert_eq!(boot.platform, Platform::Classic);
    assert_eq!(
        boot.platform.events(),
        &[EventType::Invoke, EventType::Shutdown]
    );

    let parsed = Settings::from_env(&vars).unwrap();
    assert!(parsed.warnings.is_empty());
    let s = parsed.value;
    assert_eq!(s.log_level, Level::Warn);
    assert_eq!(s.telemetry.port, 0);
    assert_eq!(s.telemetry.types, TelemetryType::ALL.to_vec());
    assert_eq!(
        s.telemetry.buffering,
        Buffering {
            max_items: 1000,
            max_bytes: 262_144,
            timeout_ms: 25
        }
    );
    assert_eq!(s.receiver.endpoint, Some("127.0.0.1:4318".parse().unwrap()));
    assert_eq!(s.flush.mode, FlushMode::Adaptive);
    assert!(!s.export.has_endpoint());
    assert_eq!(resource_str(&s.resource, "faas.name"), Some("orders"));
    assert_eq!(resource_str(&s.resource, "service.name"), Some("orders"));
    assert_eq!(resource_str(&s.resource, "cloud.region"), Some("eu-west-1"));
}

#[test]
fn each_module_gets_its_own_variables() {
    let mut vars = lambda_env();
    vars.extend([
        ("CONTRAIL_LOG_LEVEL", "debug"),
        ("CONTRAIL_TELEMETRY_PORT", "4243"),
        ("CONTRAIL_TELEMETRY_TYPES", "platform,function"),
        ("CONTRAIL_TELEMETRY_TIMEOUT_MS", "100"),
        ("CONTRAIL_RECEIVER_ENDPOINT", "off"),
        ("CONTRAIL_FLUSH", "end"),
        ("CONTRAIL_FLUSH_BUDGET_MS", "150"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://collector.example:4318",
        ),
        ("OTEL_SERVICE_NAME", "orders-api"),
    ]);
    let s = Settings::from_env(&env(&vars)).unwrap().value;
    assert_eq!(s.log_level, Level::Debug);
    assert_eq!(s.telemetry.port, 4243);
    assert_eq!(
        s.telemetry.types,
        vec![TelemetryType::Platform, TelemetryType::Function]
    );
    assert_eq!(s.telemetry.buffering.timeout_ms, 100);
    assert_eq!(s.receiver.endpoint, None);
    assert_eq!(s.flush.mode, FlushMode::End);
    assert_eq!(s.flush.budget, Duration::from_millis(150));
    assert!(s.export.has_endpoint());
    assert_eq!(
        resource_str(&s.resource, "service.name"),
        Some("orders-api")
    );
}

#[test]
fn managed_instances_are_recognised() {
    let mut vars = lambda_env();
    vars.retain(|(k, _)| *k != "AWS_LAMBDA_INITIALIZATION_TYPE");
    vars.push(("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances"));
    let boot = Bootstrap::from_env(&env(&vars), Some(ExtensionName::new("contrail"))).unwrap();
    assert_eq!(boot.platform, Platform::ManagedInstances);
    assert_eq!(boot.platform.events(), &[EventType::Shutdown]);
    assert_eq!(boot.platform.schema().as_str(), "2025-01-29");
}

#[test]
fn every_bad_variable_of_every_module_is_reported_in_one_message() {
    let mut vars = lambda_env();
    vars.extend([
        ("CONTRAIL_TELEMETRY_MAX_BYTES", "100"),
        ("CONTRAIL_RECEIVER_MAX_BODY_BYTES", "huge"),
        ("CONTRAIL_XRAY_CONTEXT", "sideways"),
        ("CONTRAIL_FLUSH", "sometimes"),
        // Shared with the function's SDK: ignored with a warning, not fatal.
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
        ("OTEL_RESOURCE_ATTRIBUTES", "no-equals-sign"),
        // Only a warning: Contrail's own diagnostics fall back to `warn`.
        ("CONTRAIL_LOG_LEVEL", "chatty"),
    ]);
    let errors = Settings::from_env(&env(&vars)).unwrap_err();
    let mut named: Vec<&str> = errors.iter().map(|e| e.var.as_str()).collect();
    named.sort_unstable();
    assert_eq!(
        named,
        vec![
            "CONTRAIL_FLUSH",
            "CONTRAIL_RECEIVER_MAX_BODY_BYTES",
            "CONTRAIL_TELEMETRY_MAX_BYTES",
            "CONTRAIL_XRAY_CONTEXT",
        ]
    );
    let message = error_message(&errors);
    assert!(message.starts_with("Contrail configuration is not valid (4 errors):"));
    for e in &errors {
        assert!(
            message.contains(&format!("\n- {}={:?} is not valid: ", e.var, e.value)),
            "{message}"
        );
    }
    assert!(message.contains(
        "CONTRAIL_TELEMETRY_MAX_BYTES=\"100\" is not valid: expected a whole number from 262144 to 1048576"
    ));
}

#[test]
fn a_bad_log_level_alone_is_only_a_warning() {
    let mut vars = lambda_env();
    vars.push(("CONTRAIL_LOG_LEVEL", "chatty"));
    let parsed = Settings::from_env(&env(&vars)).unwrap();
    assert_eq!(parsed.value.log_level, Level::Warn);
    assert_eq!(parsed.warnings.len(), 1);
    assert_eq!(
        parsed.warnings[0].to_string(),
        "CONTRAIL_LOG_LEVEL=\"chatty\" is not valid: expected off, error, warn, info or debug; using warn"
    );
}

#[test]
fn bootstrap_reads_api_name_and_platform() {
    let env = [
        (RUNTIME_API_VAR, "127.0.0.1:9001"),
        (INITIALIZATION_TYPE_VAR, "on-demand"),
    ];
    let b = Bootstrap::from_env(&env, Some(ExtensionName::new("contrail"))).unwrap();
    assert_eq!(b.api.authority(), "127.0.0.1:9001");
    assert_eq!(b.name.as_str(), "contrail");
    assert_eq!(b.platform, Platform::Classic);
    assert_eq!(
        b.platform.events(),
        &[EventType::Invoke, EventType::Shutdown]
    );
    assert_eq!(b.platform.schema().as_str(), "2022-12-13");
}

#[test]
fn managed_instances_register_shutdown_only_with_the_new_schema() {
    let env = [
        (RUNTIME_API_VAR, "127.0.0.1:9001"),
        (INITIALIZATION_TYPE_VAR, "lambda-managed-instances"),
    ];
    let b = Bootstrap::from_env(&env, Some(ExtensionName::new("c"))).unwrap();
    assert_eq!(b.platform, Platform::ManagedInstances);
    assert_eq!(b.platform.events(), &[EventType::Shutdown]);
    assert_eq!(b.platform.schema().as_str(), "2025-01-29");
}

#[test]
fn bootstrap_errors() {
    let none: [(&str, &str); 0] = [];
    assert_eq!(
        Bootstrap::from_env(&none, Some(ExtensionName::new("c"))),
        Err(BootstrapError::NoRuntimeApi)
    );
    let bad = [(RUNTIME_API_VAR, "localhost")];
    let err = Bootstrap::from_env(&bad, Some(ExtensionName::new("c"))).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("AWS_LAMBDA_RUNTIME_API=\"localhost\" is not valid"),
        "{err}"
    );
    let ok = [(RUNTIME_API_VAR, "127.0.0.1:9001")];
    assert_eq!(Bootstrap::from_env(&ok, None), Err(BootstrapError::NoName));
}

#[test]
fn settings_collect_the_errors_of_every_module() {
    let env = [
        (TELEMETRY_TIMEOUT_MS_VAR, "5"),
        (
            crate::intake::receiver::ENDPOINT_VAR,
            "http://localhost:4318",
        ),
        (LOG_LEVEL_VAR, "chatty"),
        (crate::mapping::config::XRAY_CONTEXT_VAR, "sideways"),
        ("CONTRAIL_EXPORTER_OTLP_ENDPOINT", "ftp://collector"),
    ];
    let errors = Settings::from_env(&env).unwrap_err();
    let vars: Vec<&str> = errors.iter().map(|e| e.var.as_str()).collect();
    assert_eq!(
        vars,
        vec![
            TELEMETRY_TIMEOUT_MS_VAR,
            crate::intake::receiver::ENDPOINT_VAR,
            crate::mapping::config::XRAY_CONTEXT_VAR,
            "CONTRAIL_EXPORTER_OTLP_ENDPOINT"
        ]
    );
    let none: [(&str, &str); 0] = [];
    let ok = Settings::from_env(&none).unwrap();
    assert_eq!(ok.value.receiver, ReceiverConfig::default());
}

#[test]
fn values_shared_with_the_function_sdk_are_ignored_with_a_warning() {
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_RESOURCE_ATTRIBUTES", "team=payments,broken"),
        (
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            "sometimes",
        ),
        (
            "CONTRAIL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "https://logs.example/v1/logs",
        ),
    ];
    let parsed = Settings::from_env(&env).unwrap();
    let mut warned: Vec<&str> = parsed.warnings.iter().map(|e| e.var.as_str()).collect();
    warned.sort_unstable();
    assert_eq!(
        warned,
        [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_RESOURCE_ATTRIBUTES",
        ]
    );
    let export = &parsed.value.export;
    assert_eq!(
        export.traces.endpoint, None,
        "the receiver's own address is not a backend"
    );
    assert_eq!(
        export.traces.protocol,
        crate::export::config::Protocol::HttpProtobuf
    );
    assert_eq!(
        export
            .logs
            .endpoint
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("https://logs.example/v1/logs")
    );
    assert_eq!(parsed.value.mapping, MappingConfig::default());
}

#[test]
fn error_message_names_each_variable() {
    let msg = error_message(&[
        ConfigError::new("A", "1", "no"),
        ConfigError::new("B", "2", "never"),
    ]);
    assert_eq!(
        msg,
        "Contrail configuration is not valid (2 errors):\n- A=\"1\" is not valid: no\n- B=\"2\" is not valid: never"
    );
}

/// Every variable Contrail reads has a `*_VAR` constant in the module that owns it; each must
/// be in `README.md`'s configuration tables. The sources are scanned for the constants, so a new one cannot be
/// forgotten here, and the scan is checked against the constants themselves.
#[test]
fn every_variable_constant_is_documented_in_the_readme() {
    let known = super::VARIABLES;

    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut scanned = Vec::new();
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    let Some((name, rest)) = line.split_once(": &str = \"") else {
                        continue;
                    };
                    if name.trim_end().ends_with("_VAR") && name.contains("const ") {
                        let value = rest.split('"').next().unwrap();
                        scanned.push(value.to_owned());
                    }
                }
            }
        }
    }
    let mut known_sorted: Vec<String> = known.iter().map(|v| (*v).to_owned()).collect();
    known_sorted.sort();
    scanned.sort();
    assert_eq!(
        scanned, known_sorted,
        "a *_VAR constant was added or removed: add it to this list and to README.md"
    );

    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    // The exporter's variables are listed once for the general and the per-signal name:
    // `OTEL_EXPORTER_OTLP_[{SIGNAL}_]HEADERS`.
    let documented = |var: &str| {
        readme.contains(&format!("`{var}`"))
            || ["OTEL_EXPORTER_OTLP_", "CONTRAIL_EXPORTER_OTLP_"]
                .iter()
                .any(|prefix| {
                    var.strip_prefix(prefix).is_some_and(|suffix| {
                        readme.contains(&format!("`{prefix}[{{SIGNAL}}_]{suffix}`"))
                    })
                })
    };
    let missing: Vec<&str> = known.iter().copied().filter(|v| !documented(v)).collect();
    assert!(missing.is_empty(), "not in README.md: {missing:?}");
}
