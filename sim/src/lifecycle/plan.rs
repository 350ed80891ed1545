//! Before any process starts: the launch plan. Which extension executables run (the files of
//! `/opt/extensions`, at most 10, each named as it must register), which runtime program
//! (`bootstrap`, or an interpreter, behind `AWS_LAMBDA_EXEC_WRAPPER`), whether the function's
//! settings are ones Lambda accepts, and the variables each child sees: extensions get the
//! function's configuration, the runtime also the runtime-only variables.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;

use crate::config::{InitType, RunConfig};
use crate::error::SimError;

/// Environment variables of a child process.
pub(super) type Vars = Vec<(String, String)>;

/// Variables Lambda sets itself; a function may not configure them.
const RESERVED: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_LOG_FORMAT",
    "AWS_LAMBDA_LOG_LEVEL",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

/// Variables only the runtime process sees.
const RUNTIME_ONLY: &[&str] = &[
    "_HANDLER",
    "LAMBDA_TASK_ROOT",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_EXECUTION_ENV",
    "AWS_XRAY_CONTEXT_MISSING",
    "AWS_XRAY_DAEMON_ADDRESS",
    "_AWS_XRAY_DAEMON_ADDRESS",
    "_AWS_XRAY_DAEMON_PORT",
];

/// Lambda runs at most this many extensions per function.
const MAX_EXTENSIONS: usize = 10;

/// The validated inputs of a run.
#[derive(Clone)]
pub(super) struct Plan {
    /// The extension executables, in start order.
    pub(super) extensions: Vec<PathBuf>,
    /// The runtime program (resolved on `PATH`) and its arguments.
    pub(super) program: String,
    pub(super) args: Vec<String>,
    /// `LAMBDA_TASK_ROOT`, canonical.
    pub(super) task_root: PathBuf,
    /// The sim's own variables that children inherit (none Lambda sets itself).
    pub(super) inherited: Vars,
}

impl Plan {
    pub(super) fn new(config: &RunConfig) -> Result<Plan, SimError> {
        let extensions = extension_paths(config)?;
        let mut command = config.runtime_command.clone();
        if command.is_empty() {
            return Err(SimError::NoRuntimeCommand);
        }
        check_variables(config)?;
        if let Some((_, wrapper)) = config
            .env
            .iter()
            .find(|(name, _)| name == "AWS_LAMBDA_EXEC_WRAPPER")
        {
            command.insert(0, wrapper.clone());
        }
        let program = resolve_program(&command[0])?;
        let args = command[1..].to_vec();
        let task_root = match &config.task_root {
            Some(path) => path.clone(),
            None => std::env::current_dir().map_err(|e| {
                SimError::InvalidConfig(format!("cannot read the current directory: {e}"))
            })?,
        };
        let task_root = std::fs::canonicalize(&task_root).map_err(|e| {
            SimError::InvalidConfig(format!("task root {}: {e}", task_root.display()))
        })?;
        check_limits(config)?;
        let inherited = std::env::vars()
            .filter(|(name, _)| {
                !RESERVED.contains(&name.as_str())
                    && !RUNTIME_ONLY.contains(&name.as_str())
                    && !name.starts_with("AWS_LAMBDA_")
            })
            .collect();
        Ok(Plan {
            extensions,
            program,
            args,
            task_root,
            inherited,
        })
    }
}

/// The executables of the extensions folder (sorted), then the single extensions: each must
/// exist and be executable, and no two may have the same file name.
fn extension_paths(config: &RunConfig) -> Result<Vec<PathBuf>, SimError> {
    let mut extensions = Vec::new();
    if let Some(dir) = &config.extensions_dir {
        let entries = std::fs::read_dir(dir).map_err(|source| SimError::ExtensionsDir {
            dir: dir.clone(),
            source,
        })?;
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|path| path.is_file())
            .collect();
        found.sort();
        extensions.extend(found);
    }
    extensions.extend(config.extensions.iter().cloned());
    for path in &extensions {
        if !path.exists() {
            return Err(SimError::ExtensionNotFound(path.clone()));
        }
        if !is_executable(path) {
            return Err(SimError::ExtensionNotExecutable(path.clone()));
        }
    }
    if extensions.len() > MAX_EXTENSIONS {
        return Err(SimError::TooManyExtensions(extensions.len()));
    }
    let mut names: Vec<String> = extensions.iter().map(|path| file_name(path)).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(SimError::InvalidConfig(format!(
            "two extensions are named {:?}: extension file names must be unique",
            w[0]
        )));
    }
    Ok(extensions)
}

/// Refuses variables a function may not set: reserved or malformed names.
fn check_variables(config: &RunConfig) -> Result<(), SimError> {
    for (name, _) in &config.env {
        if RESERVED.contains(&name.as_str()) {
            return Err(SimError::InvalidConfig(format!(
                "{name} is reserved by Lambda and set by the environment itself"
            )));
        }
        if name.is_empty() || name.contains('=') {
            return Err(SimError::InvalidConfig(format!(
                "{name:?} is not a valid variable name"
            )));
        }
    }
    Ok(())
}

