//! Small builders for OTLP protobuf values, the severity names, and the one hash.

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyVal;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use serde_json::Value;

/// The instrumentation scope of everything Contrail derives from the Telemetry API.
pub(super) const SCOPE_NAME: &str = "contrail";

pub(super) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

pub(super) fn any(value: AnyVal) -> Option<AnyValue> {
    Some(AnyValue { value: Some(value) })
}

pub(super) fn kv(key: impl Into<String>, value: AnyVal) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: any(value),
        ..Default::default()
    }
}

pub(super) fn kv_str(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
    kv(key, AnyVal::StringValue(value.into()))
}

pub(super) fn kv_int(key: impl Into<String>, value: i64) -> KeyValue {
    kv(key, AnyVal::IntValue(value))
}

pub(super) fn kv_bool(key: impl Into<String>, value: bool) -> KeyValue {
    kv(key, AnyVal::BoolValue(value))
}

pub(super) fn kv_str_array(key: impl Into<String>, values: &[String]) -> KeyValue {
    kv(
        key,
        AnyVal::ArrayValue(ArrayValue {
            values: values
                .iter()
                .map(|v| AnyValue {
                    value: Some(AnyVal::StringValue(v.clone())),
                })
                .collect(),
        }),
    )
}

/// A JSON value as a typed OTLP value: strings, booleans, integers (that fit `i64`), doubles,
/// arrays and objects keep their types; `null` becomes an empty value.
pub(super) fn json_to_any(value: Value) -> AnyValue {
    AnyValue {
        value: match value {
            Value::Null => None,
            Value::Bool(b) => Some(AnyVal::BoolValue(b)),
            Value::Number(n) => Some(match n.as_i64() {
                Some(i) => AnyVal::IntValue(i),
                None => AnyVal::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
            }),
            Value::String(s) => Some(AnyVal::StringValue(s)),
            Value::Array(items) => Some(AnyVal::ArrayValue(ArrayValue {
                values: items.into_iter().map(json_to_any).collect(),
            })),
            Value::Object(map) => Some(AnyVal::KvlistValue(KeyValueList {
                values: map
                    .into_iter()
                    .map(|(k, v)| KeyValue {
                        key: k,
                        value: Some(json_to_any(v)),
                        ..Default::default()
                    })
                    .collect(),
            })),
        },
    }
}

/// Push a JSON key as attributes: an object is flattened one level (`key.child`), anything else
/// is one typed attribute.
pub(super) fn push_json_attribute(out: &mut Vec<KeyValue>, key: String, value: Value) {
    match value {
        Value::Object(map) => {
            for (child, v) in map {
                out.push(KeyValue {
                    key: format!("{key}.{child}"),
                    value: Some(json_to_any(v)),
                    ..Default::default()
                });
            }
        }
        other => out.push(KeyValue {
            key,
            value: Some(json_to_any(other)),
            ..Default::default()
        }),
    }
}

/// Milliseconds (as Lambda reports them) to nanoseconds, saturating; negative or NaN → 0.
pub(super) fn ms_to_ns(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 {
        let ns = ms * 1_000_000.0;
        if ns >= u64::MAX as f64 {
            u64::MAX
        } else {
            ns.round() as u64
        }
    } else {
        0
    }
}

/// The severity text of a severity number: the level's name, as the OpenTelemetry log data
/// model spells it (`INFO` for `INFO` to `INFO4`).
pub(super) fn severity_text(severity: SeverityNumber) -> &'static str {
    match severity as i32 {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => "",
    }
}

/// FNV-1a: a stable 64-bit hash of a few bytes (ids derived from names, never secrets).
pub(super) fn fnv1a<'a>(bytes: impl IntoIterator<Item = &'a u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn severity_text_names_the_level_of_every_number() {
        assert_eq!(severity_text(SeverityNumber::Info), "INFO");
        assert_eq!(severity_text(SeverityNumber::Info2), "INFO");
        assert_eq!(severity_text(SeverityNumber::Warn), "WARN");
        assert_eq!(severity_text(SeverityNumber::Error), "ERROR");
        assert_eq!(severity_text(SeverityNumber::Fatal4), "FATAL");
        assert_eq!(severity_text(SeverityNumber::Unspecified), "");
    }
}
