//! The functions under test and one run of them under the emulator: with Contrail in the
//! extensions folder, with the floor extension (`contrail-floor`, the least a telemetry
//! subscriber does) instead, or without any extension.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use contrail_sim::report::{ExtensionReport, Summary};
use contrail_sim::sink::{self, SinkConfig, SinkHandle};
use contrail_sim::{ResourceModel, RunConfig, RunReport, Schedule};

use crate::scenarios::sdk::PYTHON_SDK_HANDLER;

/// A function the emulator can run.
#[derive(Clone)]
pub(crate) struct Function {
    pub(crate) label: String,
    command: Vec<String>,
    task_root: Option<PathBuf>,
    env: Vec<(String, String)>,
}

/// What the scenarios share: the extension under test, laid out like `/opt/extensions`, and
/// the functions they run it beside.
pub(crate) struct Bench {
    /// `target/release/contrail` (its size is reported).
    pub(crate) contrail: PathBuf,
    /// The binary the whole-process runs use (see `runs_label`).
    pub(crate) runs: PathBuf,
    /// Another build to compare with (`--baseline`), laid out like `/opt/extensions`.
    pub(crate) baseline: Option<Baseline>,
    /// Which binary the whole-process runs use: the layer's static musl build when it is
    /// present and not older than the release build (it is what users run), else the release
    /// build. Described for the report.
    pub(crate) runs_label: String,
    /// A folder laid out like `/opt/extensions`, holding the extension as `contrail`.
    extensions: tempfile::TempDir,
    /// The same, holding the floor extension as `contrail-floor`.
    floor: tempfile::TempDir,
    /// Kept alive while the Python functions may run.
    _python_dirs: Vec<tempfile::TempDir>,
    pub(crate) builtin: Function,
    pub(crate) python: Option<Function>,
    pub(crate) python_sdk: Option<Function>,
    pub(crate) sample_rust: Option<Function>,
}

/// The build `--baseline` names, as given and laid out like `/opt/extensions`.
pub(crate) struct Baseline {
    pub(crate) path: PathBuf,
    extensions: tempfile::TempDir,
}

/// The layer's build of the extension for this machine's architecture, when it exists and is
/// at least as new as `release` (an older one would measure stale code).
fn layer_binary(root: &Path, release: &Path) -> Option<PathBuf> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "arm64",
        _ => return None,
    };
    let layer = root.join(format!("target/lambda-{arch}/extensions/contrail"));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(&layer), modified(release)) {
        (Some(layer_time), Some(release_time)) if layer_time >= release_time => Some(layer),
        (Some(_), None) => Some(layer),
        _ => None,
    }
}

/// A port nothing listens on right now, for Contrail's local receivers (the defaults may be
/// taken on a shared machine).
fn free_port() -> Result<u16> {
    Ok(contrail_sim::ports::free_loopback_port()?)
}

impl Bench {
    pub(crate) fn new(root: &Path, baseline: Option<&Path>) -> Result<Bench> {
        let contrail = root.join("target/release/contrail");
        if !contrail.is_file() {
            bail!(
                "{} not found: cargo build --release -p contrail",
                contrail.display()
            );
        }
        let (runs, runs_label) = match layer_binary(root, &contrail) {
            Some(layer) => {
                let label = format!(
                    "the layer's static musl build `{}` (`layer/build.sh`, what users run)",
                    layer.strip_prefix(root).unwrap_or(&layer).display()
                );
                (layer, label)
            }
            None => (
                contrail.clone(),
                "the release `target/release/contrail` (no current layer build in \
                 `target/lambda-*`: run `layer/build.sh` to measure the shipped binary)"
                    .to_owned(),
            ),
        };
        let extensions = tempfile::tempdir()?;
        std::fs::copy(&runs, extensions.path().join("contrail")).context("copy the extension")?;
        let baseline = match baseline {
            Some(path) => {
                let dir = tempfile::tempdir()?;
                std::fs::copy(path, dir.path().join("contrail"))
                    .with_context(|| format!("copy the baseline {}", path.display()))?;
                Some(Baseline {
                    path: path.to_path_buf(),
                    extensions: dir,
                })
            }
            None => None,
        };
        let me = std::env::current_exe().context("current_exe")?;
        let floor_bin = me.with_file_name(FLOOR);
        if !floor_bin.is_file() {
            bail!(
                "{} not found: cargo build --release -p contrail-bench",
                floor_bin.display()
            );
        }
        let floor = tempfile::tempdir()?;
        std::fs::copy(&floor_bin, floor.path().join(FLOOR)).context("copy the floor")?;
        let builtin = Function {
            label: "minimal runtime (std only)".to_owned(),
            command: vec![me.display().to_string(), "runtime".to_owned()],
            task_root: None,
            env: Vec::new(),
        };
        let mut python_dirs = Vec::new();
        let venv = root.join(".tools/venv/bin/python");
        let has_ric = venv.is_file()
            && std::process::Command::new(&venv)
                .args(["-c", "import awslambdaric, opentelemetry.sdk"])
                .status()
                .is_ok_and(|s| s.success());
        let (python, python_sdk) = if has_ric {
            let dir = tempfile::tempdir()?;
            std::fs::write(dir.path().join("app.py"), PYTHON_HANDLER)?;
            std::fs::write(dir.path().join("sdk.py"), PYTHON_SDK_HANDLER)?;
            let command = |handler: &str| {
                vec![
                    venv.display().to_string(),
                    "-m".to_owned(),
                    "awslambdaric".to_owned(),
                    handler.to_owned(),
                ]
            };
            let python = Function {
                label: "Python 3 under awslambdaric".to_owned(),
                command: command("app.handler"),
                task_root: Some(dir.path().to_path_buf()),
                env: Vec::new(),
            };
            let sdk = Function {
                label: "Python OpenTelemetry SDK under awslambdaric".to_owned(),
                command: command("sdk.handler"),
                task_root: Some(dir.path().to_path_buf()),
                env: Vec::new(),
            };
            python_dirs.push(dir);
            (Some(python), Some(sdk))
        } else {
            (None, None)
        };
        let sample = root.join("target/release/sample-rust");
        let sample_rust = sample.is_file().then(|| Function {
            label: "Rust sample function (lambda_runtime)".to_owned(),
            command: vec![sample.display().to_string()],
            task_root: None,
            env: Vec::new(),
        });
        Ok(Bench {
            contrail,
            runs,
            baseline,
            runs_label,
            extensions,
            floor,
            _python_dirs: python_dirs,
            builtin,
            python,
            python_sdk,
            sample_rust,
        })
    }

