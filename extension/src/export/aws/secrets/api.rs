//! The Secrets Manager and SSM Parameter Store calls, pure: request bodies, answers, and what
//! an error means. Both speak JSON 1.1 (`POST /`, `X-Amz-Target`).
//!
//! | call | when | at most |
//! |---|---|---|
//! | `secretsmanager.GetSecretValue` | one secret of a region, or a batch refused | 1 |
//! | `secretsmanager.BatchGetSecretValue` | several secrets of a region | 20 ARNs |
//! | `AmazonSSM.GetParameters` (`WithDecryption`) | parameters of a region | 10 names |
//!
//! An error's code is `__type` of a JSON body (namespace and `:` suffix cut) or `<Code>` of an
//! XML one. Throttling codes, 5xx and `InternalServiceError`/`InternalServerError` are
//! [`Failure::Transient`]; refused or expired credentials are [`Failure::Credentials`]
//! (fetched again, then retried); anything else — not found, access denied, decryption — is
//! [`Failure::Permanent`].

use serde_json::{Map, Value};

use crate::export::aws::client::{field, text};
use crate::export::body::truncate;

/// Codes AWS SDKs treat as throttling.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
];

/// Codes that mean the credentials themselves were refused.
const CREDENTIALS: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
];

/// Secrets per `BatchGetSecretValue`.
pub(crate) const BATCH_SECRETS: usize = 20;
/// Names per `GetParameters`.
pub(crate) const BATCH_PARAMETERS: usize = 10;

/// The value of each ARN asked (or why it is missing), in the order asked.
pub(crate) type Values = Vec<(String, Result<String, Failure>)>;

/// One call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    GetSecretValue(String),
    BatchGetSecretValue(Vec<String>),
    GetParameters(Vec<String>),
}

/// Why a value could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Asking again will not help until something is changed (the code, the message).
    Permanent { code: String, message: String },
    /// Worth asking again after a pause.
    Transient(String),
    /// The credentials were refused: fetch them again, then ask again.
    Credentials(String),
}

impl Failure {
    /// A permanent failure of a fixed code and message: one copy of the two allocations for
    /// the answers' several such cases.
    #[inline(never)]
    fn permanent(code: &str, message: &str) -> Failure {
        Failure::Permanent {
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }
}

impl Call {
    pub(crate) fn target(&self) -> &'static str {
        match self {
            Call::GetSecretValue(_) => "secretsmanager.GetSecretValue",
            Call::BatchGetSecretValue(_) => "secretsmanager.BatchGetSecretValue",
            Call::GetParameters(_) => "AmazonSSM.GetParameters",
        }
    }

    pub(crate) fn body(&self) -> Vec<u8> {
        // Built by hand rather than with `json!`, which would serialise each list through
        // `serde_json::to_value` (more code for the same bytes).
        let strings =
            |list: &[String]| Value::Array(list.iter().cloned().map(Value::String).collect());
        let mut body = Map::new();
        match self {
            Call::GetSecretValue(arn) => {
                body.insert("SecretId".into(), Value::String(arn.clone()));
            }
            Call::BatchGetSecretValue(arns) => {
                body.insert("SecretIdList".into(), strings(arns));
            }
            Call::GetParameters(names) => {
                body.insert("Names".into(), strings(names));
                body.insert("WithDecryption".into(), Value::Bool(true));
            }
        }
        Value::Object(body).to_string().into_bytes()
    }

    /// The ARNs the call asks for.
    pub(crate) fn arns(&self) -> Vec<String> {
        match self {
            Call::GetSecretValue(arn) => vec![arn.clone()],
            Call::BatchGetSecretValue(arns) | Call::GetParameters(arns) => arns.clone(),
        }
    }
}

/// The code and message of an error answer, JSON or XML.
pub(crate) fn error_code(body: &[u8]) -> (String, String) {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let raw = field(&v, "__type")
            .or_else(|| field(&v, "code"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let code = raw.rsplit('#').next().unwrap_or(raw);
        let code = code.split(':').next().unwrap_or(code);
        let message = field(&v, "message")
            .or_else(|| field(&v, "Message"))
            .and_then(Value::as_str)
            .unwrap_or("");
        return (code.to_owned(), truncate(message));
    }
    let text = String::from_utf8_lossy(body);
    (
        between(&text, "<Code>", "</Code>")
            .unwrap_or_default()
            .to_owned(),
        truncate(between(&text, "<Message>", "</Message>").unwrap_or(&text)),
    )
}

/// The text between the first `open` and the `close` after it.
fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let (_, rest) = text.split_once(open)?;
    Some(rest.split_once(close)?.0)
}

