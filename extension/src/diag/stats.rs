//! Contrail's own counters: what it received, exported and dropped, by reason.
//!
//! Updated with relaxed atomics from every task; read by the self-telemetry mapper and the
//! shutdown report. Nothing is ever lost without one of these counters moving.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why records were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DropReason {
    /// The intake queue between the listeners and the worker was full.
    IntakeFull,
    /// A Telemetry API record that did not decode.
    Malformed,
    /// The export buffer was full.
    BufferFull,
    /// The backend refused the data permanently (a 4xx other than 429).
    Rejected,
    /// Retries ran out of time or attempts.
    ExportFailed,
    /// Per-invocation state evicted before it was complete.
    Evicted,
    /// No export endpoint is configured for the record's signal.
    NoEndpoint,
    /// X-Ray refused spans: CloudWatch Transaction Search is not enabled.
    TransactionSearchDisabled,
    /// An AWS endpoint refused the execution role (a missing permission, refused credentials).
    AccessDenied,
    /// CloudWatch Logs refused logs: the log group or stream does not exist.
    LogGroupMissing,
    /// A header value from Secrets Manager or SSM could not be had (not found, denied).
    SecretUnavailable,
}

impl DropReason {
    pub(crate) const ALL: [DropReason; 11] = [
        DropReason::IntakeFull,
        DropReason::Malformed,
        DropReason::BufferFull,
        DropReason::Rejected,
        DropReason::ExportFailed,
        DropReason::Evicted,
        DropReason::NoEndpoint,
        DropReason::TransactionSearchDisabled,
        DropReason::AccessDenied,
        DropReason::LogGroupMissing,
        DropReason::SecretUnavailable,
    ];

    /// The value of the `reason` attribute in self-telemetry.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DropReason::IntakeFull => "intake_full",
            DropReason::Malformed => "malformed",
            DropReason::BufferFull => "buffer_full",
            DropReason::Rejected => "rejected",
            DropReason::ExportFailed => "export_failed",
            DropReason::Evicted => "evicted",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::TransactionSearchDisabled => "transaction_search_disabled",
            DropReason::AccessDenied => "access_denied",
            DropReason::LogGroupMissing => "log_group_missing",
            DropReason::SecretUnavailable => "secret_unavailable",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// What went wrong on the way to the backend or in its answer, beyond its status code: the
/// `reason` of `contrail.export.faults` (`export/failure.rs`). Each is retried like any
/// connection error while the flush budget lasts; the data is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ExportFault {
    /// The backend's host name does not resolve.
    UnresolvedHost,
    /// The connection was refused or the host is unreachable.
    ConnectFailed,
    /// The TLS handshake failed (a certificate not trusted, a protocol mismatch).
    TlsFailed,
    /// The TCP connection did not complete before the attempt's time ran out.
    StalledConnect,
    /// The TLS handshake did not complete before the attempt's time ran out.
    StalledTlsHandshake,
    /// The request was sent and no answer began before the attempt's time ran out.
    StalledResponse,
    /// The answer began but its body did not finish before the attempt's time ran out.
    StalledBody,
    /// The connection was closed or reset before the answer was complete.
    ConnectionReset,
    /// A `Retry-After` that is neither seconds nor an HTTP date: ignored, backoff used.
    InvalidRetryAfter,
    /// A response body over 64 KiB: not read, the connection not reused.
    ResponseTooLarge,
}

impl ExportFault {
    pub(crate) const ALL: [ExportFault; 10] = [
        ExportFault::UnresolvedHost,
        ExportFault::ConnectFailed,
        ExportFault::TlsFailed,
        ExportFault::StalledConnect,
        ExportFault::StalledTlsHandshake,
        ExportFault::StalledResponse,
        ExportFault::StalledBody,
        ExportFault::ConnectionReset,
        ExportFault::InvalidRetryAfter,
        ExportFault::ResponseTooLarge,
    ];

    /// The value of the `reason` attribute in self-telemetry.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ExportFault::UnresolvedHost => "unresolved_host",
            ExportFault::ConnectFailed => "connect_failed",
            ExportFault::TlsFailed => "tls_failed",
            ExportFault::StalledConnect => "stalled_connect",
            ExportFault::StalledTlsHandshake => "stalled_tls_handshake",
            ExportFault::StalledResponse => "stalled_response",
            ExportFault::StalledBody => "stalled_body",
            ExportFault::ConnectionReset => "connection_reset",
            ExportFault::InvalidRetryAfter => "invalid_retry_after",
            ExportFault::ResponseTooLarge => "response_too_large",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Why a field of a Telemetry API record was given up (its record was kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum FieldReason {
    /// A time that is neither a date-time nor an epoch number.
    InvalidTime,
    /// A value of a shape the field cannot take.
    InvalidValue,
    /// A field the schema requires, absent.
    Missing,
}

impl FieldReason {
    pub(crate) const ALL: [FieldReason; 3] = [
        FieldReason::InvalidTime,
        FieldReason::InvalidValue,
        FieldReason::Missing,
    ];

    /// The value of the `reason` attribute in self-telemetry.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FieldReason::InvalidTime => "invalid_time",
            FieldReason::InvalidValue => "invalid_value",
            FieldReason::Missing => "missing",
        }
    }
}

/// Counters shared by every part of the extension.
#[derive(Debug, Default)]
pub struct Stats {
    /// Telemetry API records received (decoded or not).
    pub(crate) telemetry_records: AtomicU64,
    /// Telemetry API records of a type Contrail does not know (kept as logs, counted).
    pub(crate) unknown_records: AtomicU64,
    /// Records received by the local OTLP receiver (spans, log records, metric data points).
    pub(crate) receiver_records: AtomicU64,
    /// Requests the local receiver refused (undecodable, too large, unsupported type or
    /// encoding): their records could not be counted and are lost.
    pub(crate) receiver_rejected_requests: AtomicU64,
    /// Calls and connections the local OTLP/gRPC receiver refused (not gRPC, too large,
    /// undecodable, too many at once, too slow, not HTTP/2 at all).
    pub(crate) grpc_refused: AtomicU64,
    /// Records handed to the backend successfully.
    pub(crate) exported_records: AtomicU64,
    /// Export requests sent, and those that failed.
    pub(crate) export_attempts: AtomicU64,
    pub(crate) export_failures: AtomicU64,
    /// Export requests abandoned at a flush deadline before an answer came (their data was
    /// kept for the next flush, so the backend may receive it twice).
    pub(crate) export_abandoned: AtomicU64,
    /// Milliseconds Contrail spent after `platform.runtimeDone` before calling `next`
    /// (billed to the user), summed over invocations; updated by the lifecycle loop.
    pub(crate) post_runtime_ms: AtomicU64,
    /// Values of Secrets Manager or SSM that a fetch failed to get (each reference, each time).
    pub(crate) secret_failures: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    faults: [AtomicU64; ExportFault::ALL.len()],
    fields_dropped: [AtomicU64; FieldReason::ALL.len()],
}

impl Stats {
    pub(crate) fn dropped(&self, reason: DropReason, records: u64) {
        self.dropped[reason.index()].fetch_add(records, Ordering::Relaxed);
    }

    pub(crate) fn fault(&self, fault: ExportFault) {
        self.faults[fault.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn faults_total(&self, fault: ExportFault) -> u64 {
        self.faults[fault.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn dropped_total(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn fields_dropped(&self, reason: FieldReason, fields: u64) {
        self.fields_dropped[reason as usize].fetch_add(fields, Ordering::Relaxed);
    }

    pub(crate) fn fields_dropped_total(&self, reason: FieldReason) -> u64 {
        self.fields_dropped[reason as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