/// Refuses settings Lambda refuses: concurrency outside Managed Instances, memory and timeout
/// out of range.
fn check_limits(config: &RunConfig) -> Result<(), SimError> {
    if config.concurrency == 0 {
        return Err(SimError::InvalidConfig(
            "concurrency must be at least 1".into(),
        ));
    }
    if config.concurrency > 1 && config.init_type != InitType::LambdaManagedInstances {
        return Err(SimError::InvalidConfig(
            "several invocations at once need --init-type lambda-managed-instances".into(),
        ));
    }
    if config.memory_mb < 128 || config.memory_mb > 10_240 {
        return Err(SimError::InvalidConfig(format!(
            "memory size {} MB is outside Lambda's 128-10240 MB",
            config.memory_mb
        )));
    }
    if config.timeout.is_zero() || config.timeout > Duration::from_secs(900) {
        return Err(SimError::InvalidConfig(
            "timeout must be between 1 ms and 900 s".into(),
        ));
    }
    Ok(())
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A path as given, or the first executable of that name on `PATH`.
fn resolve_program(name: &str) -> Result<String, SimError> {
    if name.contains('/') {
        let path = Path::new(name);
        if !path.exists() {
            return Err(SimError::RuntimeNotFound(name.to_owned()));
        }
        if !is_executable(path) {
            return Err(SimError::RuntimeNotExecutable(name.to_owned()));
        }
        return Ok(name.to_owned());
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&search) {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate.to_string_lossy().into_owned());
        }
    }
    Err(SimError::RuntimeNotFound(name.to_owned()))
}

/// The file name of `path`: the name an extension registers with.
pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Sets `name` to `value`, in place if it is there already.
fn set(vars: &mut Vars, name: &str, value: String) {
    match vars.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value,
        None => vars.push((name.to_owned(), value)),
    }
}

/// The path of the container credentials endpoint on the API address (SnapStart).
pub(crate) const CREDENTIALS_PATH: &str = "/2021-04-23/credentials";

/// The variables of the extensions and of the runtime. `credentials_token` is the
/// container credentials endpoint's authorization token (SnapStart only).
pub(super) fn child_vars(
    config: &RunConfig,
    plan: &Plan,
    api_addr: std::net::SocketAddr,
    instance_id: &str,
    credentials_token: &str,
) -> (Vars, Vars) {
    let mut platform = vec![
        ("AWS_LAMBDA_RUNTIME_API", api_addr.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", config.function_name.clone()),
        (
            "AWS_LAMBDA_FUNCTION_VERSION",
            config.function_version.clone(),
        ),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            config.memory_mb.to_string(),
        ),
        ("AWS_REGION", config.region.clone()),
        ("AWS_DEFAULT_REGION", config.region.clone()),
        (
            "AWS_LAMBDA_INITIALIZATION_TYPE",
            config.init_type.as_str().to_owned(),
        ),
        (
            "AWS_LAMBDA_LOG_FORMAT",
            config.log_format.env_value().to_owned(),
        ),
    ];
    if let Some(level) = &config.log_level {
        platform.push(("AWS_LAMBDA_LOG_LEVEL", level.clone()));
    }
    // The execution role's credentials: as variables, or under SnapStart only through the
    // container endpoint, so that a restored snapshot never holds expired keys.
    if config.init_type == InitType::SnapStart {
        platform.push((
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{api_addr}{CREDENTIALS_PATH}"),
        ));
        platform.push((
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            credentials_token.to_owned(),
        ));
    } else {
        platform.push((
            "AWS_ACCESS_KEY_ID",
            config.credentials.access_key_id.clone(),
        ));
        platform.push((
            "AWS_SECRET_ACCESS_KEY",
            config.credentials.secret_access_key.clone(),
        ));
        platform.push((
            "AWS_SESSION_TOKEN",
            config.credentials.session_token.clone(),
        ));
    }
    if let Some(url) = &config.aws_endpoint_url {
        platform.push(("AWS_ENDPOINT_URL", url.clone()));
    }
    platform.push(("TZ", ":UTC".to_owned()));
    platform.push(("LANG", "en_US.UTF-8".to_owned()));
    let mut common = plan.inherited.clone();
    for (name, value) in platform {
        set(&mut common, name, value);
    }
    for (name, value) in &config.env {
        set(&mut common, name, value.clone());
    }
    let extension_vars = common.clone();
    let today = OffsetDateTime::now_utc().date();
    let log_stream = format!(
        "{:04}/{:02}/{:02}/[{}]{}",
        today.year(),
        u8::from(today.month()),
        today.day(),
        config.function_version,
        instance_id
    );
    let runtime_only = [
        ("_HANDLER", config.handler.clone()),
        (
            "LAMBDA_TASK_ROOT",
            plan.task_root.to_string_lossy().into_owned(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", config.function_name),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", log_stream),
        ("AWS_XRAY_CONTEXT_MISSING", "LOG_ERROR".to_owned()),
        ("AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129:2000".to_owned()),
        ("_AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129".to_owned()),
        ("_AWS_XRAY_DAEMON_PORT", "2000".to_owned()),
    ];
    let mut runtime_vars = common;
    for (name, value) in runtime_only {
        set(&mut runtime_vars, name, value);
    }
    (extension_vars, runtime_vars)
}
