//! Contrail's lifecycle configuration, and the one place where every module's configuration is
//! read together so that all bad variables are reported at once.
//!
//! Two steps, because registration must happen as early as possible:
//! 1. [`Bootstrap::from_env`] reads only what the register call needs.
//! 2. after registration, [`LifecycleConfig::from_env`] (and the other modules' `from_env`,
//!    gathered by the application) reads the rest; every fatal error is reported to Lambda
//!    through `init/error` (`Extension.ConfigInvalid`) in one message.
//!
//! | variable | default | allowed | when the value is not valid |
//! |---|---|---|---|
//! | `AWS_LAMBDA_RUNTIME_API` | set by Lambda | `host:port` | Contrail cannot register: it prints the error to stderr and exits 1 |
//! | `AWS_LAMBDA_INITIALIZATION_TYPE` | set by Lambda | `lambda-managed-instances` selects the Managed Instances protocol (register `SHUTDOWN` only, schema `2025-01-29`); any other value is the classic protocol | never an error |
//! | `CONTRAIL_LOG_LEVEL` | `warn` | `off`, `error`, `warn`, `info`, `debug` (case-insensitive) | warning, `warn` is used |
//! | `CONTRAIL_TELEMETRY_PORT` | `0` (an ephemeral port chosen by the system) | `0`, or `1024`–`65535` except `9001` | fatal (`init/error`) |
//! | `CONTRAIL_TELEMETRY_TYPES` | `platform,function,extension` | a comma-separated subset of those three, at least one | fatal |
//! | `CONTRAIL_TELEMETRY_MAX_ITEMS` | `1000` | `1000`–`10000` (the Telemetry API's limits) | fatal |
//! | `CONTRAIL_TELEMETRY_MAX_BYTES` | `262144` | `262144`–`1048576` | fatal |
//! | `CONTRAIL_TELEMETRY_TIMEOUT_MS` | `25` | `25`–`30000` | fatal |
//!
//! The other modules document their own variables: `receiver` (`CONTRAIL_RECEIVER_*`),
//! `mapping::config` and `mapping::resource` (`CONTRAIL_XRAY_CONTEXT`,
//! `CONTRAIL_MAX_PENDING_INVOCATIONS`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, metrics
//! temporality), `export::config` (`OTEL_EXPORTER_OTLP_*`, `CONTRAIL_FLUSH*`,
//! `CONTRAIL_BUFFER_MAX_BYTES`). Every error any of them reports is fatal.
//!
//! The rule: a value Lambda itself would refuse, or one that changes what is collected, is fatal
//! (failing the init with a message naming the variable is clearer than running differently
//! from what was asked); a value that only affects Contrail's own diagnostics falls back to its
//! default with one warning.

use crate::diag::log::Level;
pub mod env;

use crate::config::env::{ConfigError, Env, non_empty};
use crate::export::config::ExportConfig;
use crate::intake::receiver::ReceiverConfig;
use crate::lambda_api::{
    Buffering, EventType, ExtensionName, RuntimeApi, SchemaVersion, TelemetryType,
};
use crate::mapping::{MappingConfig, lambda_resource};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub const RUNTIME_API_VAR: &str = "AWS_LAMBDA_RUNTIME_API";
pub const INITIALIZATION_TYPE_VAR: &str = "AWS_LAMBDA_INITIALIZATION_TYPE";
pub const LOG_LEVEL_VAR: &str = "CONTRAIL_LOG_LEVEL";
pub const TELEMETRY_PORT_VAR: &str = "CONTRAIL_TELEMETRY_PORT";
pub const TELEMETRY_TYPES_VAR: &str = "CONTRAIL_TELEMETRY_TYPES";
pub const TELEMETRY_MAX_ITEMS_VAR: &str = "CONTRAIL_TELEMETRY_MAX_ITEMS";
pub const TELEMETRY_MAX_BYTES_VAR: &str = "CONTRAIL_TELEMETRY_MAX_BYTES";
pub const TELEMETRY_TIMEOUT_MS_VAR: &str = "CONTRAIL_TELEMETRY_TIMEOUT_MS";

/// `AWS_LAMBDA_INITIALIZATION_TYPE` on Lambda Managed Instances.
pub const MANAGED_INSTANCES: &str = "lambda-managed-instances";

/// The port Lambda reserves; a telemetry listener must not use it.
pub const RESERVED_PORT: u16 = 9001;

