//! What a run does: the function, its extensions, the invocations and the environment's settings.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::resources::ResourceModel;
use crate::telemetry::Schema;

/// How the environment starts (`AWS_LAMBDA_INITIALIZATION_TYPE`, `initializationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitType {
    /// Started for a request: the init duration is billed and reported with the first
    /// invocation.
    #[default]
    OnDemand,
    /// Started ahead of requests: no init duration in the first report.
    ProvisionedConcurrency,
    /// Restored from a snapshot: the snapshot's init, then `platform.restore*` before the
    /// first invocation.
    SnapStart,
    /// Lambda Managed Instances: never frozen, several invocations at once, extensions may
    /// register only SHUTDOWN, telemetry schema 2025-01-29 only.
    LambdaManagedInstances,
}

impl InitType {
    /// The value of `AWS_LAMBDA_INITIALIZATION_TYPE` and `initializationType`.
    pub fn as_str(self) -> &'static str {
        match self {
            InitType::OnDemand => "on-demand",
            InitType::ProvisionedConcurrency => "provisioned-concurrency",
            InitType::SnapStart => "snap-start",
            InitType::LambdaManagedInstances => "lambda-managed-instances",
        }
    }

    /// The init type of an `AWS_LAMBDA_INITIALIZATION_TYPE` value.
    pub fn parse(s: &str) -> Option<InitType> {
        match s {
            "on-demand" => Some(InitType::OnDemand),
            "provisioned-concurrency" => Some(InitType::ProvisionedConcurrency),
            "snap-start" => Some(InitType::SnapStart),
            "lambda-managed-instances" => Some(InitType::LambdaManagedInstances),
            _ => None,
        }
    }
}

/// `AWS_LAMBDA_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum LogFormat {
    /// Each line of output is a string record.
    #[default]
    Text,
    /// A line that is a JSON object is delivered as that object.
    Json,
}

impl LogFormat {
    /// The value of `AWS_LAMBDA_LOG_FORMAT`.
    pub fn env_value(self) -> &'static str {
        match self {
            LogFormat::Text => "Text",
            LogFormat::Json => "JSON",
        }
    }
}

/// When invocations start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Each invocation as soon as the previous one ended.
    Burst,
    /// Invocation starts spaced by this interval (or right after the previous one, if it took
    /// longer).
    Interval(Duration),
}

