//! Configuration: the bootstrap read before registration, and the one place where every
//! component's configuration is read together so that all bad variables are reported at once.
//!
//! Two steps, because registration must happen as early as possible:
//! 1. [`Bootstrap::from_env`] reads only what the register call needs.
//! 2. after registration, [`Settings::from_env`] gathers every component's `from_env`; every
//!    fatal error is reported to Lambda through `init/error` (`Extension.ConfigInvalid`) in one
//!    message.
//!
//! | variable | default | allowed | when the value is not valid |
//! |---|---|---|---|
//! | `AWS_LAMBDA_RUNTIME_API` | set by Lambda | `host:port` | Contrail cannot register: it prints the error to stderr and exits 1 |
//! | `AWS_LAMBDA_INITIALIZATION_TYPE` | set by Lambda | `lambda-managed-instances` selects the Managed Instances protocol (register `SHUTDOWN` only, schema `2025-01-29`); any other value is the classic protocol | never an error |
//!
//! Each component owns and documents its variables:
//!
//! | variables | home |
//! |---|---|
//! | `CONTRAIL_LOG_LEVEL` | `diag::log` (a bad value is a warning: only Contrail's own diagnostics change) |
//! | `CONTRAIL_TELEMETRY_*` | `intake::telemetry::subscription` |
//! | `CONTRAIL_RECEIVER_*` | `intake::receiver` |
//! | `CONTRAIL_XRAY_CONTEXT`, `CONTRAIL_MAX_PENDING_INVOCATIONS`, metrics temporality | `mapping::config` |
//! | `CONTRAIL_PRICE_*` (a bad value is a warning: cost estimates are off, nothing else changes) | `mapping::cost` |
//! | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `AWS_*` of the function | `mapping::resource` |
//! | `OTEL_EXPORTER_OTLP_*` (and `CONTRAIL_EXPORTER_OTLP_*`), `CONTRAIL_BUFFER_MAX_BYTES` | `export::config` |
//! | `CONTRAIL_FLUSH`, `CONTRAIL_FLUSH_INTERVAL_MS`, `CONTRAIL_FLUSH_BUDGET_MS` | `lifecycle::policy` |
//! | `CONTRAIL_RSS_SAMPLE_INTERVAL_MS` | `intake::environment` |
//!
//! The rule: a value Lambda itself would refuse, or one that changes what is collected, is fatal
//! (failing the init with a message naming the variable is clearer than running differently
//! from what was asked); a value that only affects Contrail's own diagnostics falls back to its
//! default with one warning. `README.md` lists every variable; a unit test checks that it does.

pub(crate) mod env;

use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::config::env::{ConfigError, Env, non_empty};
use crate::diag::Level;
use crate::export::config::ExportConfig;
use crate::intake::environment::EnvironmentConfig;
use crate::intake::receiver::ReceiverConfig;
use crate::intake::telemetry::subscription::{SchemaVersion, TelemetryConfig};
use crate::lambda_api::{EventType, ExtensionName, RuntimeApi};
use crate::lifecycle::policy::FlushSettings;
use crate::mapping::cost::{Architecture, CostConfig};
use crate::mapping::{MappingConfig, lambda_resource};

/// Where the Runtime and Extensions APIs listen (`host:port`), set by Lambda.
pub(crate) const RUNTIME_API_VAR: &str = "AWS_LAMBDA_RUNTIME_API";
/// The function's region, set by Lambda.
pub(crate) const REGION_VAR: &str = "AWS_REGION";
/// The function's memory in megabytes, set by Lambda.
pub(crate) const MEMORY_SIZE_VAR: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";
/// How the environment was initialized, set by Lambda.
pub(crate) const INITIALIZATION_TYPE_VAR: &str = "AWS_LAMBDA_INITIALIZATION_TYPE";

/// `AWS_LAMBDA_INITIALIZATION_TYPE` on Lambda Managed Instances.
pub(crate) const MANAGED_INSTANCES: &str = "lambda-managed-instances";

/// Which Extensions API protocol applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Platform {
    /// On-demand, provisioned concurrency, SnapStart: one invocation at a time.
    Classic,
    /// Lambda Managed Instances: concurrent invocations, `SHUTDOWN` only, schema `2025-01-29`.
    ManagedInstances,
}