pub const DEFAULT_BUFFERING: Buffering = Buffering {
    max_items: 1000,
    max_bytes: 262_144,
    timeout_ms: 25,
};
const MAX_ITEMS_RANGE: (u32, u32) = (1000, 10_000);
const MAX_BYTES_RANGE: (u32, u32) = (262_144, 1_048_576);
const TIMEOUT_MS_RANGE: (u32, u32) = (25, 30_000);

/// Which Extensions API protocol applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// On-demand, provisioned concurrency, SnapStart: one invocation at a time.
    Classic,
    /// Lambda Managed Instances: concurrent invocations, `SHUTDOWN` only, schema `2025-01-29`.
    ManagedInstances,
}

impl Platform {
    pub fn from_env(env: &dyn Env) -> Platform {
        match non_empty(env, INITIALIZATION_TYPE_VAR) {
            Some(v) if v.eq_ignore_ascii_case(MANAGED_INSTANCES) => Platform::ManagedInstances,
            _ => Platform::Classic,
        }
    }

    /// The events to register for.
    pub fn events(self) -> &'static [EventType] {
        match self {
            Platform::Classic => &[EventType::Invoke, EventType::Shutdown],
            Platform::ManagedInstances => &[EventType::Shutdown],
        }
    }

    /// The Telemetry API schema to subscribe with.
    pub fn schema(self) -> SchemaVersion {
        match self {
            Platform::Classic => SchemaVersion::V2022_12_13,
            Platform::ManagedInstances => SchemaVersion::V2025_01_29,
        }
    }
}

/// What the register call needs; read before anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    pub api: RuntimeApi,
    pub name: ExtensionName,
    pub platform: Platform,
}

/// Why Contrail cannot even register.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    #[error("{RUNTIME_API_VAR} is not set: Contrail must run as a Lambda extension")]
    NoRuntimeApi,
    #[error("{0}")]
    BadRuntimeApi(ConfigError),
    #[error("cannot tell the file name of the running executable")]
    NoName,
}

impl Bootstrap {
    /// Read the bootstrap configuration; `name` is the executable's file name.
    pub fn from_env(
        env: &dyn Env,
        name: Option<ExtensionName>,
    ) -> Result<Bootstrap, BootstrapError> {
        let raw = non_empty(env, RUNTIME_API_VAR).ok_or(BootstrapError::NoRuntimeApi)?;
        let api = RuntimeApi::parse(&raw).map_err(|reason| {
            BootstrapError::BadRuntimeApi(ConfigError::new(RUNTIME_API_VAR, raw.clone(), reason))
        })?;
        Ok(Bootstrap {
            api,
            name: name.ok_or(BootstrapError::NoName)?,
            platform: Platform::from_env(env),
        })
    }
}

/// The Telemetry API subscription, apart from the port actually bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// Port to bind the listener on (0: ephemeral).
    pub port: u16,
    pub types: Vec<TelemetryType>,
    pub buffering: Buffering,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            port: 0,
            types: TelemetryType::ALL.to_vec(),
            buffering: DEFAULT_BUFFERING,
        }
    }
}

/// The lifecycle's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleConfig {
    pub log_level: Level,
    pub telemetry: TelemetryConfig,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            log_level: Level::DEFAULT,
            telemetry: TelemetryConfig::default(),
        }
    }
}

/// The outcome of reading a configuration that may fall back to defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    pub value: T,
    /// Variables that were not valid and were replaced by their default (to warn about).
    pub warnings: Vec<ConfigError>,
}

impl LifecycleConfig {
    /// Read every lifecycle variable. `Err` lists every fatal error; warnings come with `Ok`.
    pub fn from_env(env: &dyn Env) -> Result<Parsed<LifecycleConfig>, Vec<ConfigError>> {
        let mut config = LifecycleConfig::default();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();

        if let Some(v) = non_empty(env, LOG_LEVEL_VAR) {
            match Level::parse(&v) {
                Some(level) => config.log_level = level,
                None => warnings.push(ConfigError::new(
                    LOG_LEVEL_VAR,
                    v,
                    "expected off, error, warn, info or debug; using warn",
                )),
            }
        }

        if let Some(v) = non_empty(env, TELEMETRY_PORT_VAR) {
            match parse_port(&v) {
                Ok(port) => config.telemetry.port = port,
                Err(reason) => errors.push(ConfigError::new(TELEMETRY_PORT_VAR, v, reason)),
            }
        }

        if let Some(v) = non_empty(env, TELEMETRY_TYPES_VAR) {
            match parse_types(&v) {
                Ok(types) => config.telemetry.types = types,
                Err(reason) => errors.push(ConfigError::new(TELEMETRY_TYPES_VAR, v, reason)),
            }
        }

        let b = &mut config.telemetry.buffering;
        for (var, range, slot) in [
            (TELEMETRY_MAX_ITEMS_VAR, MAX_ITEMS_RANGE, &mut b.max_items),
            (TELEMETRY_MAX_BYTES_VAR, MAX_BYTES_RANGE, &mut b.max_bytes),
            (
                TELEMETRY_TIMEOUT_MS_VAR,
                TIMEOUT_MS_RANGE,
                &mut b.timeout_ms,
            ),
        ] {
            if let Some(v) = non_empty(env, var) {
                match parse_in_range(&v, range) {
                    Ok(n) => *slot = n,
                    Err(reason) => errors.push(ConfigError::new(var, v, reason)),
                }
            }
        }

        if errors.is_empty() {
            Ok(Parsed {
                value: config,
                warnings,
            })
        } else {
            Err(errors)
        }
    }
}

