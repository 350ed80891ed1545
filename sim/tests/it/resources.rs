//! Lambda's resource model on this machine's cgroups: the CPU share proportional to memory,
//! the memory limit and its out-of-memory kill, and the removal of every group a run made.
//! These need root (cgroups); run as another user they fail, saying so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;
use contrail_sim::{CgroupUse, FreezeWith, InitCpu, ResourceModel, RunConfig, RunReport};

/// The model, required: a missing part fails the run instead of passing unthrottled.
fn required() -> ResourceModel {
    ResourceModel {
        cgroups: CgroupUse::Require,
        ..ResourceModel::default()
    }
}

/// The Rust function (`examples/rust_function.rs`) with `payload`, under the required model.
fn rust_run(memory_mb: u32, invocations: u32, payload: &str) -> RunConfig {
    RunConfig {
        runtime_command: vec![example("rust_function").display().to_string()],
        memory_mb,
        invocations,
        payload: payload.as_bytes().to_vec(),
        timeout: Duration::from_secs(30),
        resources: ResourceModel {
            init_cpu: InitCpu::Throttled,
            ..required()
        },
        ..RunConfig::default()
    }
}

/// `config` with the example extension (`examples/rust_extension.rs`) writing to `out`, and
/// more of its variables.
fn with_extension(config: RunConfig, out: &Path, vars: &[(&str, &str)]) -> RunConfig {
    let mut config = config;
    config.extensions.push(example("rust_extension"));
    config.env.extend([
        ("RUST_EXT_OUT".to_owned(), out.display().to_string()),
        (
            "RUST_EXT_TELEMETRY_PORT".to_owned(),
            free_port().to_string(),
        ),
    ]);
    config
        .env
        .extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    config
}

fn median_duration(report: &RunReport) -> f64 {
    let mut d: Vec<f64> = report
        .invocations
        .iter()
        .skip(1)
        .map(|i| i.duration_ms)
        .collect();
    d.sort_by(f64::total_cmp);
    d[d.len() / 2]
}

#[test]
#[ignore = "needs root for cgroups"]
fn a_cpu_bound_handler_takes_longer_the_less_memory_it_has() {
    // 40 ms of CPU: at 128 MB (1.45 ms per 20 ms period) about 550 ms, at 512 MB (5.79 ms)
    // about 140 ms, at 1769 MB (a whole CPU) about 40 ms.
    let payload = r#"{"spin_ms": 40}"#;
    let runs: Vec<(u32, RunReport)> = [128, 512, 1769]
        .into_iter()
        .map(|mb| (mb, run(rust_run(mb, 3, payload)).unwrap()))
        .collect();
    for (mb, r) in &runs {
        assert!(r.resources.cpu_enforced, "{mb} MB: {}", r.resources.summary);
        assert!(
            r.invocations.iter().all(|i| i.status == "success"),
            "{}",
            r.render_text()
        );
        let vcpus = r.resources.invoke_vcpus.unwrap();
        assert!((vcpus - f64::from(*mb) / 1769.0).abs() < 1e-9);
    }
    let d: Vec<f64> = runs.iter().map(|(_, r)| median_duration(r)).collect();
    // The duration scales with 1 / memory: 4× less memory, about 4× longer.
    let ratio = d[0] / d[1];
    assert!(
        (3.0..=5.5).contains(&ratio),
        "128 MB {:.1} ms vs 512 MB {:.1} ms: ratio {ratio:.2}",
        d[0],
        d[1]
    );
    // A whole CPU is not always free on a shared machine: only the order is certain there.
    assert!(
        d[1] > d[2],
        "512 MB {:.1} ms vs 1769 MB {:.1} ms",
        d[1],
        d[2]
    );
    assert!(
        d[0] > 40.0 / (128.0 / 1769.0) * 0.8,
        "128 MB: {:.1} ms",
        d[0]
    );
    let throttled = runs[0].1.resources.throttling.unwrap();
    assert!(
        throttled.throttled_periods >= 20,
        "the 128 MB environment was throttled: {throttled:?}"
    );
}

