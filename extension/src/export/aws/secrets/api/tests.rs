#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use super::*;

const A: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:a-AbCdEf";
const B: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:b-GhIjKl";

#[test]
fn errors_are_classified_from_json_and_xml_bodies() {
    type Check = fn(&Failure) -> bool;
    let cases: [(u16, &[u8], Check); 6] = [
        (400, br#"{"__type":"com.amazonaws.secretsmanager#ThrottlingException","message":"Rate exceeded"}"#, |f| matches!(f, Failure::Transient(_))),
        (400, br#"{"__type":"AccessDeniedException","Message":"User: x is not authorized to perform: secretsmanager:GetSecretValue"}"#, |f| matches!(f, Failure::Permanent { code, .. } if code == "AccessDeniedException")),
        (404, br#"{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}"#, |f| matches!(f, Failure::Permanent { code, .. } if code == "ResourceNotFoundException")),
        (403, b"<ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/fn is not authorized to perform: ssm:GetParameters</Message></Error></Errors></ErrorResponse>", |f| matches!(f, Failure::Permanent { code, message } if code == "AccessDenied" && message.contains("ssm:GetParameters"))),
        (403, b"<Error><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error>", |f| matches!(f, Failure::Credentials(_))),
        (503, b"", |f| matches!(f, Failure::Transient(_))),
    ];
    for (status, body, check) in cases {
        let (code, message) = error_code(body);
        let f = classify(status, &code, &message);
        assert!(
            check(&f),
            "{status} {}: {f:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn batch_answers_match_each_arn_by_arn_or_name() {
    let call = Call::BatchGetSecretValue(vec![A.into(), B.into()]);
    assert_eq!(call.target(), "secretsmanager.BatchGetSecretValue");
    let body: serde_json::Value = serde_json::from_slice(&call.body()).unwrap();
    assert_eq!(body["SecretIdList"][1], B);
    let answer = format!(
        r#"{{"SecretValues":[{{"ARN":"{A}","Name":"a","SecretString":"one"}}],"Errors":[{{"SecretId":"{B}","ErrorCode":"ResourceNotFoundException","Message":"nope"}}],"NextToken":null}}"#
    );
    let got = parse_success(&call, answer.as_bytes()).unwrap();
    assert_eq!(got[0], (A.to_owned(), Ok("one".to_owned())));
    assert!(
        matches!(&got[1].1, Err(Failure::Permanent { code, .. }) if code == "ResourceNotFoundException")
    );

    let ssm = "arn:aws:ssm:us-east-1:123456789012:parameter/prod/key";
    let missing = "arn:aws:ssm:us-east-1:123456789012:parameter/gone";
    let call = Call::GetParameters(vec![ssm.into(), missing.into()]);
    let body: serde_json::Value = serde_json::from_slice(&call.body()).unwrap();
    assert_eq!(body["WithDecryption"], true);
    let answer = format!(
        r#"{{"Parameters":[{{"Name":"/prod/key","Type":"SecureString","Value":"v","ARN":"{ssm}"}}],"InvalidParameters":["{missing}"]}}"#
    );
    let got = parse_success(&call, answer.as_bytes()).unwrap();
    assert_eq!(got[0].1, Ok("v".to_owned()));
    assert!(
        matches!(&got[1].1, Err(Failure::Permanent { code, .. }) if code == "ParameterNotFound")
    );

    let single = Call::GetSecretValue(A.into());
    let got = parse_success(&single, br#"{"ARN":"x","SecretBinary":"AAAA"}"#).unwrap();
    assert!(matches!(&got[0].1, Err(Failure::Permanent { code, .. }) if code == "SecretBinary"));
}