fn parse_port(v: &str) -> Result<u16, String> {
    let port: u16 = v
        .parse()
        .map_err(|_| "expected a port number: 0 (any free port) or 1024 to 65535".to_owned())?;
    if port == RESERVED_PORT {
        return Err(format!("port {RESERVED_PORT} is reserved by Lambda"));
    }
    if port != 0 && port < 1024 {
        return Err("expected 0 (any free port) or 1024 to 65535".into());
    }
    Ok(port)
}

fn parse_types(v: &str) -> Result<Vec<TelemetryType>, String> {
    let mut types = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let t = TelemetryType::parse(item).ok_or_else(|| {
            format!("{item:?} is not a telemetry type; expected platform, function, extension")
        })?;
        if !types.contains(&t) {
            types.push(t);
        }
    }
    if types.is_empty() {
        return Err("expected at least one of platform, function, extension".into());
    }
    Ok(types)
}

fn parse_in_range(v: &str, (lo, hi): (u32, u32)) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {lo} to {hi}")),
    }
}

/// Every module's configuration, read together.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub lifecycle: LifecycleConfig,
    pub receiver: ReceiverConfig,
    pub mapping: MappingConfig,
    pub export: ExportConfig,
    /// The function's resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `AWS_*`).
    pub resource: Resource,
}

impl Settings {
    /// Read every module's variables. `Err` lists every fatal error of every module.
    ///
    /// The `OTEL_*` variables are shared with the function's own OpenTelemetry SDK: a value
    /// that suits the SDK but not Contrail (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`, the SDK default
    /// endpoint `http://localhost:4318`, which is Contrail's own receiver) must not fail the
    /// function's init. Such a value is ignored with a warning, as if unset (the OpenTelemetry
    /// specification asks the same of a malformed `OTEL_RESOURCE_ATTRIBUTES`). Contrail's own
    /// `CONTRAIL_*` names are fatal.
    pub fn from_env(env: &dyn Env) -> Result<Parsed<Settings>, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let lifecycle = LifecycleConfig::from_env(env)
            .map_err(|e| errors.extend(e))
            .ok();
        let receiver = ReceiverConfig::from_env(env)
            .map_err(|e| errors.extend(e))
            .ok();
        let mapping = lenient(env, MappingConfig::from_env, &mut errors, &mut warnings);
        let resource = lenient(env, lambda_resource, &mut errors, &mut warnings);
        let export = lenient(env, ExportConfig::from_env, &mut errors, &mut warnings);
        match (lifecycle, receiver, mapping, export, resource) {
            (Some(lifecycle), Some(receiver), Some(mapping), Some(export), Some(resource))
                if errors.is_empty() =>
            {
                warnings.splice(0..0, lifecycle.warnings);
                Ok(Parsed {
                    warnings,
                    value: Settings {
                        lifecycle: lifecycle.value,
                        receiver,
                        mapping,
                        export,
                        resource,
                    },
                })
            }
            _ => Err(errors),
        }
    }
}

/// Run `parse`; errors in shared `OTEL_*` variables become warnings and, when they are the only
/// errors, `parse` runs again with those variables hidden.
fn lenient<T>(
    env: &dyn Env,
    parse: impl Fn(&dyn Env) -> Result<T, Vec<ConfigError>>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Option<T> {
    let errs = match parse(env) {
        Ok(value) => return Some(value),
        Err(errs) => errs,
    };
    let (shared, own): (Vec<_>, Vec<_>) =
        errs.into_iter().partition(|e| e.var.starts_with("OTEL_"));
    let value = if own.is_empty() {
        parse(&Hidden {
            env,
            hidden: &shared,
        })
        .map_err(|e| errors.extend(e))
        .ok()
    } else {
        errors.extend(own);
        None
    };
    warnings.extend(shared.into_iter().map(|mut e| {
        e.reason
            .push_str("; ignored (the variable is shared with the function's SDK)");
        e
    }));
    value
}

/// An environment without some variables.
struct Hidden<'a> {
    env: &'a dyn Env,
    hidden: &'a [ConfigError],
}

