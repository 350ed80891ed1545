//! The signer against AWS's SigV4 test suite, and its own properties.
//!
//! The suite (`aws-signing-test-suite/v4`, Apache-2.0, from awslabs/aws-c-auth, with two cases
//! the AWS SDK for Rust added) is not kept in this repository: `scripts/install-test-deps.sh`
//! takes it from the pinned crates.io package `aws-sigv4` 1.3.6 (sha256-checked) and unpacks it
//! into `.tools/aws-signing-test-suite/`, with the package's `LICENSE`. The test that reads it is
//! ignored in a plain `cargo test` and fails when the folder is missing.
//!
//! Three small vectors run in every `cargo test`: AWS's `get-vanilla` (the example of the SigV4
//! documentation) and two export requests shaped as Contrail sends them (a gzipped traces body
//! with a session token, a logs body with the CloudWatch Logs headers and a value with a run of
//! spaces). Their expected `Authorization` values were computed with botocore 1.43.127's
//! `SigV4Auth` (the pinned version of `scripts/requirements-test.txt`) on the same method, URL,
//! headers, body, credentials and time.
//!
//! Every case's header variant runs (canonical request, string to sign, signature and the
//! `Authorization` header of the signed request), session-token cases included; of
//! `double-encode-path`, whose signed request was made with another key, only the canonical
//! request. Skipped, because
//! Contrail never sends such requests: the `query-*` files of each case (presigned URLs, where the
//! signature goes into the query string), and the `v4a` folder (SigV4A, ECDSA P-256).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::intake::telemetry::time::parse_date_time;

const SUITE: &str = ".tools/aws-signing-test-suite/v4";
const ACCESS_KEY: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// Cases whose signed request was made with a key and a date other than their canonical
/// request's (`ANOTREAL`, 2015 against 2021): only the canonical request can be checked.
const CANONICAL_ONLY: &[&str] = &["double-encode-path"];
/// The package's copy writes this case's request line with `%20` where aws-c-auth's original
/// (and its `-unnormalized` twin, with the same expected canonical URI) has a raw space: the
/// case runs with the original request line.
const RAW_SPACE: &str = "get-space-normalized";

/// One case of the suite.
struct Case {
    name: String,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    region: String,
    service: String,
    amz_date: String,
    token: Option<String>,
    /// The token is added after signing and not signed (STS only; Contrail always signs it).
    omit_token: bool,
    normalize: bool,
    sign_body: bool,
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

/// `request.txt`: the request line, `Name:value` lines (a line starting with white space
/// continues the previous value), a blank line, the body.
fn parse_request(text: &str) -> (String, String, String, Vec<(String, String)>, Vec<u8>) {
    let (head, body) = match text.split_once("\n\n") {
        Some((h, b)) => (h, b.as_bytes().to_vec()),
        None => (text.trim_end_matches('\n'), Vec::new()),
    };
    let mut lines = head.lines();
    let request_line = lines.next().unwrap();
    let (method, rest) = request_line.split_once(' ').unwrap();
    let target = rest.strip_suffix(" HTTP/1.1").unwrap_or(rest);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let last = headers.last_mut().unwrap();
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else {
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_owned(), value.to_owned()));
        }
    }
    (
        method.to_owned(),
        path.to_owned(),
        query.to_owned(),
        headers,
        body,
    )
}

/// The `Authorization` header of `header-signed-request.txt`.
fn expected_authorization(dir: &Path) -> String {
    read(dir, "header-signed-request.txt")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Authorization:"))
        .unwrap()
        .trim()
        .to_owned()
}

