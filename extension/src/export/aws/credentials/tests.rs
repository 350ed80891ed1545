#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::time::Duration;

use contrail_testkit::otlp_backend::{Backend, Reply};
use tokio::time::Instant;

use super::*;

#[test]
fn the_environment_wins_and_a_container_url_must_be_one_the_sdks_use() {
    let env = [
        (ACCESS_KEY_ID_VAR, "AKID"),
        (SECRET_ACCESS_KEY_VAR, "secret"),
        (SESSION_TOKEN_VAR, "token"),
        (CONTAINER_URI_VAR, "http://127.0.0.1:1/creds"),
    ];
    let Source::Static(c) = Source::from_env(&env).unwrap() else {
        panic!()
    };
    assert_eq!(c.session_token.as_deref(), Some("token"));

    let env = [
        (
            CONTAINER_URI_VAR,
            "http://127.0.0.1:9/2021-04-23/credentials",
        ),
        (CONTAINER_TOKEN_VAR, "tok"),
    ];
    let Source::Container { token, .. } = Source::from_env(&env).unwrap() else {
        panic!()
    };
    assert_eq!(token, Token::Value("tok".into()));
    assert_eq!(format!("{token:?}"), "Token(<redacted>)");
    for ok in [
        "http://169.254.170.2/v2/credentials",
        "https://creds.example.com/x",
        "http://[::1]:8/x",
        "http://localhost/x",
    ] {
        assert!(Source::from_env(&[(CONTAINER_URI_VAR, ok)]).is_ok(), "{ok}");
    }
    let err = Source::from_env(&[(CONTAINER_URI_VAR, "http://10.0.0.1/creds")]).unwrap_err();
    assert!(err.reason.contains("loopback"), "{err}");
    assert_eq!(Source::from_env(&[("X", "y")]).unwrap(), Source::Missing);
}

fn answer(expiration: &str) -> Reply {
    let body = format!(
        r#"{{"AccessKeyId":"ASIAFETCHED","SecretAccessKey":"s3cr3t","Token":"tok","Expiration":"{expiration}"}}"#
    );
    Reply::Status(
        200,
        vec![("content-type", "application/json".into())],
        body.into_bytes(),
    )
}

#[tokio::test]
async fn container_credentials_are_fetched_with_the_token_kept_until_near_expiry_and_dropped_on_invalidate()
 {
    let far = "2099-01-01T00:00:00Z";
    let backend = Backend::start(vec![answer(far), answer(far)]).await;
    let uri: Uri = format!("{}/2021-04-23/credentials", backend.endpoint())
        .parse()
        .unwrap();
    let mut provider = Provider::new(Source::Container {
        uri,
        token: Token::Value("auth-token".into()),
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let c = provider.get(deadline).await.unwrap();
    assert_eq!(c.access_key_id, "ASIAFETCHED");
    assert_eq!(c.session_token.as_deref(), Some("tok"));
    provider.get(deadline).await.unwrap();
    assert_eq!(backend.received().len(), 1, "kept while far from expiry");
    let first = &backend.received()[0];
    assert_eq!(first.headers["authorization"], "auth-token");
    assert_eq!(first.path, "/2021-04-23/credentials");
    provider.invalidate();
    provider.get(deadline).await.unwrap();
    assert_eq!(provider.fetches, 2);
}

#[tokio::test]
async fn credentials_about_to_expire_are_fetched_again_and_failures_are_errors() {
    let soon = {
        let t = SystemTime::now() + Duration::from_secs(60);
        let s = crate::export::aws::sigv4::amz_date(t);
        format!(
            "{}-{}-{}T{}:{}:{}Z",
            &s[0..4],
            &s[4..6],
            &s[6..8],
            &s[9..11],
            &s[11..13],
            &s[13..15]
        )
    };
    let backend = Backend::start(vec![
        answer(&soon),
        answer(&soon),
        Reply::Status(500, vec![], b"down".to_vec()),
        Reply::Status(200, vec![], b"not json".to_vec()),
    ])
    .await;
    let uri: Uri = format!("{}/creds", backend.endpoint()).parse().unwrap();
    let mut provider = Provider::new(Source::Container {
        uri,
        token: Token::None,
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    provider.get(deadline).await.unwrap();
    provider.get(deadline).await.unwrap();
    assert_eq!(
        backend.received().len(),
        2,
        "less than REFRESH_BEFORE left: fetched again"
    );
    // A failing endpoint: the still-valid credentials serve.
    assert!(provider.get(deadline).await.is_ok());
    provider.invalidate();
    let err = provider.get(deadline).await.unwrap_err();
    assert!(
        err.to_string().contains("not the credentials JSON"),
        "{err}"
    );
    assert_eq!(
        Provider::new(Source::Missing)
            .get(deadline)
            .await
            .unwrap_err(),
        CredentialsError::Missing
    );
}
