//! Runtime and extension clients not written here run under the emulator: the Rust
//! `lambda_runtime` and `lambda-extension` crates, and Node's `aws-lambda-ric`.

use crate::support::*;
use contrail_sim::RunConfig;

#[test]
fn rust_function_and_lambda_extension_crate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("extension.jsonl");
    let config = RunConfig {
        runtime_command: vec![example("rust_function").display().to_string()],
        extensions: vec![example("rust_extension")],
        env: vec![
            ("RUST_EXT_OUT".into(), out.display().to_string()),
            ("RUST_EXT_TELEMETRY_PORT".into(), free_port().to_string()),
        ],
        invocations: 3,
        payload: br#"{"n": 1}"#.to_vec(),
        ..RunConfig::default()
    };
    let report = run(config).unwrap();
    assert!(
        report.invocations.iter().all(|i| i.status == "success"),
        "{report:?}"
    );
    let extension = &report.extensions[0];
    assert_eq!(extension.name, "rust_extension");
    assert_eq!(extension.telemetry_schema.as_deref(), Some("2022-07-01"));
    assert!(!extension.crashed, "{extension:?}");
    let entries = lines(&out);
    let invokes: Vec<_> = entries.iter().filter(|e| e["kind"] == "INVOKE").collect();
    assert_eq!(invokes.len(), 3);
    for (e, inv) in invokes.iter().zip(&report.invocations) {
        assert_eq!(e["requestId"], inv.request_id.as_str());
        assert_eq!(e["tracing"], inv.trace_header.as_str());
    }
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "SHUTDOWN" && e["reason"] == "spindown")
    );
    let tel: Vec<_> = entries
        .iter()
        .filter(|e| e["kind"] == "telemetry")
        .map(|e| &e["record"])
        .collect();
    let types: Vec<&str> = tel.iter().filter_map(|r| r["type"].as_str()).collect();
    for t in [
        "platform.initStart",
        "platform.start",
        "platform.runtimeDone",
        "platform.report",
        "function",
    ] {
        assert!(types.contains(&t), "no {t} in {types:?}");
    }
    let func = tel
        .iter()
        .filter(|r| r["type"] == "function")
        .filter_map(|r| r["record"].as_str());
    assert!(
        func.into_iter()
            .any(|l| l.contains("rust function handling"))
    );
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn node_function_under_aws_lambda_ric() {
    let node_dir = node_ric();
    let recording = Recording::new();
    std::fs::write(
        recording.dir().join("app.mjs"),
        "export const handler = async (event, context) => {\n  console.log('node handling', context.awsRequestId);\n  return { requestId: context.awsRequestId, trace: process.env._X_AMZN_TRACE_ID };\n};\n",
    )
    .unwrap();
    let config = RunConfig {
        runtime_command: vec![
            "node".into(),
            node_dir.join("index.mjs").display().to_string(),
            "app.handler".into(),
        ],
        task_root: Some(recording.dir().to_path_buf()),
        handler: "app.handler".into(),
        invocations: 2,
        ..recording.python_run(&[("RECORDER_SCHEMA", "2022-12-13")])
    };
    let report = run(config).unwrap();
    assert!(
        report.invocations.iter().all(|i| i.status == "success"),
        "{:?}",
        report.invocations
    );
    let tel = telemetry(&recording.entries());
    let func: Vec<String> = records_of(&tel, "function")
        .iter()
        .map(|r| r["record"].to_string())
        .collect();
    assert!(
        func.iter()
            .any(|l| l.contains("node handling") && l.contains(&report.invocations[0].request_id)),
        "{func:?}"
    );
}