fn load(dir: &Path) -> Case {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let (method, mut path, query, mut headers, body) =
        parse_request(&read(dir, "request.txt").unwrap());
    if name == RAW_SPACE {
        assert!(path.contains("%20"), "{name}: {path}");
        path = path.replace("%20", " ");
    }
    let date_header = headers
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case("x-amz-date"));
    // (region, service, X-Amz-Date, token, omit the token, normalize, sign the body)
    let (region, service, amz_date, token, omit_token, normalize, sign_body) =
        match read(dir, "context.json") {
            Some(context) => {
                let c: serde_json::Value = serde_json::from_str(&context).unwrap();
                let creds = &c["credentials"];
                assert_eq!(creds["access_key_id"], ACCESS_KEY, "{name}");
                assert_eq!(creds["secret_access_key"], SECRET, "{name}");
                let ts = parse_date_time(c["timestamp"].as_str().unwrap()).unwrap();
                (
                    c["region"].as_str().unwrap().to_owned(),
                    c["service"].as_str().unwrap().to_owned(),
                    amz_date(UNIX_EPOCH + Duration::from_nanos(ts)),
                    creds["token"].as_str().map(str::to_owned),
                    c["omit_session_token"].as_bool().unwrap_or(false),
                    c["normalize"].as_bool().unwrap_or(true),
                    c["sign_body"].as_bool().unwrap_or(false),
                )
            }
            // The two cases the AWS SDK for Rust added have no context: their scope is in the
            // signed request, their signing time in the canonical request (in
            // `double-encode-path` it differs from the request's own X-Amz-Date, which the
            // signer replaces).
            None => {
                let auth = expected_authorization(dir);
                let scope = auth.split("Credential=").nth(1).unwrap();
                let parts: Vec<&str> = scope.split(',').next().unwrap().split('/').collect();
                let signed_at = read(dir, "header-canonical-request.txt")
                    .unwrap()
                    .lines()
                    .find_map(|l| l.strip_prefix("x-amz-date:"))
                    .unwrap()
                    .to_owned();
                let (region, service) = (parts[2].to_owned(), parts[3].to_owned());
                (region, service, signed_at, None, false, true, false)
            }
        };
    let case = Case {
        name,
        method,
        path,
        query,
        headers: Vec::new(),
        body,
        region,
        service,
        amz_date,
        token,
        omit_token,
        normalize,
        sign_body,
    };
    // The signer adds X-Amz-Date (and the token) itself.
    if let Some(i) = date_header {
        headers.remove(i);
    }
    Case { headers, ..case }
}

fn suite_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    root.join(SUITE)
}

/// Sign `case` as Contrail signs (the token, when used, is signed), returning the canonical
/// request, the string to sign, the signature and the `Authorization` header.
fn sign_case(case: &Case) -> (String, String, String, String) {
    let body_hash = sha256_hex([case.body.as_slice()]);
    let mut headers: Vec<(&str, &str)> = case
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if case.sign_body {
        headers.push(("x-amz-content-sha256", &body_hash));
    }
    headers.push(("x-amz-date", &case.amz_date));
    if let Some(token) = &case.token
        && !case.omit_token
    {
        headers.push(("x-amz-security-token", token));
    }
    let payload = if case.sign_body {
        body_hash.as_str()
    } else {
        EMPTY_SHA256
    };
    let (canonical, signed) = canonical_request(&Parts {
        method: &case.method,
        path: &case.path,
        query: &case.query,
        headers: &headers,
        payload_sha256: payload,
        normalize: case.normalize,
    });
    let scope = scope(&case.amz_date, &case.region, &case.service);
    let sts = string_to_sign(&case.amz_date, &scope, &canonical);
    let key = signing_key(SECRET, &case.amz_date[..8], &case.region, &case.service);
    let sig = signature(&key, &sts);
    let auth = authorization(ACCESS_KEY, &scope, &signed, &sig);
    (canonical, sts, sig, auth)
}

