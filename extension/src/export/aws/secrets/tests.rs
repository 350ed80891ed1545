//! The resolver against a scripted JSON backend on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use contrail_testkit::otlp_backend::{Backend, Reply};

use super::*;
use crate::export::aws::credentials::Source;
use crate::export::aws::sigv4::Credentials;

const A: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:a-AbCdEf";
const B: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:b-GhIjKl";

fn json(status: u16, body: String) -> Reply {
    Reply::Status(
        status,
        vec![("content-type", "application/x-amz-json-1.1".into())],
        body.into_bytes(),
    )
}

fn references(values: &[&str]) -> Vec<Reference> {
    values
        .iter()
        .map(|v| reference::parse_arn(v).unwrap())
        .collect()
}

async fn resolve(script: Vec<Reply>, refs: &[&str]) -> (Arc<Secrets>, Backend) {
    let backend = Backend::start(script).await;
    let mut errors = Vec::new();
    let endpoints = Endpoints::from_env(
        &[("AWS_ENDPOINT_URL", backend.endpoint().as_str())],
        &mut errors,
    );
    assert!(errors.is_empty());
    let secrets = Secrets::new(references(refs));
    let credentials = Arc::new(tokio::sync::Mutex::new(Provider::new(Source::Static(
        Credentials {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: "secret".into(),
            session_token: Some("token".into()),
        },
    ))));
    let task = run(
        secrets.clone(),
        credentials,
        endpoints,
        Arc::new(Stats::default()),
    );
    let mut changed = secrets.changed();
    secrets.fetch();
    let local = tokio::task::LocalSet::new();
    let shared = secrets.clone();
    local
        .run_until(async move {
            tokio::task::spawn_local(task);
            // Until no reference is pending any more.
            loop {
                let pending = shared
                    .table
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|(_, state, value)| {
                        matches!(state, State::Pending)
                            || (matches!(
                                state,
                                State::Failed {
                                    permanent: false,
                                    ..
                                }
                            ) && value.is_none())
                    });
                if !pending {
                    break;
                }
                changed.changed().await.unwrap();
            }
        })
        .await;
    (secrets, backend)
}

#[tokio::test]
async fn several_secrets_are_asked_in_one_signed_batch_after_throttling() {
    let throttled = json(
        400,
        r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into(),
    );
    let ok = json(
        200,
        format!(
            r#"{{"SecretValues":[{{"ARN":"{A}","Name":"a","SecretString":"{{\"k\":\"from-json\"}}"}},{{"ARN":"{B}","Name":"b","SecretString":"whole"}}],"Errors":[]}}"#
        ),
    );
    let with_key = format!("{A}#k");
    let (secrets, backend) = resolve(vec![throttled, ok], &[&with_key, B]).await;
    let received = backend.received();
    assert_eq!(received.len(), 2, "one throttled call, one that worked");
    for r in &received {
        assert_eq!(
            r.headers["x-amz-target"],
            "secretsmanager.BatchGetSecretValue"
        );
        let auth = r.headers["authorization"].to_str().unwrap();
        assert!(
            auth.contains("/us-east-1/secretsmanager/aws4_request"),
            "{auth}"
        );
        assert_eq!(r.headers["x-amz-security-token"], "token");
    }
    let pieces = reference::parse_value(&format!("Bearer ${{{with_key}}} ${{{B}}}")).unwrap();
    assert_eq!(
        secrets.lookup(&pieces),
        Lookup::Ready("Bearer from-json whole".into())
    );
    assert_eq!(format!("{secrets:?}"), "Secrets(<values hidden>)");
}

#[tokio::test]
async fn a_refused_batch_falls_back_to_one_call_per_secret_and_a_missing_one_is_unavailable() {
    let denied = json(400, r#"{"__type":"AccessDeniedException","message":"not authorized to perform: secretsmanager:BatchGetSecretValue"}"#.into());
    let a = json(
        200,
        format!(r#"{{"ARN":"{A}","Name":"a","SecretString":"va"}}"#),
    );
    let missing = json(400, r#"{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}"#.into());
    let (secrets, backend) = resolve(vec![denied, a, missing], &[A, B]).await;
    let targets: Vec<String> = backend
        .received()
        .iter()
        .map(|r| r.headers["x-amz-target"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        targets,
        [
            "secretsmanager.BatchGetSecretValue",
            "secretsmanager.GetSecretValue",
            "secretsmanager.GetSecretValue"
        ]
    );
    let a = reference::parse_value(&format!("${{{A}}}")).unwrap();
    let b = reference::parse_value(&format!("${{{B}}}")).unwrap();
    assert_eq!(secrets.lookup(&a), Lookup::Ready("va".into()));
    match secrets.lookup(&b) {
        Lookup::Unavailable(m) => assert!(
            m.contains("ResourceNotFoundException") && m.contains(B),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        hint(
            &reference::parse_arn(B).unwrap(),
            "ResourceNotFoundException"
        )
        .contains("check the ARN")
    );
    assert!(
        hint(&reference::parse_arn(A).unwrap(), "AccessDeniedException")
            .contains("secretsmanager:GetSecretValue")
    );
}