#[test]
#[ignore = "needs root for cgroups"]
fn init_is_unthrottled_on_demand_unless_asked_otherwise() {
    // 40 ms of CPU before the runtime's first next.
    let init_work = |init_cpu| RunConfig {
        env: vec![("INIT_SPIN_MS".into(), "40".into())],
        resources: ResourceModel {
            init_cpu,
            ..required()
        },
        ..rust_run(128, 1, "{}")
    };
    let boosted = run(init_work(InitCpu::Auto)).unwrap();
    let throttled = run(init_work(InitCpu::Throttled)).unwrap();
    assert_eq!(boosted.resources.init_vcpus, Some(2.0));
    assert!(boosted.resources.summary.contains("INIT unthrottled"));
    assert!(throttled.resources.summary.contains("INIT throttled"));
    let (b, t) = (
        boosted.runtime.init_ms.unwrap(),
        throttled.runtime.init_ms.unwrap(),
    );
    // Throttled, 40 ms of CPU take about 550 ms at 128 MB; unthrottled, about 40 ms.
    assert!(t > 350.0, "throttled INIT: {t:.1} ms");
    assert!(b * 4.0 < t, "unthrottled {b:.1} ms vs throttled {t:.1} ms");
    // After INIT the share is the memory's in both.
    for r in [&boosted, &throttled] {
        let share = r.resources.invoke_vcpus.unwrap();
        assert!((share - 128.0 / 1769.0).abs() < 1e-9);
    }
}

#[test]
#[ignore = "needs root for cgroups"]
fn a_handler_that_allocates_past_the_limit_is_killed_reported_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("extension.jsonl");
    let config = with_extension(rust_run(128, 2, r#"{"alloc_mb": 200}"#), &out, &[]);
    let report = run(config).unwrap();
    let text = report.render_text();
    assert_eq!(report.resources.memory_limit_mb, Some(128), "{text}");
    assert_eq!(
        report.environments, 2,
        "each OOM resets the environment: {text}"
    );
    for (n, i) in report.invocations.iter().enumerate() {
        assert_eq!(i.status, "error", "{text}");
        assert_eq!(
            i.error_type.as_deref(),
            Some("Runtime.OutOfMemory"),
            "{text}"
        );
        assert_eq!(i.environment, n as u32);
        assert!(i.max_memory_used_mb >= 120, "{text}");
    }
    assert!(report.resources.oom_kills >= 2, "{text}");
    assert!(text.contains("(Runtime.OutOfMemory)"));
    // The extension, which shares the limit, saw the failure and the reset as Lambda shows
    // them: runtimeDone and report with error / Runtime.OutOfMemory, then SHUTDOWN (failure).
    // Its file holds what the last environment's extension wrote.
    let lines = lines(&out);
    let records: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["kind"] == "telemetry")
        .map(|l| &l["record"])
        .collect();
    let last = &report.invocations[1].request_id;
    for kind in ["platform.runtimeDone", "platform.report"] {
        let r = records
            .iter()
            .find(|r| r["type"] == kind && r["record"]["requestId"] == last.as_str())
            .unwrap_or_else(|| panic!("no {kind} for {last}: {records:?}"));
        assert_eq!(r["record"]["status"], "error", "{kind}: {r}");
        assert_eq!(
            r["record"]["errorType"], "Runtime.OutOfMemory",
            "{kind}: {r}"
        );
    }
    let shutdowns: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["kind"] == "SHUTDOWN").collect();
    assert!(!shutdowns.is_empty(), "{lines:?}");
    assert_eq!(shutdowns[0]["reason"], "failure");
}

