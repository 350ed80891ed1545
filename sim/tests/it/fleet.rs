//! Many environments under load (`contrail_sim::run_fleet`, `contrail-sim scale`): routing to
//! idle environments, cold starts, throttles at the reserved and the account concurrency,
//! provisioned environments, the idle timeout, resets, each environment's own endpoint,
//! extension copy and ports, and the machine's limit. The function and the extension are the
//! Rust examples; cgroups are off so that these run without root (the resource model of each
//! environment is the single environment's, tested in `resources`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::support::*;
use contrail_sim::fleet::{ACCOUNT_LIMIT, FleetConfig, FleetReport, Load, RESERVED_LIMIT};
use contrail_sim::{CgroupUse, ResourceModel, RunConfig, SimError};
use serde_json::Value;

/// The Rust function, answering `payload`, with cgroups off.
fn function(payload: &str) -> RunConfig {
    RunConfig {
        runtime_command: vec![example("rust_function").display().to_string()],
        payload: payload.as_bytes().to_vec(),
        timeout: Duration::from_secs(10),
        resources: ResourceModel {
            cgroups: CgroupUse::Off,
            ..ResourceModel::default()
        },
        ..RunConfig::default()
    }
}

fn run_fleet(config: FleetConfig) -> Result<FleetReport, SimError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(120), contrail_sim::run_fleet(config))
                .await
                .expect("the fleet did not finish within 120 s")
        })
}

fn spike(spec: &str) -> Load {
    Load::parse(spec).unwrap()
}

/// Requests the runtimes answered, by environment.
fn ran_by_environment(report: &FleetReport) -> BTreeMap<u32, u32> {
    let mut by = BTreeMap::new();
    for r in report.timeline.iter().filter(|r| r.outcome != "throttled") {
        *by.entry(r.environment.unwrap()).or_insert(0) += 1;
    }
    by
}

