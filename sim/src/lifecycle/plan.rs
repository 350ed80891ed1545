//! The launch plan: which programs run, and the variables each child process sees.

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

/// The validated inputs of a run.
pub(super) struct Plan {
    pub(super) extensions: Vec<PathBuf>,
    pub(super) program: String,
    pub(super) args: Vec<String>,
    pub(super) task_root: PathBuf,
    pub(super) inherited: Vec<(String, String)>,
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn resolve_program(name: &str) -> Result<String, SimError> {
    if name.contains('/') {
        let p = Path::new(name);
        if !p.exists() {
            return Err(SimError::RuntimeNotFound(name.to_owned()));
        }
        if !is_executable(p) {
            return Err(SimError::RuntimeNotExecutable(name.to_owned()));
        }
        return Ok(name.to_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let cand = dir.join(name);
        if is_executable(&cand) {
            return Ok(cand.to_string_lossy().into_owned());
        }
    }
    Err(SimError::RuntimeNotFound(name.to_owned()))
}

impl Plan {
    pub(super) fn new(cfg: &RunConfig) -> Result<Plan, SimError> {
        let mut extensions = Vec::new();
        if let Some(dir) = &cfg.extensions_dir {
            let rd = std::fs::read_dir(dir).map_err(|source| SimError::ExtensionsDir {
                dir: dir.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            extensions.extend(found);
        }
        extensions.extend(cfg.extensions.iter().cloned());
        for p in &extensions {
            if !p.exists() {
                return Err(SimError::ExtensionNotFound(p.clone()));
            }
            if !is_executable(p) {
                return Err(SimError::ExtensionNotExecutable(p.clone()));
            }
        }
        if extensions.len() > 10 {
            return Err(SimError::TooManyExtensions(extensions.len()));
        }
        let mut names: Vec<String> = extensions.iter().map(|p| file_name(p)).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(SimError::InvalidConfig(format!(
                "two extensions are named {:?}: extension file names must be unique",
                w[0]
            )));
        }
        let mut cmd = cfg.runtime_command.clone();
        if cmd.is_empty() {
            return Err(SimError::NoRuntimeCommand);
        }
        for (k, _) in &cfg.env {
            if RESERVED.contains(&k.as_str()) {
                return Err(SimError::InvalidConfig(format!(
                    "{k} is reserved by Lambda and set by the environment itself"
                )));
            }
            if k.is_empty() || k.contains('=') {
                return Err(SimError::InvalidConfig(format!(
                    "{k:?} is not a valid variable name"
                )));
            }
        }
        if let Some((_, wrapper)) = cfg.env.iter().find(|(k, _)| k == "AWS_LAMBDA_EXEC_WRAPPER") {
            cmd.insert(0, wrapper.clone());
        }
        let program = resolve_program(&cmd[0])?;
        let args = cmd[1..].to_vec();
        let task_root = match &cfg.task_root {
            Some(p) => p.clone(),
            None => std::env::current_dir().map_err(|e| {
                SimError::InvalidConfig(format!("cannot read the current directory: {e}"))
            })?,
        };
        let task_root = std::fs::canonicalize(&task_root).map_err(|e| {
            SimError::InvalidConfig(format!("task root {}: {e}", task_root.display()))
        })?;
        if cfg.concurrency == 0 {
            return Err(SimError::InvalidConfig(
                "concurrency must be at least 1".into(),
            ));
        }
        if cfg.concurrency > 1 && cfg.init_type != InitType::LambdaManagedInstances {
            return Err(SimError::InvalidConfig(
                "several invocations at once need --init-type lambda-managed-instances".into(),
            ));
        }
        if cfg.memory_mb < 128 || cfg.memory_mb > 10_240 {
            return Err(SimError::InvalidConfig(format!(
                "memory size {} MB is outside Lambda's 128-10240 MB",
                cfg.memory_mb
            )));
        }
        if cfg.timeout.is_zero() || cfg.timeout > Duration::from_secs(900) {
            return Err(SimError::InvalidConfig(
                "timeout must be between 1 ms and 900 s".into(),
            ));
        }
        let inherited = std::env::vars()
            .filter(|(k, _)| {
                !RESERVED.contains(&k.as_str())
                    && !RUNTIME_ONLY.contains(&k.as_str())
                    && !k.starts_with("AWS_LAMBDA_")
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

pub(super) fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn set(vars: &mut Vec<(String, String)>, k: &str, v: impl Into<String>) {
    let v = v.into();
    match vars.iter_mut().find(|(name, _)| name == k) {
        Some(slot) => slot.1 = v,
        None => vars.push((k.to_owned(), v)),
    }
}

/// The environments of the extensions and of the runtime.
pub(super) fn child_envs(
    cfg: &RunConfig,
    plan: &Plan,
    api_addr: std::net::SocketAddr,
    instance_id: &str,
) -> (Vars, Vars) {
    let mut common = plan.inherited.clone();
    set(&mut common, "AWS_LAMBDA_RUNTIME_API", api_addr.to_string());
    set(&mut common, "AWS_LAMBDA_FUNCTION_NAME", &cfg.function_name);
    set(
        &mut common,
        "AWS_LAMBDA_FUNCTION_VERSION",
        &cfg.function_version,
    );
    set(
        &mut common,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        cfg.memory_mb.to_string(),
    );
    set(&mut common, "AWS_REGION", &cfg.region);
    set(&mut common, "AWS_DEFAULT_REGION", &cfg.region);
    set(
        &mut common,
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        cfg.init_type.as_str(),
    );
    set(
        &mut common,
        "AWS_LAMBDA_LOG_FORMAT",
        cfg.log_format.env_value(),
    );
    if let Some(level) = &cfg.log_level {
        set(&mut common, "AWS_LAMBDA_LOG_LEVEL", level);
    }
    set(&mut common, "TZ", ":UTC");
    set(&mut common, "LANG", "en_US.UTF-8");
    for (k, v) in &cfg.env {
        set(&mut common, k, v);
    }
    let ext_env = common.clone();
    let mut rt = common;
    let today = OffsetDateTime::now_utc().date();
    set(&mut rt, "_HANDLER", &cfg.handler);
    set(
        &mut rt,
        "LAMBDA_TASK_ROOT",
        plan.task_root.to_string_lossy(),
    );
    set(
        &mut rt,
        "AWS_LAMBDA_LOG_GROUP_NAME",
        format!("/aws/lambda/{}", cfg.function_name),
    );
    set(
        &mut rt,
        "AWS_LAMBDA_LOG_STREAM_NAME",
        format!(
            "{:04}/{:02}/{:02}/[{}]{}",
            today.year(),
            u8::from(today.month()),
            today.day(),
            cfg.function_version,
            instance_id
        ),
    );
    set(&mut rt, "AWS_XRAY_CONTEXT_MISSING", "LOG_ERROR");
    set(&mut rt, "AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129:2000");
    set(&mut rt, "_AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129");
    set(&mut rt, "_AWS_XRAY_DAEMON_PORT", "2000");
    (ext_env, rt)
}