impl Platform {
    pub(crate) fn from_env(env: &dyn Env) -> Platform {
        match non_empty(env, INITIALIZATION_TYPE_VAR) {
            Some(v) if v.eq_ignore_ascii_case(MANAGED_INSTANCES) => Platform::ManagedInstances,
            _ => Platform::Classic,
        }
    }

    /// The events to register for.
    pub(crate) fn events(self) -> &'static [EventType] {
        match self {
            Platform::Classic => &[EventType::Invoke, EventType::Shutdown],
            Platform::ManagedInstances => &[EventType::Shutdown],
        }
    }

    /// The Telemetry API schema to subscribe with.
    pub(crate) fn schema(self) -> SchemaVersion {
        match self {
            Platform::Classic => SchemaVersion::V2022_12_13,
            Platform::ManagedInstances => SchemaVersion::V2025_01_29,
        }
    }
}

/// What the register call needs; read before anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bootstrap {
    pub(crate) api: RuntimeApi,
    pub(crate) name: ExtensionName,
    pub(crate) platform: Platform,
}

/// Why Contrail cannot even register.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BootstrapError {
    #[error("{RUNTIME_API_VAR} is not set: Contrail must run as a Lambda extension")]
    NoRuntimeApi,
    #[error("{0}")]
    BadRuntimeApi(ConfigError),
    #[error("cannot tell the file name of the running executable")]
    NoName,
}

impl Bootstrap {
    /// Read the bootstrap configuration; `name` is the executable's file name.
    pub(crate) fn from_env(
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

/// The outcome of reading a configuration that may fall back to defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed<T> {
    /// What was read.
    pub(crate) value: T,
    /// Variables that were not valid and were replaced by their default (to warn about).
    pub(crate) warnings: Vec<ConfigError>,
}

/// Every component's configuration, read together.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// Contrail's own diagnostics.
    pub(crate) log_level: Level,
    /// The Telemetry API subscription.
    pub(crate) telemetry: TelemetryConfig,
    /// The local OTLP receiver.
    pub(crate) receiver: ReceiverConfig,
    /// How records become OTLP.
    pub(crate) mapping: MappingConfig,
    /// Where and how data is exported.
    pub(crate) export: ExportConfig,
    /// When to flush.
    pub(crate) flush: FlushSettings,
    /// What is read from `/proc` of the environment's processes.
    pub(crate) environment: EnvironmentConfig,
    /// The function's resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `AWS_*`).
    pub(crate) resource: Resource,
}

