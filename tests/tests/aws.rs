//! Export to AWS's endpoints and keys from Secrets Manager and SSM, with the real binary under
//! the emulator, against things not written here:
//!
//! - a backend that recomputes every request's SigV4 signature with botocore's own signer
//!   (`tests/assets/sigv4_backend.py`), for traces, logs and metrics, gzip on and off, and a
//!   wrong secret key that must not match;
//! - Secrets Manager and SSM Parameter Store served by moto in server mode, behind a layer that
//!   throttles (`tests/assets/aws_services.py`): a secret, a JSON key of a secret and a
//!   `SecureString` reach the backend as header values; a missing, a denied and a throttled one
//!   each end as documented, and the function's invocations are unaffected;
//! - a SnapStart restore that signs with the credentials of the emulator's container endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use contrail_e2e::{python_run, root, venv_python};
use contrail_sim::{AwsCredentials, InitType, RunConfig, RunReport};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const HANDLER: &str = r#"
import logging
logger = logging.getLogger()
logger.setLevel(logging.INFO)

def handler(event, context):
    logger.info("handled %s", context.aws_request_id)
    return {"ok": True}
"#;

/// A Python helper of `tests/assets`, and the first line it printed.
async fn helper(script: &str, args: &[String]) -> (Child, String) {
    let mut child = Command::new(venv_python())
        .arg(root().join("tests/assets").join(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the helper (scripts/install-test-deps.sh installs its packages)");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("the helper starts within 60 s")
    .unwrap();
    assert!(
        !line.trim().is_empty(),
        "{script} printed nothing: is moto/botocore installed?"
    );
    (child, line.trim().to_owned())
}

/// `GET path` on 127.0.0.1:port, the JSON answer.
async fn get_json(port: u16, path: &str) -> Value {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap()
}

struct Otlp {
    _child: Child,
    port: u16,
}

impl Otlp {
    async fn start(args: &[String]) -> Otlp {
        let (child, line) = helper("sigv4_backend.py", args).await;
        Otlp {
            _child: child,
            port: line.parse().unwrap(),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn results(&self) -> Vec<Value> {
        get_json(self.port, "/results")
            .await
            .as_array()
            .unwrap()
            .clone()
    }
}

fn key_arg(c: &AwsCredentials) -> String {
    format!("--key={}={}", c.access_key_id, c.secret_access_key)
}

/// Each signal signed for its own service, at the backend on loopback.
fn signed_env(endpoint: &str, compression: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CONTRAIL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("CONTRAIL_EXPORTER_OTLP_AUTH", "sigv4".into()),
        ("CONTRAIL_EXPORTER_OTLP_SIGV4_REGION", "us-east-1".into()),
        ("CONTRAIL_EXPORTER_OTLP_TRACES_SIGV4_SERVICE", "xray".into()),
        ("CONTRAIL_EXPORTER_OTLP_LOGS_SIGV4_SERVICE", "logs".into()),
        (
            "CONTRAIL_EXPORTER_OTLP_METRICS_SIGV4_SERVICE",
            "monitoring".into(),
        ),
        ("CONTRAIL_EXPORTER_OTLP_COMPRESSION", compression.into()),
        ("CONTRAIL_FLUSH", "end".into()),
    ]
}

async fn run(name: &str, env: &[(&str, String)], edit: impl FnOnce(&mut RunConfig)) -> RunReport {
    let (mut config, _keep) = python_run(HANDLER, name, env);
    config.invocations = 2;
    edit(&mut config);
    let report = contrail_sim::run(config).await.expect("the run completes");
    assert_eq!(report.invocations.len(), 2, "{name}");
    for i in &report.invocations {
        assert_eq!(i.status, "success", "{name}: the function is unaffected");
    }
    report
}

fn by_path<'a>(results: &'a [Value], path: &str) -> Vec<&'a Value> {
    results.iter().filter(|r| r["path"] == path).collect()
}

fn signed(r: &Value, header: &str) -> bool {
    r["signed_headers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h == header)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn every_export_is_signed_as_botocore_signs_it_with_and_without_gzip() {
    let creds = AwsCredentials::default();
    let wrong = format!("--key={}=not-the-secret-key", creds.access_key_id);
    let (right, wrong) = ([key_arg(&creds)], [wrong]);
    let (gzip, plain, bad) = tokio::join!(
        Otlp::start(&right),
        Otlp::start(&right),
        Otlp::start(&wrong),
    );
    let g = signed_env(&gzip.endpoint(), "gzip");
    let p = signed_env(&plain.endpoint(), "none");
    let b = signed_env(&bad.endpoint(), "gzip");
    tokio::join!(
        run("sigv4-gzip", &g, |_| {}),
        run("sigv4-plain", &p, |_| {}),
        run("sigv4-wrong", &b, |_| {}),
    );
    for (backend, compressed) in [(&gzip, true), (&plain, false)] {
        let results = backend.results().await;
        for (path, service) in [
            ("/v1/traces", "xray"),
            ("/v1/logs", "logs"),
            ("/v1/metrics", "monitoring"),
        ] {
            let requests = by_path(&results, path);
            assert!(
                !requests.is_empty(),
                "no {path} request (gzip {compressed})"
            );
            for r in requests {
                assert_eq!(r["matched"], true, "{path}: {}", r["why"]);
                assert_eq!(r["gzip"], compressed, "{path}");
                assert!(r["records"].as_i64().unwrap() > 0, "{path}: {r}");
                assert!(
                    r["scope"]
                        .as_str()
                        .unwrap()
                        .ends_with(&format!("/us-east-1/{service}/aws4_request")),
                    "{r}"
                );
                assert!(
                    signed(r, "x-amz-security-token")
                        && signed(r, "host")
                        && signed(r, "content-type")
                );
                assert_eq!(signed(r, "content-encoding"), compressed, "{path}");
                assert_eq!(
                    r["headers"]["x-amz-security-token"],
                    creds.session_token.as_str()
                );
            }
        }
        for r in by_path(&results, "/v1/logs") {
            assert_eq!(r["headers"]["x-aws-log-stream"], "contrail");
            assert!(
                r["headers"]["x-aws-log-group"]
                    .as_str()
                    .unwrap()
                    .starts_with("/aws/lambda/sigv4-")
            );
            assert!(signed(r, "x-aws-log-group") && signed(r, "x-aws-log-stream"));
        }
    }
    let refused = bad.results().await;
    assert!(!refused.is_empty());
    for r in &refused {
        assert_eq!(r["matched"], false, "a wrong secret key never matches: {r}");
        assert!(r["why"].as_str().unwrap().contains("does not match"), "{r}");
    }
}

/// moto with the values of `spec`, and what it printed: port, ARNs, the IAM key.
async fn services(spec: Value) -> (Child, Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.json");
    std::fs::write(&path, spec.to_string()).unwrap();
    let (child, line) = helper("aws_services.py", &[path.display().to_string()]).await;
    (child, serde_json::from_str(&line).unwrap())
}

/// Every body the backend received, as text (decompressed).
fn bodies(results: &[Value]) -> String {
    results
        .iter()
        .map(|r| r["body"].as_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn header_values_come_from_secrets_manager_and_ssm_and_a_missing_or_throttled_one_ends_as_documented()
 {
    let (_moto, info) = services(serde_json::json!({
        "secrets": {"vendor/key": "{\"api_key\":\"k-1234567\"}", "plain": "p-7654321"},
        "parameters": {"/contrail/token": "t-5555555"},
        "throttle": {"AmazonSSM.GetParameters": 2},
    }))
    .await;
    let arn = |name: &str| info["arns"][name].as_str().unwrap().to_owned();
    let missing = arn("plain").replace(":secret:plain-", ":secret:gone-");
    let backend = Otlp::start(&["--no-auth".into()]).await;
    let headers = format!(
        "x-api-key=${{{}#api_key}},x-plain=${{{}}},x-token=${{{}}}",
        arn("vendor/key"),
        arn("plain"),
        arn("/contrail/token")
    );
    let env = vec![
        ("CONTRAIL_EXPORTER_OTLP_ENDPOINT", backend.endpoint()),
        ("CONTRAIL_EXPORTER_OTLP_HEADERS", headers),
        (
            "CONTRAIL_EXPORTER_OTLP_TRACES_HEADERS",
            format!("x-missing=${{{missing}}}"),
        ),
        ("CONTRAIL_FLUSH", "end".into()),
    ];
    let moto_url = format!("http://127.0.0.1:{}", info["port"]);
    run("secrets-e2e", &env, |c| c.aws_endpoint_url = Some(moto_url)).await;

    let results = backend.results().await;
    let logs = by_path(&results, "/v1/logs");
    assert!(!logs.is_empty(), "logs arrive with their headers");
    for r in logs.iter().chain(by_path(&results, "/v1/metrics").iter()) {
        assert_eq!(
            r["headers"]["x-api-key"], "k-1234567",
            "the JSON key of a secret"
        );
        assert_eq!(r["headers"]["x-plain"], "p-7654321", "a whole secret");
        assert_eq!(
            r["headers"]["x-token"], "t-5555555",
            "a SecureString, decrypted"
        );
    }
    assert!(
        by_path(&results, "/v1/traces").is_empty(),
        "traces need the missing secret"
    );
    let text = bodies(&results);
    assert!(
        text.contains("secret_unavailable"),
        "the drop is counted under its reason"
    );
    assert!(
        text.contains("ResourceNotFoundException") && text.contains("check the ARN"),
        "the warning says what to change"
    );
    assert_eq!(
        text.matches(&format!("cannot read {missing}")).count(),
        1,
        "reported once"
    );
    for value in ["k-1234567", "p-7654321", "t-5555555"] {
        assert!(
            !text.contains(value),
            "{value} in an exported body (logs, self-telemetry)"
        );
    }
    let calls = get_json(info["port"].as_u64().unwrap() as u16, "/_calls").await;
    let calls: Vec<&str> = calls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let ssm = calls
        .iter()
        .filter(|c| **c == "AmazonSSM.GetParameters")
        .count();
    assert!(
        ssm >= 3,
        "two throttled calls, then one that worked: {calls:?}"
    );
    assert!(
        calls.contains(&"secretsmanager.BatchGetSecretValue"),
        "several secrets in one call: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn a_denied_parameter_is_reported_once_and_counted_while_the_allowed_secret_works() {
    let (_moto, info) = services(serde_json::json!({
        "secrets": {"allowed": "a-1111111"},
        "parameters": {"/denied": "d-2222222"},
        "iam": {"allow": ["secretsmanager:GetSecretValue"]},
    }))
    .await;
    let arn = |name: &str| info["arns"][name].as_str().unwrap().to_owned();
    let key = AwsCredentials {
        access_key_id: info["key"]["id"].as_str().unwrap().into(),
        secret_access_key: info["key"]["secret"].as_str().unwrap().into(),
        // moto refuses an IAM user's key with a session token.
        session_token: String::new(),
    };
    let backend = Otlp::start(&["--no-auth".into()]).await;
    let env = vec![
        ("CONTRAIL_EXPORTER_OTLP_ENDPOINT", backend.endpoint()),
        (
            "CONTRAIL_EXPORTER_OTLP_HEADERS",
            format!("x-key=${{{}}}", arn("allowed")),
        ),
        (
            "CONTRAIL_EXPORTER_OTLP_TRACES_HEADERS",
            format!("x-key=${{{}}}", arn("/denied")),
        ),
        ("CONTRAIL_FLUSH", "end".into()),
    ];
    let moto_url = format!("http://127.0.0.1:{}", info["port"]);
    run("denied-e2e", &env, |c| {
        c.aws_endpoint_url = Some(moto_url);
        c.credentials = key;
    })
    .await;
    let results = backend.results().await;
    assert!(by_path(&results, "/v1/traces").is_empty());
    let logs = by_path(&results, "/v1/logs");
    assert!(!logs.is_empty());
    assert!(logs.iter().all(|r| r["headers"]["x-key"] == "a-1111111"));
    let text = bodies(&results);
    assert!(
        text.contains("AccessDenied") && text.contains("allow ssm:GetParameters"),
        "the warning names the permission"
    );
    assert_eq!(
        text.matches(&format!("cannot read {}", arn("/denied")))
            .count(),
        1,
        "reported once"
    );
    assert!(text.contains("secret_unavailable"));
    assert!(!text.contains("a-1111111") && !text.contains("d-2222222"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/install-test-deps.sh"]
async fn a_snapstart_restore_signs_with_the_container_endpoint_credentials() {
    let creds = AwsCredentials {
        access_key_id: "ASIACONTAINER0000001".into(),
        secret_access_key: "ContainerSecretAccessKey0000000000000000".into(),
        session_token: "container-session-token".into(),
    };
    let backend = Otlp::start(&[key_arg(&creds)]).await;
    let env = signed_env(&backend.endpoint(), "gzip");
    let report = run("snapstart-sigv4", &env, |c| {
        c.init_type = InitType::SnapStart;
        c.credentials = creds.clone();
    })
    .await;
    assert!(report.restore_ms.is_some(), "the environment was restored");
    let results = backend.results().await;
    assert!(by_path(&results, "/v1/traces").len() + by_path(&results, "/v1/logs").len() >= 2);
    for r in &results {
        assert_eq!(r["matched"], true, "{}: {}", r["path"], r["why"]);
        assert_eq!(
            r["headers"]["x-amz-security-token"],
            "container-session-token"
        );
    }
}
