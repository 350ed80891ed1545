//! The OpenTelemetry resource describing this Lambda function.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyVal;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::otlp::{kv_int, kv_str};
use crate::config::env::{ConfigError, Env, non_empty, percent_decode};
use crate::config::memory_size_mb;

pub(crate) const RESOURCE_ATTRIBUTES_VAR: &str = "OTEL_RESOURCE_ATTRIBUTES";
pub(crate) const SERVICE_NAME_VAR: &str = "OTEL_SERVICE_NAME";

/// The resource of everything Contrail derives from the Telemetry API.
///
/// - `cloud.provider=aws`, `cloud.platform=aws_lambda`, `cloud.region` (`AWS_REGION`),
///   `faas.name` (`AWS_LAMBDA_FUNCTION_NAME`), `faas.version` (`AWS_LAMBDA_FUNCTION_VERSION`),
///   `faas.max_memory` in bytes (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, in MB);
/// - then every `OTEL_RESOURCE_ATTRIBUTES` entry (`key=value,…`, values percent-decoded),
///   replacing a detected attribute of the same key;
/// - `service.name`: `OTEL_SERVICE_NAME`, else the one in `OTEL_RESOURCE_ATTRIBUTES`, else the
///   function name, else `unknown_service`.
///
/// `faas.instance` is added by the mapper when `platform.initStart` names the instance.
/// `service.instance.id` is left to the function's own SDK, and `telemetry.sdk.*` describe an
/// SDK, which Contrail is not.
pub fn lambda_resource(env: &dyn Env) -> Result<Resource, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut attributes: Vec<KeyValue> = vec![
        kv_str("cloud.provider", "aws"),
        kv_str("cloud.platform", "aws_lambda"),
    ];
    if let Some(region) = non_empty(env, "AWS_REGION") {
        attributes.push(kv_str("cloud.region", region));
    }
    let function_name = non_empty(env, "AWS_LAMBDA_FUNCTION_NAME");
    if let Some(name) = &function_name {
        attributes.push(kv_str("faas.name", name.clone()));
    }
    if let Some(version) = non_empty(env, "AWS_LAMBDA_FUNCTION_VERSION") {
        attributes.push(kv_str("faas.version", version));
    }
    match memory_size_mb(env) {
        Some(Ok(mb)) => attributes.push(kv_int("faas.max_memory", mb * 1024 * 1024)),
        Some(Err(e)) => errors.push(e),
        None => {}
    }
    if let Some(raw) = non_empty(env, RESOURCE_ATTRIBUTES_VAR) {
        match parse_resource_attributes(&raw) {
            Ok(pairs) => {
                for (key, value) in pairs {
                    set(&mut attributes, key, value);
                }
            }
            Err(reason) => errors.push(ConfigError::new(RESOURCE_ATTRIBUTES_VAR, raw, reason)),
        }
    }
    let has_service_name = attributes.iter().any(|kv| kv.key == "service.name");
    if let Some(name) = non_empty(env, SERVICE_NAME_VAR) {
        set(&mut attributes, "service.name".to_owned(), name);
    } else if !has_service_name {
        let name = function_name.unwrap_or_else(|| "unknown_service".to_owned());
        set(&mut attributes, "service.name".to_owned(), name);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Resource {
        attributes,
        ..Default::default()
    })
}

fn set(attributes: &mut Vec<KeyValue>, key: String, value: String) {
    match attributes.iter_mut().find(|kv| kv.key == key) {
        Some(existing) => *existing = kv_str(key, value),
        None => attributes.push(kv_str(key, value)),
    }
}

/// Set (or replace) a string attribute of a resource.
pub(crate) fn set_resource_attribute(resource: &mut Resource, key: &str, value: &str) {
    match resource.attributes.iter_mut().find(|kv| kv.key == key) {
        Some(existing) => {
            let same = matches!(
                existing.value.as_ref().and_then(|v| v.value.as_ref()),
                Some(AnyVal::StringValue(s)) if s == value
            );
            if !same {
                *existing = kv_str(key, value);
            }
        }
        None => resource.attributes.push(kv_str(key, value)),
    }
}