#[test]
fn a_spike_above_the_reserved_concurrency_is_throttled_and_never_reaches_a_runtime() {
    // Six clients at once, each request 300 ms long, three allowed.
    let report = run_fleet(FleetConfig {
        function: function(r#"{"sleep_ms": 300}"#),
        load: spike("spike=0-6,at=0s,hold=1s,for=1s"),
        reserved_concurrency: Some(3),
        ..FleetConfig::default()
    })
    .unwrap();
    assert_eq!(report.concurrency_limit, 3);
    assert_eq!(report.limit_reason, RESERVED_LIMIT);
    assert_eq!(report.environments.len(), 3, "{}", report.render_text());
    assert_eq!(report.cold_starts, 3);
    assert_eq!(report.peak_in_flight, 3);
    let throttled = report.throttled.get(RESERVED_LIMIT).copied().unwrap_or(0);
    assert!(throttled >= 3, "{}", report.render_text());
    assert_eq!(report.throttled.len(), 1);
    // A throttled request never reached a runtime: the runtimes ran exactly the others.
    let answered = report.timeline.len() as u64 - throttled;
    assert_eq!(report.run.invocations.len() as u64, answered);
    assert!(
        report
            .timeline
            .iter()
            .filter(|r| r.outcome == "throttled")
            .all(|r| r.environment.is_none() && r.latency_ms == 0.0 && r.status_code == 429)
    );
    // Every answered request ran in the environment the report says, as often as it says.
    let ran = ran_by_environment(&report);
    for e in &report.environments {
        assert_eq!(ran.get(&e.index).copied().unwrap_or(0), e.invocations);
        assert_eq!(e.initialization_type, "on-demand");
        assert!(e.init_ms.is_some());
        assert!(e.utilization > 0.0 && e.utilization <= 1.0, "{e:?}");
        assert_eq!(e.shutdown_reason, "spindown");
    }
    // Exactly one cold request per environment, and the others warm.
    let cold: Vec<_> = report.timeline.iter().filter(|r| r.cold).collect();
    assert_eq!(cold.len(), 3);
    assert_eq!(
        cold.iter()
            .map(|r| r.environment)
            .collect::<BTreeSet<_>>()
            .len(),
        3
    );
    assert_eq!(
        report
            .run
            .invocations
            .iter()
            .filter(|i| i.init_duration_ms.is_some())
            .count(),
        3,
        "only each environment's first report carries its init"
    );
}

#[test]
fn open_loop_profiles_send_their_arrivals_whatever_the_function_does() {
    // 20 a second for 500 ms: 10 requests 50 ms apart, each 400 ms long, so about eight are
    // in flight at once and as many environments start; none is throttled, and no arrival
    // waits for an answer.
    let report = run_fleet(FleetConfig {
        function: function(r#"{"sleep_ms": 400}"#),
        load: Load::parse("rate=20,for=500ms").unwrap(),
        ..FleetConfig::default()
    })
    .unwrap();
    let text = report.render_text();
    assert_eq!(report.requests, 10, "{text}");
    assert!(
        report.timeline.iter().all(|r| r.outcome == "success"),
        "{text}"
    );
    for (i, r) in report.timeline.iter().enumerate() {
        let due = i as f64 * 50.0;
        assert!(r.at_ms >= due - 1.0 && r.at_ms < due + 100.0, "{i}: {r:?}");
    }
    assert!((6..=10).contains(&report.peak_in_flight), "{text}");
    assert_eq!(report.cold_starts as usize, report.environments.len());
    // A ramp from 0 to 40 a second over 500 ms: 10 requests, denser at the end.
    let ramp = run_fleet(FleetConfig {
        function: function("{}"),
        load: Load::parse("ramp=0-40,for=500ms").unwrap(),
        ..FleetConfig::default()
    })
    .unwrap();
    assert_eq!(ramp.requests, 10, "{}", ramp.render_text());
    let t: Vec<f64> = ramp.timeline.iter().map(|r| r.at_ms).collect();
    assert!(t[9] - t[8] < t[2] - t[1], "{t:?}");
}

#[test]
fn without_a_reserved_concurrency_the_account_limit_throttles() {
    let report = run_fleet(FleetConfig {
        function: function(r#"{"sleep_ms": 200}"#),
        load: spike("spike=0-3,at=0s,hold=500ms,for=500ms"),
        account_concurrency: 2,
        ..FleetConfig::default()
    })
    .unwrap();
    assert_eq!(report.limit_reason, ACCOUNT_LIMIT);
    assert_eq!(report.environments.len(), 2);
    assert!(report.throttled.get(ACCOUNT_LIMIT).copied().unwrap_or(0) >= 1);
}

#[test]
fn provisioned_environments_start_before_the_load_and_take_its_requests_warm() {
    // Two provisioned; a third client needs an on-demand environment.
    let report = run_fleet(FleetConfig {
        function: function(r#"{"sleep_ms": 150}"#),
        load: spike("spike=2-3,at=300ms,hold=400ms,for=1s"),
        provisioned_concurrency: 2,
        ..FleetConfig::default()
    })
    .unwrap();
    let text = report.render_text();
    assert_eq!(report.environments.len(), 3, "{text}");
    let (provisioned, on_demand): (Vec<_>, Vec<_>) = report
        .environments
        .iter()
        .partition(|e| e.initialization_type == "provisioned-concurrency");
    assert_eq!(provisioned.len(), 2, "{text}");
    assert!(provisioned.iter().all(|e| e.created_at_ms < 0.0), "{text}");
    assert_eq!(on_demand.len(), 1, "{text}");
    assert_eq!(report.cold_starts, 1);
    // Requests to provisioned environments are warm, and their reports carry no init.
    for r in report.timeline.iter().filter(|r| r.outcome != "throttled") {
        let env = r.environment.unwrap();
        let is_provisioned = provisioned.iter().any(|e| e.index == env);
        if is_provisioned {
            assert!(!r.cold, "{r:?}");
        }
    }
    let provisioned_reports = report
        .run
        .invocations
        .iter()
        .filter(|i| provisioned.iter().any(|e| e.index == i.environment));
    assert!(provisioned_reports.clone().count() >= 2);
    assert!(
        provisioned_reports
            .into_iter()
            .all(|i| i.init_duration_ms.is_none())
    );
}

#[test]
fn a_reserved_concurrency_of_zero_throttles_every_request() {
    let report = run_fleet(FleetConfig {
        function: function("{}"),
        load: Load::replay("0\n10\n").unwrap(),
        reserved_concurrency: Some(0),
        ..FleetConfig::default()
    })
    .unwrap();
    assert_eq!(report.throttled.get(RESERVED_LIMIT), Some(&2));
    assert!(report.environments.is_empty());
    assert!(report.run.invocations.is_empty());
}

#[test]
fn provisioned_concurrency_above_the_limit_is_refused() {
    let e = run_fleet(FleetConfig {
        function: function("{}"),
        provisioned_concurrency: 3,
        reserved_concurrency: Some(2),
        ..FleetConfig::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("reserve at least as much"), "{e}");
}

#[test]
fn an_idle_environment_is_shut_down_after_the_idle_timeout_and_the_next_request_starts_cold() {
    let report = run_fleet(FleetConfig {
        function: function("{}"),
        load: Load::replay("0\n150\n1500\n").unwrap(),
        idle_timeout: Duration::from_millis(500),
        ..FleetConfig::default()
    })
    .unwrap();
    let text = report.render_text();
    assert_eq!(report.environments.len(), 2, "{text}");
    let first = &report.environments[0];
    assert_eq!(first.invocations, 2, "{text}");
    // It lived from before the first request to its idle timeout after the second.
    assert!(
        first.lifetime_ms >= 500.0 && first.lifetime_ms < 1_400.0,
        "{text}"
    );
    assert_eq!(first.shutdown_reason, "spindown");
    let gaps = first.idle_gaps.as_ref().unwrap();
    assert!(gaps.max > 100.0 && gaps.max < 150.0, "{text}");
    assert_eq!(report.cold_starts, 2);
    assert!(report.timeline[2].cold);
    assert_eq!(report.timeline[2].environment, Some(1));
}

#[test]
fn a_timed_out_invocation_resets_its_environment_and_the_next_request_starts_a_new_one() {
    let mut f = function(r#"{"sleep_ms": 1500}"#);
    f.timeout = Duration::from_secs(1);
    let report = run_fleet(FleetConfig {
        function: f,
        load: Load::replay("0\n1800\n").unwrap(),
        ..FleetConfig::default()
    })
    .unwrap();
    let text = report.render_text();
    assert_eq!(report.environments.len(), 2, "{text}");
    assert_eq!(report.environments[0].shutdown_reason, "timeout", "{text}");
    assert_eq!(report.timeline[0].outcome, "timeout");
    assert!(report.timeline[1].cold);
    assert_eq!(report.timeline[1].environment, Some(1));
}

#[test]
fn an_environment_never_invoked_is_reported_as_such() {
    // One provisioned environment; the one request of the load takes it; a second provisioned
    // one is never used.
    let report = run_fleet(FleetConfig {
        function: function("{}"),
        load: Load::replay("0\n").unwrap(),
        provisioned_concurrency: 2,
        ..FleetConfig::default()
    })
    .unwrap();
    let never: Vec<_> = report
        .environments
        .iter()
        .filter(|e| e.never_invoked)
        .collect();
    assert_eq!(never.len(), 1, "{}", report.render_text());
    assert_eq!(never[0].invocations, 0);
    assert_eq!(never[0].busy_ms, 0.0);
}

/// Each environment has its own API endpoint, copy of the extensions and variables.
#[test]
fn each_environment_has_its_own_endpoint_extension_copy_and_ports() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ext-{port1}.jsonl");
    let mut f = function(r#"{"sleep_ms": 200}"#);
    f.extensions = vec![example("rust_extension")];
    let report = run_fleet(FleetConfig {
        function: f,
        load: spike("spike=0-3,at=0s,hold=300ms,for=300ms"),
        environment_env: vec![
            ("RUST_EXT_TELEMETRY_PORT".into(), "{port}".into()),
            ("RUST_EXT_OUT".into(), out.display().to_string()),
        ],
        ..FleetConfig::default()
    })
    .unwrap();
    let text = report.render_text();
    assert_eq!(report.environments.len(), 3, "{text}");
    // Three copies of the extension, in three folders, none the original.
    let paths: BTreeSet<&str> = report
        .run
        .extensions
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
    let original = example("rust_extension").display().to_string();
    assert!(!paths.contains(original.as_str()));
    assert!(
        report
            .run
            .extensions
            .iter()
            .all(|e| !e.crashed && e.exit.is_some())
    );
    // Each extension wrote its own file, with its own environment's invocations only.
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    let mut request_ids = BTreeSet::new();
    for file in &files {
        let invokes = invoke_ids(file);
        assert!(!invokes.is_empty(), "{}", file.display());
        let environments: BTreeSet<u32> = invokes
            .iter()
            .map(|id| {
                report
                    .run
                    .invocations
                    .iter()
                    .find(|i| &i.request_id == id)
                    .unwrap()
                    .environment
            })
            .collect();
        assert_eq!(environments.len(), 1, "{}", file.display());
        request_ids.extend(invokes);
    }
    assert_eq!(request_ids.len(), report.run.invocations.len());
    // The copies are removed with the run.
    for p in paths {
        assert!(!Path::new(p).exists(), "{p} is left behind");
    }
}

/// The request ids of the INVOKE events an extension wrote.
fn invoke_ids(file: &Path) -> Vec<String> {
    lines(file)
        .iter()
        .filter(|l| l["kind"] == "INVOKE")
        .filter_map(|l| l["requestId"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_load_beyond_this_machine_is_refused_with_what_to_do() {
    let e = run_fleet(FleetConfig {
        function: function("{}"),
        load: spike("spike=0-1000,at=0s,hold=1s,for=1s"),
        ..FleetConfig::default()
    })
    .unwrap_err();
    let e = e.to_string();
    assert!(e.contains("1000 environments at once"), "{e}");
    assert!(e.contains("--reserved-concurrency"), "{e}");
    // With a reserved concurrency the machine can run, the same load runs (and throttles).
    let report = run_fleet(FleetConfig {
        function: function(r#"{"sleep_ms": 100}"#),
        load: spike("spike=0-1000,at=0s,hold=200ms,for=200ms"),
        reserved_concurrency: Some(2),
        ..FleetConfig::default()
    })
    .unwrap();
    assert_eq!(report.environments.len(), 2);
    assert!(report.throttled_total() > 900, "{}", report.render_text());
    // A cap of no environment at all is refused.
    let e = run_fleet(FleetConfig {
        function: function("{}"),
        max_environments: Some(0),
        ..FleetConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("1 or more"), "{e}");
}

#[test]
fn a_cold_start_on_a_full_machine_waits_for_an_environment_still_shutting_down() {
    // One environment at most. The first goes idle and times out after 100 ms, and its
    // extension takes 1.8 s to answer SHUTDOWN; the second request comes meanwhile.
    let dir = tempfile::tempdir().unwrap();
    let mut f = function("{}");
    f.extensions = vec![example("rust_extension")];
    let report = run_fleet(FleetConfig {
        function: f,
        load: Load::replay("0\n1200\n").unwrap(),
        idle_timeout: Duration::from_millis(100),
        max_environments: Some(1),
        environment_env: vec![
            ("RUST_EXT_TELEMETRY_PORT".into(), "{port}".into()),
            (
                "RUST_EXT_OUT".into(),
                dir.path().join("ext-{port}.jsonl").display().to_string(),
            ),
            ("RUST_EXT_SHUTDOWN_MS".into(), "1800".into()),
        ],
        ..FleetConfig::default()
    })
    .unwrap();
    let text = report.render_text();
    assert_eq!(report.machine_limit, 1, "{text}");
    assert_eq!(report.environments.len(), 2, "{text}");
    assert_eq!(report.environments[0].shutdown_reason, "spindown", "{text}");
    let second = &report.timeline[1];
    assert!(second.cold, "{text}");
    assert_eq!(second.environment, Some(1), "{text}");
    assert_eq!(second.outcome, "success", "{text}");
    // It waited for the first environment to be gone: its shutdown began at its idle
    // timeout, and its extension held it for 1.8 s.
    let first = &report.environments[0];
    let shutdown_began = first.created_at_ms + first.lifetime_ms;
    let created = report.environments[1].created_at_ms;
    assert!(
        created >= shutdown_began + 1_700.0,
        "created at {created} ms, the first's shutdown began at {shutdown_began} ms: {text}"
    );
    assert!(second.latency_ms >= created - second.at_ms, "{text}");
}

#[test]
fn scale_prints_the_fleet_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("fleet.json");
    let out = sim()
        .args([
            "scale",
            "--quiet",
            "--no-sink",
            "--cgroups",
            "off",
            "--load",
            "spike=0-2,at=0s,hold=300ms,for=300ms",
            "--reserved-concurrency",
            "1",
            "--payload",
            r#"{"sleep_ms": 100}"#,
            "--report-json",
        ])
        .arg(&json)
        .arg("--")
        .arg(example("rust_function"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("== contrail-sim scale"), "{stdout}");
    assert!(
        stdout.contains(
            "429 TooManyRequestsException (ReservedFunctionConcurrentInvocationLimitExceeded)"
        ),
        "{stdout}"
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["concurrency_limit"], 1);
    assert_eq!(report["environments"].as_array().unwrap().len(), 1);
    assert!(report["timeline"].as_array().unwrap().len() >= 2);
}

#[test]
fn scale_refuses_a_bad_load_with_the_reason() {
    for (load, words) in [
        ("spike=3-1,at=0,hold=1,for=1", "PEAK >= BASE"),
        ("burst=5", "unknown profile"),
        ("replay=/nonexistent/arrivals", "/nonexistent/arrivals"),
    ] {
        let out = sim()
            .args(["scale", "--no-sink", "--load", load, "--", "true"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(words), "{load}: {stderr}");
    }
}

/// Under the resource model, every environment of the fleet has cgroups of its own, frozen
/// between invocations, and none is left behind.
#[test]
#[ignore = "needs root for cgroups"]
fn every_environment_runs_in_cgroups_of_its_own_and_none_is_left_behind() {
    let mut child = sim()
        .args([
            "scale",
            "--quiet",
            "--no-sink",
            "--cgroups",
            "require",
            "--load",
            "spike=0-3,at=0s,hold=1500ms,for=1500ms",
            "--payload",
            r#"{"sleep_ms": 200}"#,
            "--",
        ])
        .arg(example("rust_function"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While the load runs, the sim holds one group per environment in each hierarchy.
    let pid = child.id();
    let mut most = 0;
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < until {
        let groups: BTreeSet<String> = crate::resources::groups_of(pid)
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        most = most.max(groups.len());
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("(cgroup v"), "{stdout}");
    assert_eq!(
        most, 3,
        "distinct environment groups seen at once: {stdout}"
    );
    assert!(crate::resources::groups_of(pid).is_empty());
}