impl Env for Hidden<'_> {
    fn var(&self, name: &str) -> Option<String> {
        if self.hidden.iter().any(|e| e.var == name) {
            None
        } else {
            self.env.var(name)
        }
    }
}

/// The `init/error` message for a list of fatal configuration errors: one per line.
pub fn error_message(errors: &[ConfigError]) -> String {
    let mut msg = format!(
        "Contrail configuration is not valid ({} error{}):",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for e in errors {
        msg.push_str("\n- ");
        msg.push_str(&e.to_string());
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn defaults_when_nothing_is_set() {
        let none: [(&str, &str); 0] = [];
        let parsed = LifecycleConfig::from_env(&none).unwrap();
        assert_eq!(parsed.value, LifecycleConfig::default());
        assert!(parsed.warnings.is_empty());
        assert_eq!(parsed.value.telemetry.buffering, DEFAULT_BUFFERING);
        assert_eq!(parsed.value.telemetry.types.len(), 3);
        assert_eq!(parsed.value.log_level, Level::Warn);
    }

    #[test]
    fn reads_valid_values() {
        let env = [
            (LOG_LEVEL_VAR, "debug"),
            (TELEMETRY_PORT_VAR, "4243"),
            (TELEMETRY_TYPES_VAR, "platform, function,platform"),
            (TELEMETRY_MAX_ITEMS_VAR, "10000"),
            (TELEMETRY_MAX_BYTES_VAR, "1048576"),
            (TELEMETRY_TIMEOUT_MS_VAR, "30000"),
        ];
        let c = LifecycleConfig::from_env(&env).unwrap().value;
        assert_eq!(c.log_level, Level::Debug);
        assert_eq!(c.telemetry.port, 4243);
        assert_eq!(
            c.telemetry.types,
            vec![TelemetryType::Platform, TelemetryType::Function]
        );
        assert_eq!(
            c.telemetry.buffering,
            Buffering {
                max_items: 10_000,
                max_bytes: 1_048_576,
                timeout_ms: 30_000
            }
        );
    }

    #[test]
    fn reports_every_bad_variable() {
        let env = [
            (TELEMETRY_PORT_VAR, "9001"),
            (TELEMETRY_TYPES_VAR, "platform,metrics"),
            (TELEMETRY_MAX_ITEMS_VAR, "999"),
            (TELEMETRY_MAX_BYTES_VAR, "lots"),
            (TELEMETRY_TIMEOUT_MS_VAR, "24"),
        ];
        let errors = LifecycleConfig::from_env(&env).unwrap_err();
        let vars: Vec<&str> = errors.iter().map(|e| e.var.as_str()).collect();
        assert_eq!(
            vars,
            vec![
                TELEMETRY_PORT_VAR,
                TELEMETRY_TYPES_VAR,
                TELEMETRY_MAX_ITEMS_VAR,
                TELEMETRY_MAX_BYTES_VAR,
                TELEMETRY_TIMEOUT_MS_VAR
            ]
        );
        assert_eq!(
            errors[4].to_string(),
            "CONTRAIL_TELEMETRY_TIMEOUT_MS=\"24\" is not valid: expected a whole number from 25 to 30000"
        );
        assert!(errors[0].reason.contains("reserved"), "{}", errors[0]);
        assert!(errors[1].reason.contains("\"metrics\""), "{}", errors[1]);
    }

    #[test]
    fn port_limits() {
        for bad in ["80", "1023", "65536", "-1", "x", "9001"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_port("0"), Ok(0));
        assert_eq!(parse_port("1024"), Ok(1024));
        assert_eq!(parse_port("65535"), Ok(65535));
    }

    #[test]
    fn empty_type_list_is_an_error() {
        assert!(parse_types(" , ").is_err());
    }

    #[test]
    fn a_bad_log_level_is_a_warning_not_an_error() {
        let env = [(LOG_LEVEL_VAR, "loud")];
        let parsed = LifecycleConfig::from_env(&env).unwrap();
        assert_eq!(parsed.value.log_level, Level::Warn);
        assert_eq!(parsed.warnings.len(), 1);
        assert_eq!(parsed.warnings[0].var, LOG_LEVEL_VAR);
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
}