    /// One A/B pair: `invocations` of `function` with Contrail configured by `contrail_env`,
    /// then the same without any extension, both with the function variables `extra_env`.
    pub(crate) async fn pair(
        &self,
        function: &Function,
        contrail_env: &[(String, String)],
        invocations: u32,
        extra_env: &[(String, String)],
    ) -> Result<(RunReport, RunReport)> {
        let with = self
            .run(function, Some(contrail_env), invocations, extra_env)
            .await?;
        let without = self.run(function, None, invocations, extra_env).await?;
        Ok((with, without))
    }

    /// `rounds` A/B pairs of the minimal runtime, `invocations` each, printing `lines` log
    /// lines per invocation; `what` names them in the progress lines. Returns the runs with
    /// Contrail and the runs without.
    pub(crate) async fn minimal_rounds(
        &self,
        what: &str,
        rounds: u32,
        contrail_env: &[(String, String)],
        invocations: u32,
        lines: u32,
    ) -> Result<(Vec<RunReport>, Vec<RunReport>)> {
        let lines = vars(&[("BENCH_LINES", &lines.to_string())]);
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            eprintln!("bench: {what} ({}/{rounds})", round + 1);
            let (a, b) = self
                .pair(&self.builtin, contrail_env, invocations, &lines)
                .await?;
            with.push(a);
            without.push(b);
        }
        Ok((with, without))
    }

    /// One run of `function`, with Contrail configured by `contrail_env` or without any
    /// extension, at 512 MB and unthrottled. Fails unless every invocation succeeded and
    /// Contrail ran to the end.
    pub(crate) async fn run(
        &self,
        function: &Function,
        contrail_env: Option<&[(String, String)]>,
        invocations: u32,
        extra_env: &[(String, String)],
    ) -> Result<RunReport> {
        self.run_spec(&RunSpec {
            function,
            extension: if contrail_env.is_some() {
                Ext::Contrail
            } else {
                Ext::None
            },
            extension_env: contrail_env.unwrap_or_default(),
            invocations,
            extra_env,
            memory_mb: 512,
            // These scenarios measure Contrail itself, unthrottled, as they always have; the
            // `cpu` scenario measures it under Lambda's CPU model.
            resources: ResourceModel::off(),
            send_span: false,
            schedule: Schedule::Burst,
            idle_gap: Duration::ZERO,
        })
        .await
    }

    /// One run of `function` with the baseline build instead, when there is one.
    pub(crate) async fn run_baseline(
        &self,
        function: &Function,
        contrail_env: &[(String, String)],
        invocations: u32,
    ) -> Result<Option<RunReport>> {
        if self.baseline.is_none() {
            return Ok(None);
        }
        self.run_spec(&RunSpec {
            function,
            extension: Ext::Baseline,
            extension_env: contrail_env,
            invocations,
            extra_env: &[],
            memory_mb: 512,
            resources: ResourceModel::off(),
            send_span: false,
            schedule: Schedule::Burst,
            idle_gap: Duration::ZERO,
        })
        .await
        .map(Some)
    }

    /// One run as `spec` says. Fails unless every invocation succeeded and the extension ran
    /// to the end.
    pub(crate) async fn run_spec(&self, spec: &RunSpec<'_>) -> Result<RunReport> {
        let function = spec.function;
        let mut env = function.env.clone();
        env.extend_from_slice(spec.extra_env);
        let extensions_dir = match spec.extension {
            Ext::Contrail => Some(self.extensions.path()),
            Ext::Floor => Some(self.floor.path()),
            Ext::Baseline => match &self.baseline {
                Some(b) => Some(b.extensions.path()),
                None => bail!("no --baseline build to run"),
            },
            Ext::None => None,
        };
        if extensions_dir.is_some() {
            env.extend_from_slice(spec.extension_env);
            let receiver = format!("127.0.0.1:{}", free_port()?);
            if spec.send_span {
                env.push(("BENCH_OTLP_ENDPOINT".to_owned(), receiver.clone()));
            }
            env.push(("CONTRAIL_RECEIVER_ENDPOINT".to_owned(), receiver));
            // A port of its own: the default (4317) may be taken on a shared machine.
            env.push((
                "CONTRAIL_RECEIVER_GRPC_ENDPOINT".to_owned(),
                format!("127.0.0.1:{}", free_port()?),
            ));
        }
        let config = RunConfig {
            runtime_command: function.command.clone(),
            task_root: function.task_root.clone(),
            extensions_dir: extensions_dir.map(Path::to_path_buf),
            function_name: "bench".to_owned(),
            memory_mb: spec.memory_mb,
            timeout: Duration::from_secs(30),
            invocations: spec.invocations,
            idle_gap: spec.idle_gap,
            env,
            resources: spec.resources.clone(),
            schedule: spec.schedule,
            ..RunConfig::default()
        };
        let report = contrail_sim::run(config)
            .await
            .with_context(|| format!("run {}", function.label))?;
        if report.invocations.len() != spec.invocations as usize {
            bail!(
                "{}: {} of {} invocations ran",
                function.label,
                report.invocations.len(),
                spec.invocations
            );
        }
        if let Some(bad) = report.invocations.iter().find(|i| i.status != "success") {
            bail!(
                "{}: invocation {} ended with {} {:?}",
                function.label,
                bad.request_id,
                bad.status,
                bad.error_type
            );
        }
        let name = match spec.extension {
            Ext::Contrail | Ext::Baseline => Some("contrail"),
            Ext::Floor => Some(FLOOR),
            Ext::None => None,
        };
        if let Some(name) = name {
            let ext = extension_report(&report, name)?;
            if ext.crashed {
                bail!("{name} crashed: {:?}", ext.exit);
            }
        }
        Ok(report)
    }
}

