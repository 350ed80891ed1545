//! Secret references inside exporter header values, pure.
//!
//! A header value may hold `${ARN}` anywhere (`Bearer ${arn:…}` works), and any number of them:
//!
//! | form | value |
//! |---|---|
//! | `${arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME}` | the secret's `SecretString` |
//! | `${arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME#KEY}` | the top-level JSON key `KEY` of the `SecretString` (a string as is, another JSON value as JSON) |
//! | `${arn:aws:ssm:REGION:ACCOUNT:parameter/NAME}` | the parameter's value (a `SecureString` decrypted) |
//!
//! The partition may be `aws`, `aws-cn` or `aws-us-gov`; the region of the ARN is the region
//! asked. The text between `${` and `}` that does not start with `arn:` is left as it is.

use std::fmt;

/// Which service holds a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    SecretsManager,
    Ssm,
}

impl Service {
    /// The SigV4 service name and endpoint prefix.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::SecretsManager => "secretsmanager",
            Service::Ssm => "ssm",
        }
    }
}

/// One value to fetch: a secret (and which JSON key of it) or a parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    pub(crate) service: Service,
    /// The ARN without the `#KEY` suffix: what the API is asked for.
    pub(crate) arn: String,
    pub(crate) partition: String,
    pub(crate) region: String,
    pub(crate) json_key: Option<String>,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.json_key {
            Some(key) => write!(f, "{}#{key}", self.arn),
            None => f.write_str(&self.arn),
        }
    }
}

/// A piece of a header value: literal text or a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(String),
    Secret(Reference),
}

/// Split a header value into text and references. `Err` names what is wrong with an ARN.
pub(crate) fn parse_value(value: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${arn:") {
        let Some(len) = rest[start..].find('}') else {
            return Err("`${arn:` has no closing `}`".into());
        };
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].to_owned()));
        }
        pieces.push(Piece::Secret(parse_arn(&rest[start + 2..start + len])?));
        rest = &rest[start + len + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    Ok(pieces)
}

/// Parse `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE[#KEY]`.
pub(crate) fn parse_arn(s: &str) -> Result<Reference, String> {
    let (arn, json_key) = match s.split_once('#') {
        Some((arn, key)) if !key.is_empty() => (arn, Some(key.to_owned())),
        Some(_) => return Err(format!("`{s}`: nothing after `#` (expected a JSON key)")),
        None => (s, None),
    };
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, partition, service, region, account, resource] = fields[..] else {
        return Err(format!(
            "`{arn}` is not an ARN (arn:partition:service:region:account:resource)"
        ));
    };
    if !matches!(partition, "aws" | "aws-cn" | "aws-us-gov") {
        return Err(format!("`{arn}`: unknown partition `{partition}`"));
    }
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!("`{arn}`: `{region}` is not a region"));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{arn}`: `{account}` is not a 12-digit account id"));
    }
    let service = match service {
        "secretsmanager" => {
            let name = resource.strip_prefix("secret:").unwrap_or("");
            if name.is_empty() {
                return Err(format!(
                    "`{arn}`: a Secrets Manager ARN ends with `:secret:NAME`"
                ));
            }
            Service::SecretsManager
        }
        "ssm" => {
            if json_key.is_some() {
                return Err(format!(
                    "`{s}`: a JSON key (`#…`) applies to Secrets Manager secrets only"
                ));
            }
            let name = resource.strip_prefix("parameter").unwrap_or("");
            if name.len() < 2 || !name.starts_with('/') {
                return Err(format!("`{arn}`: an SSM ARN ends with `:parameter/NAME`"));
            }
            Service::Ssm
        }
        other => {
            return Err(format!(
                "`{arn}`: `{other}` is neither secretsmanager nor ssm"
            ));
        }
    };
    Ok(Reference {
        service,
        arn: arn.to_owned(),
        partition: partition.to_owned(),
        region: region.to_owned(),
        json_key,
    })
}

/// The value of a reference, from the secret string or parameter value `raw`.
pub(crate) fn extract(reference: &Reference, raw: &str) -> Result<String, String> {
    let Some(key) = &reference.json_key else {
        return Ok(raw.to_owned());
    };
    let value: serde_json::Value = serde_json::from_str(raw)
        .map_err(|_| format!("the secret is not a JSON object, so it has no key `{key}`"))?;
    match value.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Err(format!("the secret's JSON has no top-level key `{key}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:vendor/key-AbCdEf";

    #[test]
    fn values_split_into_text_and_references() {
        let pieces = parse_value(&format!("Bearer ${{{SECRET}#api_key}}")).unwrap();
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0], Piece::Text("Bearer ".into()));
        let Piece::Secret(r) = &pieces[1] else {
            panic!()
        };
        assert_eq!(r.service, Service::SecretsManager);
        assert_eq!(r.arn, SECRET);
        assert_eq!(r.region, "eu-west-1");
        assert_eq!(r.json_key.as_deref(), Some("api_key"));

        let ssm = "arn:aws-cn:ssm:cn-north-1:123456789012:parameter/prod/otlp/key";
        let pieces = parse_value(&format!("${{{ssm}}}-x")).unwrap();
        let Piece::Secret(r) = &pieces[0] else {
            panic!()
        };
        assert_eq!((r.service, r.partition.as_str()), (Service::Ssm, "aws-cn"));
        assert_eq!(pieces[1], Piece::Text("-x".into()));

        assert_eq!(
            parse_value("plain ${HOME}").unwrap(),
            vec![Piece::Text("plain ${HOME}".into())]
        );
    }

    #[test]
    fn bad_arns_say_what_is_wrong() {
        let cases = [
            (
                "${arn:aws:secretsmanager:eu-west-1:123456789012:secret:x",
                "closing",
            ),
            ("${arn:aws:s3:eu-west-1:123456789012:bucket}", "neither"),
            (
                "${arn:aws:secretsmanager:eu-west-1:1234:secret:x}",
                "12-digit",
            ),
            (
                "${arn:aws:secretsmanager:eu-west-1:123456789012:key/x}",
                ":secret:NAME",
            ),
            (
                "${arn:aws:ssm:eu-west-1:123456789012:parameter/x#k}",
                "Secrets Manager secrets only",
            ),
            (
                "${arn:aws:ssm:eu-west-1:123456789012:parameter}",
                ":parameter/NAME",
            ),
            (
                "${arn:other:ssm:eu-west-1:123456789012:parameter/x}",
                "partition",
            ),
            (
                "${arn:aws:secretsmanager:EU:123456789012:secret:x}",
                "region",
            ),
            (
                "${arn:aws:secretsmanager:eu-west-1:123456789012:secret:x#}",
                "JSON key",
            ),
        ];
        for (value, expected) in cases {
            let err = parse_value(value).unwrap_err();
            assert!(err.contains(expected), "{value}: {err}");
        }
    }

    #[test]
    fn json_keys_are_taken_from_the_secret_string() {
        let r = parse_arn(&format!("{SECRET}#token")).unwrap();
        assert_eq!(extract(&r, r#"{"token":"abc","n":1}"#).unwrap(), "abc");
        let n = parse_arn(&format!("{SECRET}#n")).unwrap();
        assert_eq!(extract(&n, r#"{"token":"abc","n":1}"#).unwrap(), "1");
        assert!(
            extract(&r, r#"{"other":"x"}"#)
                .unwrap_err()
                .contains("no top-level key `token`")
        );
        assert!(
            extract(&r, "not json")
                .unwrap_err()
                .contains("not a JSON object")
        );
        let whole = parse_arn(SECRET).unwrap();
        assert_eq!(extract(&whole, "raw value").unwrap(), "raw value");
    }
}