#[test]
#[ignore = "needs scripts/install-test-deps.sh"]
fn every_header_signing_case_of_the_aws_sigv4_test_suite_passes() {
    let dir = suite_dir();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run scripts/install-test-deps.sh to unpack the SigV4 test suite",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("request.txt").is_file())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 40,
        "only {} cases in {}",
        cases.len(),
        dir.display()
    );
    let mut tokens = 0;
    for path in &cases {
        let case = load(path);
        let (canonical, sts, sig, auth) = sign_case(&case);
        let name = &case.name;
        assert_eq!(
            canonical,
            read(path, "header-canonical-request.txt").unwrap(),
            "{name}: canonical request"
        );
        if let Some(expected) = read(path, "header-string-to-sign.txt") {
            assert_eq!(sts, expected.trim_end(), "{name}: string to sign");
        }
        if let Some(expected) = read(path, "header-signature.txt") {
            assert_eq!(sig, expected.trim(), "{name}: signature");
        }
        if CANONICAL_ONLY.contains(&name.as_str()) {
            assert!(
                expected_authorization(path).contains("Credential=ANOTREAL/"),
                "{name}"
            );
        } else {
            assert_eq!(auth, expected_authorization(path), "{name}: Authorization");
        }
        tokens += usize::from(case.token.is_some());

        // The same request through the export signer, where its options are Contrail's:
        // normalised path, payload hashed, token signed.
        if case.normalize
            && !case.sign_body
            && !case.omit_token
            && !CANONICAL_ONLY.contains(&name.as_str())
        {
            let credentials = Credentials {
                access_key_id: ACCESS_KEY.to_owned(),
                secret_access_key: SECRET.to_owned(),
                session_token: case.token.clone(),
            };
            let headers: Vec<(&str, &str)> = case
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let target = if case.query.is_empty() {
                case.path.clone()
            } else {
                format!("{}?{}", case.path, case.query)
            };
            let mut signer = Signer::new(&case.region, &case.service);
            let signed = signer.sign(
                &credentials,
                time_of(&case.amz_date),
                &case.method,
                &target,
                &headers,
                EMPTY_SHA256,
            );
            assert_eq!(signed.authorization, auth, "{name}: Signer");
            assert_eq!(signed.amz_date, case.amz_date, "{name}: X-Amz-Date");
            assert_eq!(signed.security_token, case.token, "{name}: token");
        }
    }
    assert!(tokens >= 3, "the session-token cases ran ({tokens})");
}

/// One request signed with [`Signer`] at an `X-Amz-Date`.
fn sign_small(
    credentials: &Credentials,
    (region, service): (&str, &str),
    at: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Signed {
    Signer::new(region, service).sign(
        credentials,
        time_of(at),
        "POST",
        target,
        headers,
        &sha256_hex([body]),
    )
}

/// gzip (mtime 0) of the bytes 0..32, as Python's `gzip.compress` wrote it: the body sent, and
/// so the bytes hashed.
const GZIPPED_HEX: &str = "1f8b08000000000002036360646266616563e7e0e4e2e6e1e5e31710141216111513979094929691959307008a7e269120000000";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).unwrap())
        .collect()
}

#[test]
fn get_vanilla_matches_the_signature_of_the_sigv4_documentation() {
    let signed = Signer::new("us-east-1", "service").sign(
        &Credentials::new(ACCESS_KEY, SECRET, None),
        time_of("20150830T123600Z"),
        "GET",
        "/",
        &[("Host", "example.amazonaws.com")],
        EMPTY_SHA256,
    );
    assert_eq!(
        signed.authorization,
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
         SignedHeaders=host;x-amz-date, \
         Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    );
    assert_eq!(signed.amz_date, "20150830T123600Z");
    assert_eq!(signed.security_token, None);
}

#[test]
fn a_gzipped_traces_export_with_a_session_token_matches_botocore() {
    let body = unhex(GZIPPED_HEX);
    assert_eq!(
        sha256_hex([body.as_slice()]),
        "0ae77d8f4ed7a74bc9a3f4a9ba670746004eb74fe773e9d143f80ec65ff0e053"
    );
    let credentials =
        Credentials::new("ASIAEXAMPLE", SECRET, Some("FwoGZXIvYXdzEXAMPLE//token+/="));
    // The same traces request but for its body.
    let sign_traces = |body: &[u8]| {
        sign_small(
            &credentials,
            ("us-east-1", "xray"),
            "20260101T000000Z",
            "/v1/traces",
            &[
                ("Host", "xray.us-east-1.amazonaws.com"),
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "gzip"),
            ],
            body,
        )
    };
    let signed = sign_traces(&body);
    assert_eq!(
        signed.authorization,
        "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20260101/us-east-1/xray/aws4_request, \
         SignedHeaders=content-encoding;content-type;host;x-amz-date;x-amz-security-token, \
         Signature=c2b1888109dcf5cde30d067e01df89b0f35e7bb60534355f17a283a6092d326b"
    );
    assert_eq!(
        signed.security_token.as_deref(),
        Some("FwoGZXIvYXdzEXAMPLE//token+/=")
    );
    // One byte more of body, or another secret, is another signature.
    let mut longer = body.clone();
    longer.push(0);
    let other_body = sign_traces(&longer);
    assert_ne!(other_body.authorization, signed.authorization);
}