/// Everything one run needs. `RunConfig::default()` plus a runtime command is a valid run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The runtime: program and arguments (`bootstrap`, `python -m awslambdaric app.handler`).
    pub runtime_command: Vec<String>,
    /// Working directory of the runtime, `LAMBDA_TASK_ROOT` (default: the current directory).
    pub task_root: Option<PathBuf>,
    /// Every executable in this folder is an extension (like `/opt/extensions`).
    pub extensions_dir: Option<PathBuf>,
    /// More extension executables.
    pub extensions: Vec<PathBuf>,
    /// `_HANDLER`, and the `handler` of the registration answer.
    pub handler: String,
    /// `AWS_LAMBDA_FUNCTION_NAME`.
    pub function_name: String,
    /// `AWS_LAMBDA_FUNCTION_VERSION`.
    pub function_version: String,
    /// `AWS_REGION`, and the region of the function ARN.
    pub region: String,
    /// The account of the function ARN and of the `accountId` registration feature.
    pub account_id: String,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (128-10240).
    pub memory_mb: u32,
    /// The function timeout: the deadline of each invocation.
    pub timeout: Duration,
    /// How the environment starts.
    pub init_type: InitType,
    /// How many invocations to run (a reset after a failed one starts a new environment).
    pub invocations: u32,
    /// The event every invocation receives (JSON).
    pub payload: Vec<u8>,
    /// When invocations start.
    pub schedule: Schedule,
    /// Time the environment stays frozen between two invocations (and before the first one
    /// for provisioned concurrency).
    pub idle_gap: Duration,
    /// Freeze the environment between invocations (the cgroup freezer, else SIGSTOP of every
    /// child's process group).
    pub freeze: bool,
    /// Lambda's resource model: the CPU share, the memory limit, how to freeze.
    pub resources: ResourceModel,
    /// `AWS_LAMBDA_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `AWS_LAMBDA_LOG_LEVEL`, if set.
    pub log_level: Option<String>,
    /// Invocations in flight at once (Lambda Managed Instances only).
    pub concurrency: u32,
    /// Variables the function is configured with.
    pub env: Vec<(String, String)>,
    /// Address of the Runtime, Extensions and Telemetry APIs.
    pub listen: SocketAddr,
    /// How long init may take (on demand; provisioned concurrency and SnapStart get at least
    /// 900 s).
    pub init_timeout: Duration,
    /// How long the shutdown phase may take before every child is killed.
    pub shutdown_timeout: Duration,
    /// Records a Telemetry API subscriber may have queued before the oldest are dropped.
    pub telemetry_queue_limit: usize,
    /// Only accept Telemetry API subscriptions with this schema version.
    pub required_schema: Option<Schema>,
    /// Copy children's output to the sim's stderr, prefixed.
    pub echo_output: bool,
    /// The `runtimeVersion` of `platform.initStart` and `platform.restoreStart`, if any.
    pub runtime_version: Option<String>,
    /// The `Lambda-Runtime-Client-Context` header of each invocation, if any.
    pub client_context: Option<String>,
    /// The `Lambda-Runtime-Cognito-Identity` header of each invocation, if any.
    pub cognito_identity: Option<String>,
    /// The execution role's credentials the environment hands out: as `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, or under SnapStart from the container
    /// credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).
    pub credentials: AwsCredentials,
    /// `AWS_ENDPOINT_URL` of every process: points the AWS SDKs, and Contrail's secrets
    /// resolver, at a local emulator of AWS's APIs.
    pub aws_endpoint_url: Option<String>,
    /// Extra Telemetry API records (`type`, `record`) delivered right after the first
    /// `platform.start` of each environment: how tests put unknown event types and malformed
    /// records in the stream.
    pub inject_telemetry: Vec<(String, serde_json::Value)>,
    /// Record types (`platform.runtimeDone`, …) lost on the way to every subscriber, as Lambda
    /// loses records it cannot deliver: each is counted in the next `platform.logsDropped`,
    /// which the subscriber receives in its place.
    pub drop_telemetry: Vec<String>,
    /// Record types never sent, and no `platform.logsDropped` to say so: a record missing from
    /// the stream, as has been seen of `platform.runtimeDone`.
    pub omit_telemetry: Vec<String>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            runtime_command: Vec::new(),
            task_root: None,
            extensions_dir: None,
            extensions: Vec::new(),
            handler: "function.handler".into(),
            function_name: "contrail-sim-function".into(),
            function_version: "$LATEST".into(),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            memory_mb: 128,
            timeout: Duration::from_secs(3),
            init_type: InitType::OnDemand,
            invocations: 1,
            payload: b"{}".to_vec(),
            schedule: Schedule::Burst,
            idle_gap: Duration::ZERO,
            freeze: true,
            resources: ResourceModel::default(),
            log_format: LogFormat::Text,
            log_level: None,
            concurrency: 1,
            env: Vec::new(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            init_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_millis(2_000),
            telemetry_queue_limit: crate::telemetry::DEFAULT_QUEUE_LIMIT,
            required_schema: None,
            echo_output: false,
            runtime_version: None,
            client_context: None,
            cognito_identity: None,
            inject_telemetry: Vec::new(),
            drop_telemetry: Vec::new(),
            omit_telemetry: Vec::new(),
            credentials: AwsCredentials::default(),
            aws_endpoint_url: None,
        }
    }
}

/// Temporary AWS credentials, fake but shaped like real ones.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    /// `ASIA…`, 20 characters.
    pub access_key_id: String,
    /// 40 characters.
    pub secret_access_key: String,
    /// The session token.
    pub session_token: String,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Default for AwsCredentials {
    fn default() -> Self {
        AwsCredentials {
            access_key_id: "ASIAQSIMEXAMPLE00000".into(),
            secret_access_key: "SimulatedSecretAccessKey0000000000000000".into(),
            session_token:
                "IQoJb3JpZ2luX2VjEEXAMPLEsimulatedSessionToken//////////wEaCXVzLWVhc3QtMQ==".into(),
        }
    }
}