/// The string value of a resource attribute.
pub(crate) fn resource_str<'a>(resource: &'a Resource, key: &str) -> Option<&'a str> {
    let value = resource
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?;
    match &value.value {
        Some(AnyVal::StringValue(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// `key1=value1,key2=value2` per the OpenTelemetry resource SDK specification: entries
/// separated by commas, blanks around keys and values ignored, values percent-encoded.
pub(crate) fn parse_resource_attributes(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for entry in raw.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = entry.split_once('=') else {
            return Err(format!("entry {:?} is not key=value", entry.trim()));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("entry {:?} has an empty key", entry.trim()));
        }
        let value = percent_decode(value.trim())
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or_else(|| format!("value of {key:?} is not valid percent-encoded UTF-8"))?;
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn attrs(resource: &Resource) -> Vec<(String, String)> {
        resource
            .attributes
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(AnyVal::StringValue(s)) => s.clone(),
                    Some(AnyVal::IntValue(i)) => i.to_string(),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect()
    }

    #[test]
    fn lambda_attributes_from_the_environment() {
        let env = [
            ("AWS_REGION", "eu-west-1"),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
        ];
        let r = lambda_resource(&env).unwrap();
        let got = attrs(&r);
        let want: Vec<(String, String)> = [
            ("cloud.provider", "aws"),
            ("cloud.platform", "aws_lambda"),
            ("cloud.region", "eu-west-1"),
            ("faas.name", "orders"),
            ("faas.version", "$LATEST"),
            ("faas.max_memory", "536870912"),
            ("service.name", "orders"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn service_name_precedence() {
        let base = ("AWS_LAMBDA_FUNCTION_NAME", "fn");
        let r = lambda_resource(&[base]).unwrap();
        assert_eq!(resource_str(&r, "service.name"), Some("fn"));
        let r =
            lambda_resource(&[base, (RESOURCE_ATTRIBUTES_VAR, "service.name=from-ra")]).unwrap();
        assert_eq!(resource_str(&r, "service.name"), Some("from-ra"));
        let r = lambda_resource(&[
            base,
            (RESOURCE_ATTRIBUTES_VAR, "service.name=from-ra"),
            (SERVICE_NAME_VAR, "svc"),
        ])
        .unwrap();
        assert_eq!(resource_str(&r, "service.name"), Some("svc"));
        let r = lambda_resource(&[("AWS_REGION", "us-east-1")]).unwrap();
        assert_eq!(resource_str(&r, "service.name"), Some("unknown_service"));
    }

    #[test]
    fn resource_attributes_are_parsed_and_override() {
        let env = [
            ("AWS_REGION", "eu-west-1"),
            (
                RESOURCE_ATTRIBUTES_VAR,
                " deployment.environment.name = prod , team=a%2Cb%3Dc%20d,,cloud.region=local,note=caf%C3%A9",
            ),
        ];
        let r = lambda_resource(&env).unwrap();
        assert_eq!(
            resource_str(&r, "deployment.environment.name"),
            Some("prod")
        );
        assert_eq!(resource_str(&r, "team"), Some("a,b=c d"));
        assert_eq!(resource_str(&r, "cloud.region"), Some("local"));
        assert_eq!(resource_str(&r, "note"), Some("caf\u{e9}"));
    }

    #[test]
    fn every_bad_entry_is_an_error() {
        for bad in ["novalue", "=v", "k=%zz", "k=%4", "k=%ff%fe"] {
            let errors = lambda_resource(&[(RESOURCE_ATTRIBUTES_VAR, bad)]).unwrap_err();
            assert_eq!(errors.len(), 1, "{bad}");
            assert_eq!(errors[0].var, RESOURCE_ATTRIBUTES_VAR);
        }
        let errors = lambda_resource(&[
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "lots"),
            (RESOURCE_ATTRIBUTES_VAR, "x"),
        ])
        .unwrap_err();
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn set_resource_attribute_adds_or_replaces() {
        let mut r = Resource::default();
        set_resource_attribute(&mut r, "faas.instance", "a");
        set_resource_attribute(&mut r, "faas.instance", "b");
        assert_eq!(r.attributes.len(), 1);
        assert_eq!(resource_str(&r, "faas.instance"), Some("b"));
    }
}