#[test]
fn a_logs_export_with_the_log_group_and_stream_headers_matches_botocore() {
    let signed = sign_small(
        &Credentials::new(ACCESS_KEY, SECRET, None),
        ("eu-west-1", "logs"),
        "20260304T050607Z",
        "/v1/logs",
        &[
            ("Host", "logs.eu-west-1.amazonaws.com"),
            ("Content-Type", "application/x-protobuf"),
            ("x-aws-log-group", "/aws/lambda/my-fn"),
            // Signed as `contrail 2026/03/04`: inner runs of spaces become one.
            ("x-aws-log-stream", "contrail  2026/03/04"),
        ],
        b"logs-body",
    );
    assert_eq!(
        signed.authorization,
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260304/eu-west-1/logs/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date;x-aws-log-group;x-aws-log-stream, \
         Signature=c345a0d8e84f57c8b7d78937ab6b1461959cc05ade274c86bb2f7257ba77091e"
    );
    assert_eq!(signed.security_token, None);
}

/// The `SystemTime` of an `X-Amz-Date`.
fn time_of(amz_date: &str) -> std::time::SystemTime {
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &amz_date[0..4],
        &amz_date[4..6],
        &amz_date[6..8],
        &amz_date[9..11],
        &amz_date[11..13],
        &amz_date[13..15]
    );
    UNIX_EPOCH + Duration::from_nanos(parse_date_time(&rfc3339).unwrap())
}

#[test]
fn amz_date_is_utc_to_the_second() {
    assert_eq!(amz_date(time_of("20150830T123600Z")), "20150830T123600Z");
    assert_eq!(
        amz_date(time_of("20240229T235959Z") + Duration::from_millis(999)),
        "20240229T235959Z"
    );
    assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
}

#[test]
fn the_signer_signs_the_token_and_reuses_its_key_only_for_the_same_secret_and_day() {
    let creds = |secret: &str| Credentials {
        access_key_id: "ASIAEXAMPLE".into(),
        secret_access_key: secret.into(),
        session_token: Some("token".into()),
    };
    let headers = [
        ("host", "xray.us-east-1.amazonaws.com"),
        ("content-type", "application/x-protobuf"),
    ];
    let mut signer = Signer::new("us-east-1", "xray");
    let t = time_of("20260101T000000Z");
    let a = signer.sign(
        &creds("one"),
        t,
        "POST",
        "/v1/traces",
        &headers,
        EMPTY_SHA256,
    );
    assert!(
        a.authorization
            .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"),
        "{}",
        a.authorization
    );
    assert!(
        a.authorization
            .contains("Credential=ASIAEXAMPLE/20260101/us-east-1/xray/aws4_request")
    );
    let b = signer.sign(
        &creds("two"),
        t,
        "POST",
        "/v1/traces",
        &headers,
        EMPTY_SHA256,
    );
    assert_ne!(
        a.authorization, b.authorization,
        "a new secret gets a new key"
    );
    let mut fresh = Signer::new("us-east-1", "xray");
    let c = fresh.sign(
        &creds("two"),
        t,
        "POST",
        "/v1/traces",
        &headers,
        EMPTY_SHA256,
    );
    assert_eq!(b, c);
    let next_day = signer.sign(
        &creds("two"),
        t + Duration::from_secs(86_400),
        "POST",
        "/v1/traces",
        &headers,
        EMPTY_SHA256,
    );
    assert!(next_day.authorization.contains("/20260102/"));
}

#[test]
fn credentials_debug_hides_the_secret_and_the_token() {
    let c = Credentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "very-secret".into(),
        session_token: Some("session-secret".into()),
    };
    let shown = format!("{c:?}");
    assert!(shown.contains("AKIDEXAMPLE"));
    assert!(
        !shown.contains("very-secret") && !shown.contains("session-secret"),
        "{shown}"
    );
}
