//! A backend that misbehaves beyond its status code: the connection reset mid-response, a
//! response that never finishes its body, a TLS handshake that stalls, a host name that does
//! not resolve, a `Retry-After` that is neither seconds nor a date, a huge body.
//!
//! Each is already bounded where it happens: an attempt that stalls is dropped at its deadline
//! (`exporter.rs`, `conn.rs`), a failed one is retried with backoff only while the flush
//! budget lasts, a body is read up to 64 KiB. What this module adds is the name: each one is
//! counted under its [`ExportFault`] (`contrail.export.faults{reason}`) and said once on stderr,
//! the first time that reason happens.

use std::time::Duration;

use http::HeaderMap;

use crate::diag;
use crate::diag::{ExportFault, Stats};
use crate::export::conn::{ConnError, Stage};

/// One warning per reason.
static SAID: [diag::Once; ExportFault::ALL.len()] =
    [const { diag::Once::new() }; ExportFault::ALL.len()];

/// The fault of an attempt that ran out of time at `stage`.
pub(crate) fn stalled(stage: Stage) -> ExportFault {
    match stage {
        // A lookup that does not answer within the attempt is a name that does not resolve.
        Stage::Resolving => ExportFault::UnresolvedHost,
        Stage::Idle | Stage::Connecting => ExportFault::StalledConnect,
        Stage::TlsHandshake => ExportFault::StalledTlsHandshake,
        Stage::AwaitingResponse => ExportFault::StalledResponse,
        Stage::ReadingBody => ExportFault::StalledBody,
    }
}

/// The fault of a round trip that failed with `error` at `stage`.
pub(crate) fn of(error: &ConnError, stage: Stage) -> ExportFault {
    match (error, stage) {
        (ConnError::Connect { .. }, Stage::Resolving) => ExportFault::UnresolvedHost,
        (ConnError::Connect { .. }, Stage::TlsHandshake) | (ConnError::Tls(_), _) => {
            ExportFault::TlsFailed
        }
        (ConnError::Connect { .. }, _) => ExportFault::ConnectFailed,
        (
            ConnError::NotSent(_)
            | ConnError::BeforeResponse(_)
            | ConnError::Body(_)
            | ConnError::Lost,
            _,
        ) => ExportFault::ConnectionReset,
    }
}

/// Whether `headers` carry a `Retry-After` that cannot be read (it is then ignored), given
/// what [`crate::export::retry::retry_after`] read of them.
pub(crate) fn invalid_retry_after(headers: &HeaderMap, read: Option<Duration>) -> bool {
    read.is_none() && headers.contains_key(http::header::RETRY_AFTER)
}

/// Count `fault`; say it, with `detail`, the first time it happens. Returns whether it was said.
pub(crate) fn note(stats: &Stats, fault: ExportFault, detail: &dyn std::fmt::Display) -> bool {
    stats.fault(fault);
    SAID[fault.index()].warn(format_args!(
        "export: {} ({detail}); counted in contrail.export.faults, reason {}; {}",
        what(fault),
        fault.as_str(),
        consequence(fault)
    ))
}

fn what(fault: ExportFault) -> &'static str {
    match fault {
        ExportFault::UnresolvedHost => "the backend's host name does not resolve",
        ExportFault::ConnectFailed => "cannot connect to the backend",
        ExportFault::TlsFailed => "the TLS handshake with the backend failed",
        ExportFault::StalledConnect => "the connection to the backend did not complete in time",
        ExportFault::StalledTlsHandshake => {
            "the TLS handshake with the backend did not complete in time"
        }
        ExportFault::StalledResponse => "the backend did not begin its answer in time",
        ExportFault::StalledBody => "the backend's answer did not finish in time",
        ExportFault::ConnectionReset => "the connection was closed or reset mid-exchange",
        ExportFault::InvalidRetryAfter => {
            "the backend's Retry-After is neither seconds nor an HTTP date"
        }
        ExportFault::ResponseTooLarge => "the backend's answer is larger than 64 KiB",
    }
}

fn consequence(fault: ExportFault) -> &'static str {
    match fault {
        ExportFault::InvalidRetryAfter => "it is ignored and the retry uses backoff",
        ExportFault::ResponseTooLarge => {
            "its body is not read (its status still counts) and the connection is not reused"
        }
        _ => "retried while the flush budget lasts, data kept until it is exported",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn every_stage_of_a_stall_has_its_reason() {
        assert_eq!(stalled(Stage::Resolving), ExportFault::UnresolvedHost);
        assert_eq!(stalled(Stage::Connecting), ExportFault::StalledConnect);
        assert_eq!(
            stalled(Stage::TlsHandshake),
            ExportFault::StalledTlsHandshake
        );
        assert_eq!(
            stalled(Stage::AwaitingResponse),
            ExportFault::StalledResponse
        );
        assert_eq!(stalled(Stage::ReadingBody), ExportFault::StalledBody);
    }

    #[test]
    fn a_retry_after_that_does_not_parse_is_invalid_and_an_absent_one_is_not() {
        let invalid = |h: &HeaderMap| {
            invalid_retry_after(h, crate::export::retry::retry_after(h, SystemTime::now()))
        };
        let mut headers = HeaderMap::new();
        assert!(!invalid(&headers));
        headers.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert!(invalid(&headers));
        headers.insert(http::header::RETRY_AFTER, "3".parse().unwrap());
        assert!(!invalid(&headers));
    }

    #[test]
    fn a_reason_is_counted_every_time_and_said_once() {
        let stats = Stats::default();
        // The only test that notes this reason: its first note is the process's first.
        assert!(note(&stats, ExportFault::StalledConnect, &"first"));
        assert!(!note(&stats, ExportFault::StalledConnect, &"second"));
        assert_eq!(stats.faults_total(ExportFault::StalledConnect), 2);
    }
}