#[test]
#[ignore = "needs root for cgroups"]
fn memory_within_the_limit_is_fine_and_reported() {
    let report = run(rust_run(256, 2, r#"{"alloc_mb": 100}"#)).unwrap();
    let text = report.render_text();
    assert_eq!(report.environments, 1, "{text}");
    for i in &report.invocations {
        assert_eq!(i.status, "success", "{text}");
        assert!(
            (100..=256).contains(&i.max_memory_used_mb),
            "max memory used: {text}"
        );
    }
    assert_eq!(report.resources.oom_kills, 0);
}

/// An extension's CPU to its first `next` leaves out what its group counted before `exec`
/// had loaded it (the end of the forked emulator): the two parts add up to at most the CPU it
/// used in all. The first part can read 0: the group's counter adds a running child's time at
/// the next tick or scheduler event (ADR 0010).
#[test]
#[ignore = "needs root for cgroups"]
fn an_extensions_cpu_to_its_first_next_starts_at_its_exec() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("extension.jsonl");
    let report = run(with_extension(rust_run(512, 1, "{}"), &out, &[])).unwrap();
    let text = report.render_text();
    let extension = &report.extensions[0];
    let at_exec = extension.cpu_at_exec_ms.expect("counted by cgroups");
    let to_next = extension.cpu_to_first_next_ms.expect("counted by cgroups");
    let total = extension.cpu_ms.expect("counted by cgroups");
    assert!(at_exec >= 0.0, "{at_exec} ms: {text}");
    assert!(to_next > 0.0, "registering costs something: {text}");
    assert!(
        at_exec + to_next <= total,
        "{at_exec} + {to_next} ms of {total} ms: {text}"
    );
}

/// Every `contrail-sim-<pid>-*` group of the cgroup hierarchies, by walking the mounts.
pub(crate) fn groups_of(pid: u32) -> Vec<PathBuf> {
    fn walk(dir: &Path, prefix: &str, depth: u32, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(prefix) {
                found.push(path);
            } else if depth > 0 {
                walk(&path, prefix, depth - 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(
        Path::new("/sys/fs/cgroup"),
        &format!("contrail-sim-{pid}-"),
        4,
        &mut found,
    );
    found
}

#[test]
#[ignore = "needs root for cgroups"]
fn every_group_is_removed_after_a_run_a_failed_init_and_an_interrupt() {
    let function = example("rust_function").display().to_string();
    let sim_run = |extra: &[&str]| {
        let mut cmd = sim();
        cmd.args(["run", "--quiet", "--no-sink", "--cgroups", "require"])
            .args(extra)
            .args(["--", &function]);
        cmd
    };
    // A run that ends normally.
    let mut ok = sim_run(&["--invocations", "2"]).spawn().unwrap();
    let pid = ok.id();
    assert!(ok.wait().unwrap().success());
    assert_eq!(groups_of(pid), Vec::<PathBuf>::new());

    // A run whose init fails: the runtime is not executable.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bootstrap");
    std::fs::write(&script, "#!/bin/sh\nexit 3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut failed = sim();
    failed
        .args(["run", "--quiet", "--no-sink", "--cgroups", "require", "--"])
        .arg(&script);
    let mut failed = failed.spawn().unwrap();
    let pid = failed.id();
    assert!(!failed.wait().unwrap().success());
    assert_eq!(groups_of(pid), Vec::<PathBuf>::new());

    // A run interrupted while it runs: SIGTERM while an invocation spins.
    let mut long = sim_run(&[
        "--invocations",
        "1",
        "--timeout-s",
        "60",
        "--payload",
        r#"{"spin_ms": 20000}"#,
    ])
    .spawn()
    .unwrap();
    let pid = long.id();
    let started = std::time::Instant::now();
    while groups_of(pid).is_empty() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!groups_of(pid).is_empty(), "the run made its groups");
    std::thread::sleep(Duration::from_millis(300));
    nix_kill_term(pid);
    let status = long.wait().unwrap();
    assert!(!status.success());
    assert_eq!(groups_of(pid), Vec::<PathBuf>::new());
}

fn nix_kill_term(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Ticks of the example extension's 50 ms timer between two INVOKEs 2 s apart, with the
/// environment frozen (by `freezer`) or not.
fn ticks_in_gap(freezer: Option<FreezeWith>) -> (usize, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("extension.jsonl");
    let config = RunConfig {
        idle_gap: Duration::from_millis(2_000),
        freeze: freezer.is_some(),
        resources: ResourceModel {
            freezer: freezer.unwrap_or_default(),
            ..required()
        },
        ..with_extension(rust_run(512, 2, "{}"), &out, &[("RUST_EXT_TIMER_MS", "50")])
    };
    let report = run(config).unwrap();
    let lines = lines(&out);
    let at = |kind: &str| -> Vec<f64> {
        lines
            .iter()
            .filter(|l| l["kind"] == kind)
            .map(|l| l["at"].as_f64().unwrap())
            .collect()
    };
    let invokes = at("INVOKE");
    assert_eq!(invokes.len(), 2, "{lines:?}");
    // Half a second after the first INVOKE for the extension to get back to next, half a
    // second before the second one (a tick that was due fires right at the thaw).
    let (from, to) = (invokes[0] + 0.5, invokes[1] - 0.5);
    let ticks = at("tick")
        .into_iter()
        .filter(|t| *t > from && *t < to)
        .count();
    (ticks, report.resources.freezer)
}

#[test]
#[ignore = "needs root for cgroups"]
fn a_frozen_timer_does_not_fire_with_either_cgroup_freezer_or_sigstop() {
    let runs: Vec<_> = std::thread::scope(|s| {
        [
            Some(FreezeWith::CgroupV1),
            Some(FreezeWith::CgroupV2),
            Some(FreezeWith::Signal),
            None,
        ]
        .map(|f| s.spawn(move || ticks_in_gap(f)))
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect()
    });
    assert_eq!(
        runs[0],
        (0, "cgroup v1".to_owned()),
        "timer fired while frozen"
    );
    assert_eq!(
        runs[1],
        (0, "cgroup v2".to_owned()),
        "timer fired while frozen"
    );
    assert_eq!(
        runs[2],
        (0, "SIGSTOP".to_owned()),
        "timer fired while frozen"
    );
    assert!(
        runs[3].0 > 10,
        "control run without freeze saw {} ticks",
        runs[3].0
    );
}

/// `contrail-sim tune` of the CPU-bound example function with the example extension; returns
/// its table and the row of each size.
fn tune(memory: &str, extra: &[&str]) -> (String, Vec<(u32, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let out = sim()
        .args(["tune", "--memory-mb", memory, "--invocations", "3"])
        .args(["--payload", r#"{"spin_ms": 30}"#, "--extension"])
        .arg(example("rust_extension"))
        .arg("--env")
        .arg(format!(
            "RUST_EXT_OUT={}",
            dir.path().join("ext.jsonl").display()
        ))
        .arg("--env")
        .arg(format!("RUST_EXT_TELEMETRY_PORT={}", free_port()))
        .args(extra)
        .arg("--")
        .arg(example("rust_function"))
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = table
        .lines()
        .filter_map(|l| {
            let (mb, _) = l.trim_start().split_once(" MB ")?;
            Some((mb.parse().ok()?, l.to_owned()))
        })
        .collect();
    (table, rows)
}

/// The median column (the third figure) of a tune row.
fn median_of(row: &str) -> f64 {
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    cells[2].trim_end_matches(" ms").parse().unwrap()
}

#[test]
#[ignore = "needs root for cgroups"]
fn tune_shows_durations_falling_with_memory_and_marks_the_cheapest_and_fastest() {
    let (table, rows) = tune(
        "128,512,1769",
        &["--cgroups", "require", "--init-cpu", "throttled"],
    );
    assert_eq!(rows.len(), 3, "{table}");
    assert!(table.contains("ESTIMATE"), "{table}");
    assert!(
        table.contains("cgroup"),
        "the resource model is named: {table}"
    );
    let medians: Vec<f64> = rows.iter().map(|(_, r)| median_of(r)).collect();
    assert!(
        medians[0] > medians[1] * 2.5 && medians[1] > medians[2],
        "{medians:?}\n{table}"
    );
    // 30 ms of CPU cost about the same at every size (billed time × memory), so the cheapest
    // is whichever measured least; the fastest is the largest.
    assert_eq!(
        rows.iter().filter(|(_, r)| r.contains("cheapest")).count(),
        1,
        "{table}"
    );
    assert!(rows[2].1.contains("fastest"), "{table}");
    for (_, r) in &rows {
        assert!(
            !r.contains("UNTHROTTLED") && !r.contains("FAILED"),
            "{table}"
        );
        // Each size was run without the extension too: its share is shown.
        assert!(r.contains(" ms (") && r.contains(" %)"), "{r}");
        assert!(r.contains('$'), "{r}");
    }
}

#[test]
fn tune_without_cgroups_labels_every_size_unthrottled() {
    let (table, rows) = tune("128,256", &["--cgroups", "off", "--no-baseline"]);
    assert_eq!(rows.len(), 2, "{table}");
    assert!(table.contains("UNTHROTTLED"), "{table}");
    for (_, r) in &rows {
        assert!(r.contains("UNTHROTTLED"), "{r}");
    }
}

#[test]
#[ignore = "needs root for cgroups"]
fn without_root_the_run_says_once_it_is_unthrottled_and_labels_its_report() {
    // Root drops to nobody, who may not make cgroups.
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let report = dir.path().join("report.json");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_contrail-sim"))
        .args([
            "run",
            "--quiet",
            "--no-sink",
            "--invocations",
            "2",
            "--report-json",
        ])
        .arg(&report)
        .arg("--")
        .arg(example("rust_function"))
        .current_dir(dir.path())
        .output()
        .expect("setpriv (util-linux) runs the emulator as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("UNTHROTTLED"))
        .collect();
    assert_eq!(warnings.len(), 1, "said once: {stderr}");
    assert!(warnings[0].contains("needs root"), "{}", warnings[0]);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let resources = &json["resources"];
    assert_eq!(resources["cpu_enforced"], false);
    assert!(
        resources["summary"]
            .as_str()
            .unwrap()
            .starts_with("UNTHROTTLED"),
        "{resources}"
    );
    assert_eq!(resources["freezer"], "SIGSTOP");
    assert_eq!(resources["memory_limit_mb"], serde_json::Value::Null);
    assert!(
        json["invocations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "success")
    );
}