impl Settings {
    /// Read every component's variables. `Err` lists every fatal error of every component.
    ///
    /// The `OTEL_*` variables are shared with the function's own OpenTelemetry SDK: a value
    /// that suits the SDK but not Contrail (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`, the SDK default
    /// endpoint `http://localhost:4318`, which is Contrail's own receiver) must not fail the
    /// function's init. Such a value is ignored with a warning, as if unset (the OpenTelemetry
    /// specification asks the same of a malformed `OTEL_RESOURCE_ATTRIBUTES`). Contrail's own
    /// `CONTRAIL_*` names are fatal.
    pub(crate) fn from_env(env: &dyn Env) -> Result<Parsed<Settings>, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let (log_level, level_warning) = Level::from_env(env);
        warnings.extend(level_warning);
        let telemetry = TelemetryConfig::from_env(env)
            .map_err(|e| errors.extend(e))
            .ok();
        let receiver = ReceiverConfig::from_env(env)
            .map_err(|e| errors.extend(e))
            .ok();
        let mut mapping = lenient(env, MappingConfig::from_env, &mut errors, &mut warnings);
        let (cost, cost_warnings) = CostConfig::from_env(env, Architecture::of_build());
        warnings.extend(cost_warnings);
        if let Some(m) = mapping.as_mut() {
            m.cost = cost;
        }
        let resource = lenient(env, lambda_resource, &mut errors, &mut warnings);
        let export = lenient(env, ExportConfig::from_env, &mut errors, &mut warnings);
        let flush = FlushSettings::from_env(env)
            .map_err(|e| errors.extend(e))
            .ok();
        let environment = EnvironmentConfig::from_env(env)
            .map_err(|e| errors.extend(e))
            .ok();
        match (
            telemetry,
            receiver,
            mapping,
            export,
            flush,
            resource,
            environment,
        ) {
            (
                Some(telemetry),
                Some(receiver),
                Some(mapping),
                Some(export),
                Some(flush),
                Some(resource),
                Some(environment),
            ) if errors.is_empty() => Ok(Parsed {
                warnings,
                value: Settings {
                    log_level,
                    telemetry,
                    receiver,
                    mapping,
                    export,
                    flush,
                    environment,
                    resource,
                },
            }),
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
pub(crate) fn error_message(errors: &[ConfigError]) -> String {
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

/// The function's memory (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`) in megabytes: `None` when unset,
/// an error when it is not a whole, positive number of megabytes that fits in bytes.
pub(crate) fn memory_size_mb(env: &dyn Env) -> Option<Result<i64, ConfigError>> {
    let mb = non_empty(env, MEMORY_SIZE_VAR)?;
    Some(match mb.parse::<i64>() {
        Ok(n) if n > 0 && n <= i64::MAX / (1024 * 1024) => Ok(n),
        _ => Err(ConfigError::new(
            MEMORY_SIZE_VAR,
            mb,
            "expected a whole number of megabytes",
        )),
    })
}

/// Every variable Contrail reads that has a `*_VAR` constant, for the test that checks the
/// sources hold no other and the README documents each, and for the `config` fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) const VARIABLES: &[&str] = {
    use crate::diag::LOG_LEVEL_VAR;
    use crate::export::aws::config as aws;
    use crate::export::aws::credentials;
    use crate::export::config as export;
    use crate::intake::receiver::config as receiver;
    use crate::intake::telemetry::subscription as telemetry;
    use crate::lifecycle::policy as flush;
    use crate::mapping::cost;
    use crate::mapping::{config as mapping, resource};

    &[
        RUNTIME_API_VAR,
        INITIALIZATION_TYPE_VAR,
        LOG_LEVEL_VAR,
        telemetry::TELEMETRY_PORT_VAR,
        telemetry::TELEMETRY_TYPES_VAR,
        telemetry::TELEMETRY_MAX_ITEMS_VAR,
        telemetry::TELEMETRY_MAX_BYTES_VAR,
        telemetry::TELEMETRY_TIMEOUT_MS_VAR,
        receiver::ENDPOINT_VAR,
        receiver::GRPC_ENDPOINT_VAR,
        receiver::MAX_BODY_BYTES_VAR,
        receiver::MAX_PENDING_BYTES_VAR,
        receiver::MAX_CONNECTIONS_VAR,
        receiver::IDLE_TIMEOUT_VAR,
        mapping::XRAY_CONTEXT_VAR,
        mapping::TEMPORALITY_VAR,
        mapping::MAX_PENDING_VAR,
        resource::RESOURCE_ATTRIBUTES_VAR,
        resource::SERVICE_NAME_VAR,
        export::ENDPOINT_VAR,
        export::HEADERS_VAR,
        export::TIMEOUT_VAR,
        export::COMPRESSION_VAR,
        export::CERTIFICATE_VAR,
        export::PROTOCOL_VAR,
        export::BUFFER_MAX_BYTES_VAR,
        flush::FLUSH_VAR,
        flush::FLUSH_INTERVAL_VAR,
        flush::FLUSH_BUDGET_VAR,
        flush::RUNTIME_DONE_WAIT_VAR,
        crate::intake::environment::SAMPLE_INTERVAL_VAR,
        crate::intake::environment::CONNECTIONS_VAR,
        aws::AUTH_VAR,
        aws::SIGV4_REGION_VAR,
        aws::SIGV4_SERVICE_VAR,
        aws::LOG_GROUP_VAR,
        aws::LOG_STREAM_VAR,
        aws::ENDPOINT_URL_VAR,
        aws::ENDPOINT_URL_SECRETS_MANAGER_VAR,
        aws::ENDPOINT_URL_SSM_VAR,
        REGION_VAR,
        MEMORY_SIZE_VAR,
        aws::FUNCTION_NAME_VAR,
        credentials::ACCESS_KEY_ID_VAR,
        credentials::SECRET_ACCESS_KEY_VAR,
        credentials::SESSION_TOKEN_VAR,
        credentials::CONTAINER_URI_VAR,
        credentials::CONTAINER_TOKEN_VAR,
        credentials::CONTAINER_TOKEN_FILE_VAR,
        cost::GB_SECOND_VAR,
        cost::PER_MILLION_REQUESTS_VAR,
        cost::SNAPSTART_RESTORE_GB_VAR,
    ]
};

#[cfg(test)]
mod tests;