/// The floor extension's file name, the name it registers with.
pub(crate) const FLOOR: &str = "contrail-floor";

/// Which extension a run has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ext {
    Contrail,
    /// The build `--baseline` names, in Contrail's place.
    Baseline,
    Floor,
    None,
}

/// One run of a function.
pub(crate) struct RunSpec<'a> {
    pub(crate) function: &'a Function,
    pub(crate) extension: Ext,
    /// The extension's variables: Contrail and the floor get the same.
    pub(crate) extension_env: &'a [(String, String)],
    pub(crate) invocations: u32,
    /// The function's variables.
    pub(crate) extra_env: &'a [(String, String)],
    pub(crate) memory_mb: u32,
    pub(crate) resources: ResourceModel,
    /// The function exports one span per invocation to the extension's receiver.
    pub(crate) send_span: bool,
    /// When invocations start.
    pub(crate) schedule: Schedule,
    /// How long the environment stays frozen between two invocations.
    pub(crate) idle_gap: Duration,
}

/// The report of the extension `name`.
pub(crate) fn extension_report<'a>(
    report: &'a RunReport,
    name: &str,
) -> Result<&'a ExtensionReport> {
    report
        .extensions
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| anyhow!("no report for the {name} extension"))
}

pub(crate) fn contrail_report(report: &RunReport) -> Result<&ExtensionReport> {
    extension_report(report, "contrail")
}

pub(crate) fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(crate) fn median(values: &[f64]) -> Result<f64> {
    Summary::of(values)
        .map(|s| s.median)
        .ok_or_else(|| anyhow!("no values"))
}

const PYTHON_HANDLER: &str = "def handler(event, context):\n    return {}\n";

/// The emulator's OTLP sink on a free loopback port.
pub(crate) async fn start_sink() -> Result<SinkHandle> {
    sink::start(SinkConfig::default())
        .await
        .context("start the sink")
}

/// Post-runtime time (PostRuntimeExtensionsDuration) over every invocation of `reports`.
pub(crate) fn post_runtime(reports: &[RunReport]) -> Result<Summary> {
    let values: Vec<f64> = reports
        .iter()
        .flat_map(|r| r.invocations.iter().map(|i| i.post_runtime_ms))
        .collect();
    Summary::of(&values).ok_or_else(|| anyhow!("no invocations"))
}

/// How many invocations `reports` ran in all.
pub(crate) fn invocations(reports: &[RunReport]) -> usize {
    reports.iter().map(|r| r.invocations.len()).sum()
}
