//! `ReceiverConfig::from_env`: defaults, the off switch, and one error per bad variable.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::time::Duration;

use crate::intake::receiver::ReceiverConfig;
use crate::intake::receiver::config::DEFAULT_MAX_BODY_BYTES;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn defaults_listen_on_loopback_4318_with_a_4_mib_cap() {
    let config = ReceiverConfig::from_env(&[("UNRELATED", "1")]).unwrap();
    assert_eq!(config.endpoint, Some(addr("127.0.0.1:4318")));
    assert_eq!(config.grpc_endpoint, Some(addr("127.0.0.1:4317")));
    assert_eq!(config.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(DEFAULT_MAX_BODY_BYTES, 4 * 1024 * 1024);
    // Blank is the same as unset.
    let blank = ReceiverConfig::from_env(&[("CONTRAIL_RECEIVER_ENDPOINT", "  ")]).unwrap();
    assert_eq!(blank, ReceiverConfig::default());
}

#[test]
fn endpoint_accepts_ip_addresses_localhost_and_the_off_words() {
    let cases = [
        ("127.0.0.1:14318", Some(addr("127.0.0.1:14318"))),
        ("0.0.0.0:4318", Some(addr("0.0.0.0:4318"))),
        ("[::1]:4318", Some(addr("[::1]:4318"))),
        ("localhost:9999", Some(addr("127.0.0.1:9999"))),
        ("off", None),
        ("None", None),
        ("FALSE", None),
        ("disabled", None),
    ];
    for (value, want) in cases {
        let config = ReceiverConfig::from_env(&[("CONTRAIL_RECEIVER_ENDPOINT", value)])
            .unwrap_or_else(|e| panic!("{value}: {e:?}"));
        assert_eq!(config.endpoint, want, "{value}");
    }
}

#[test]
fn bad_endpoints_are_named_with_a_reason() {
    for value in [
        "http://127.0.0.1:4318",
        "127.0.0.1",
        "example.com:4318",
        "127.0.0.1:99999",
        "127.0.0.1:port",
    ] {
        let errors =
            ReceiverConfig::from_env(&[("CONTRAIL_RECEIVER_ENDPOINT", value)]).expect_err(value);
        assert_eq!(errors.len(), 1, "{value}");
        assert_eq!(errors[0].var, "CONTRAIL_RECEIVER_ENDPOINT");
        assert_eq!(errors[0].value, value);
        let shown = errors[0].to_string();
        assert!(
            shown.starts_with(&format!(
                "CONTRAIL_RECEIVER_ENDPOINT={value:?} is not valid: "
            )),
            "{shown}"
        );
    }
}

#[test]
fn body_cap_is_a_byte_count_within_bounds() {
    let config =
        ReceiverConfig::from_env(&[("CONTRAIL_RECEIVER_MAX_BODY_BYTES", "1048576")]).unwrap();
    assert_eq!(config.max_body_bytes, 1_048_576);
    for value in ["0", "12", "4MiB", "-1", "1e6", "100000000000"] {
        let errors = ReceiverConfig::from_env(&[("CONTRAIL_RECEIVER_MAX_BODY_BYTES", value)])
            .expect_err(value);
        assert_eq!(errors[0].var, "CONTRAIL_RECEIVER_MAX_BODY_BYTES", "{value}");
    }
}

#[test]
fn the_byte_bound_follows_the_body_cap_and_is_never_below_twice_it() {
    let default = ReceiverConfig::from_env(&[("UNRELATED", "1")]).unwrap();
    assert_eq!(default.max_pending_bytes, 2 * DEFAULT_MAX_BODY_BYTES);
    let raised =
        ReceiverConfig::from_env(&[("CONTRAIL_RECEIVER_MAX_BODY_BYTES", "8388608")]).unwrap();
    assert_eq!(
        raised.max_pending_bytes, 16_777_216,
        "one request of any size fits, with its inflated copy"
    );
    let set =
        ReceiverConfig::from_env(&[("CONTRAIL_RECEIVER_MAX_PENDING_BYTES", "16777216")]).unwrap();
    assert_eq!(set.max_pending_bytes, 16_777_216);
    for value in ["1048576", "4194304", "8388607", "lots", "-1", "300000000"] {
        let errors = ReceiverConfig::from_env(&[("CONTRAIL_RECEIVER_MAX_PENDING_BYTES", value)])
            .expect_err(value);
        assert_eq!(
            errors[0].var, "CONTRAIL_RECEIVER_MAX_PENDING_BYTES",
            "{value}"
        );
        assert!(
            errors[0]
                .reason
                .contains("CONTRAIL_RECEIVER_MAX_BODY_BYTES"),
            "{value}"
        );
    }
}

#[test]
fn connections_and_idle_timeout_are_whole_numbers_within_bounds() {
    let default = ReceiverConfig::from_env(&[("UNRELATED", "1")]).unwrap();
    assert_eq!(default.max_connections, 64);
    assert_eq!(default.idle_timeout, Duration::from_secs(30));
    let set = ReceiverConfig::from_env(&[
        ("CONTRAIL_RECEIVER_MAX_CONNECTIONS", "8"),
        ("CONTRAIL_RECEIVER_IDLE_TIMEOUT_MS", "500"),
    ])
    .unwrap();
    assert_eq!(set.max_connections, 8);
    assert_eq!(set.idle_timeout, Duration::from_millis(500));
    for value in ["0", "4097", "many", "-3"] {
        let errors = ReceiverConfig::from_env(&[("CONTRAIL_RECEIVER_MAX_CONNECTIONS", value)])
            .expect_err(value);
        assert_eq!(
            errors[0].var, "CONTRAIL_RECEIVER_MAX_CONNECTIONS",
            "{value}"
        );
    }
    for value in ["0", "99", "3600001", "10s"] {
        let errors = ReceiverConfig::from_env(&[("CONTRAIL_RECEIVER_IDLE_TIMEOUT_MS", value)])
            .expect_err(value);
        assert_eq!(
            errors[0].var, "CONTRAIL_RECEIVER_IDLE_TIMEOUT_MS",
            "{value}"
        );
    }
}

#[test]
fn every_bad_variable_is_reported_at_once() {
    let errors = ReceiverConfig::from_env(&[
        ("CONTRAIL_RECEIVER_ENDPOINT", "nowhere"),
        ("CONTRAIL_RECEIVER_MAX_BODY_BYTES", "lots"),
    ])
    .unwrap_err();
    let vars: Vec<_> = errors.iter().map(|e| e.var.as_str()).collect();
    assert_eq!(
        vars,
        [
            "CONTRAIL_RECEIVER_ENDPOINT",
            "CONTRAIL_RECEIVER_MAX_BODY_BYTES"
        ]
    );
}

#[test]
fn the_grpc_endpoint_is_read_like_the_http_one_and_its_errors_suggest_4317() {
    let config =
        ReceiverConfig::from_env(&[("CONTRAIL_RECEIVER_GRPC_ENDPOINT", "localhost:14317")])
            .unwrap();
    assert_eq!(config.grpc_endpoint, Some(addr("127.0.0.1:14317")));
    assert_eq!(config.endpoint, Some(addr("127.0.0.1:4318")));
    let off = ReceiverConfig::from_env(&[("CONTRAIL_RECEIVER_GRPC_ENDPOINT", "off")]).unwrap();
    assert_eq!(off.grpc_endpoint, None);
    let errors =
        ReceiverConfig::from_env(&[("CONTRAIL_RECEIVER_GRPC_ENDPOINT", "grpc://0.0.0.0:4317")])
            .unwrap_err();
    assert_eq!(errors[0].var, "CONTRAIL_RECEIVER_GRPC_ENDPOINT");
    assert!(errors[0].reason.contains("127.0.0.1:4317"), "{}", errors[0]);
}

#[test]
fn both_receivers_on_one_port_is_an_error_naming_the_variable_that_moved() {
    let errors = ReceiverConfig::from_env(&[("CONTRAIL_RECEIVER_GRPC_ENDPOINT", "0.0.0.0:4318")])
        .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].var, "CONTRAIL_RECEIVER_GRPC_ENDPOINT");
    assert!(
        errors[0].reason.contains("CONTRAIL_RECEIVER_ENDPOINT"),
        "{}",
        errors[0]
    );
    let errors =
        ReceiverConfig::from_env(&[("CONTRAIL_RECEIVER_ENDPOINT", "localhost:4317")]).unwrap_err();
    assert_eq!(errors[0].var, "CONTRAIL_RECEIVER_ENDPOINT");
    assert!(errors[0].reason.contains("CONTRAIL_RECEIVER_GRPC_ENDPOINT"));
    // Different addresses, any port 0, or one receiver off: no conflict.
    for env in [
        [
            ("CONTRAIL_RECEIVER_ENDPOINT", "127.0.0.1:5000"),
            ("CONTRAIL_RECEIVER_GRPC_ENDPOINT", "[::1]:5000"),
        ],
        [
            ("CONTRAIL_RECEIVER_ENDPOINT", "127.0.0.1:0"),
            ("CONTRAIL_RECEIVER_GRPC_ENDPOINT", "127.0.0.1:0"),
        ],
        [
            ("CONTRAIL_RECEIVER_ENDPOINT", "off"),
            ("CONTRAIL_RECEIVER_GRPC_ENDPOINT", "127.0.0.1:4318"),
        ],
    ] {
        assert!(ReceiverConfig::from_env(&env).is_ok(), "{env:?}");
    }
}