/// What an error code (with its HTTP status) means.
pub(crate) fn classify(status: u16, code: &str, message: &str) -> Failure {
    let lower = message.to_ascii_lowercase();
    if THROTTLING.contains(&code) || status == 429 {
        Failure::Transient(format!("throttled ({code}): {message}"))
    } else if CREDENTIALS.contains(&code)
        || lower.contains("security token included in the request is")
    {
        Failure::Credentials(format!("{code}: {message}"))
    } else if status >= 500 || code == "InternalServiceError" || code == "InternalServerError" {
        Failure::Transient(format!("HTTP {status} {code}: {message}"))
    } else {
        Failure::Permanent {
            code: if code.is_empty() {
                format!("HTTP {status}")
            } else {
                code.to_owned()
            },
            message: message.to_owned(),
        }
    }
}

/// The values of a successful answer, by ARN (each a value or why it is missing), in the
/// order asked.
pub(crate) fn parse_success(call: &Call, body: &[u8]) -> Result<Values, Failure> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Failure::Transient(format!("the answer is not JSON ({e})")))?;
    let mut found: Vec<(String, Result<String, Failure>)> = Vec::new();
    let secret_value = |entry: &Value| -> Result<String, Failure> {
        match (field(entry, "SecretString"), field(entry, "SecretBinary")) {
            (Some(Value::String(s)), _) => Ok(s.clone()),
            (_, Some(Value::String(_))) => Err(Failure::permanent(
                "SecretBinary",
                "the secret holds binary data, not a string",
            )),
            _ => Err(Failure::permanent(
                "NoSecretString",
                "the answer has no SecretString",
            )),
        }
    };
    match call {
        Call::GetSecretValue(arn) => found.push((arn.clone(), secret_value(&v))),
        Call::BatchGetSecretValue(_) => {
            for entry in field(&v, "SecretValues")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                found.push((keys(entry), secret_value(entry)));
            }
            for entry in field(&v, "Errors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let id = text(entry, "SecretId").to_owned();
                let code = text(entry, "ErrorCode");
                let message = text(entry, "Message");
                found.push((id, Err(classify(400, code, &truncate(message)))));
            }
        }
        Call::GetParameters(_) => {
            for p in field(&v, "Parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let value = field(p, "Value")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| Failure::permanent("NoValue", "the parameter has no value"));
                found.push((keys(p), value));
            }
            for name in field(&v, "InvalidParameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                found.push((
                    name.as_str().unwrap_or_default().to_owned(),
                    Err(Failure::permanent(
                        "ParameterNotFound",
                        "the parameter does not exist (GetParameters lists it as invalid)",
                    )),
                ));
            }
        }
    }
    // Answer each ARN asked, matched by ARN, or by the name the ARN ends with.
    Ok(call
        .arns()
        .into_iter()
        .map(|arn| {
            let hit = found.iter().find(|(keys, _)| {
                keys.split('\n')
                    .any(|k| !k.is_empty() && (k == arn || arn_names(&arn, k)))
            });
            let result = match hit {
                Some((_, r)) => r.clone(),
                None => Err(Failure::permanent(
                    "Missing",
                    "the answer does not mention it",
                )),
            };
            (arn, result)
        })
        .collect())
}

/// What an answer's entry is matched by below: its ARN and its name, a line each.
fn keys(entry: &Value) -> String {
    [text(entry, "ARN"), text(entry, "Name")].join("\n")
}

/// Whether `name` is the name of the secret or parameter `arn` names.
fn arn_names(arn: &str, name: &str) -> bool {
    if let Some(rest) = arn.split_once(":secret:").map(|(_, r)| r) {
        return rest == name;
    }
    if let Some(rest) = arn.split_once(":parameter").map(|(_, r)| r) {
        return rest == name || rest.strip_prefix('/') == Some(name);
    }
    false
}

#[cfg(test)]
mod tests;
