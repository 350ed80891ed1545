//! The cold-start breakdown: child spans of `aws.lambda.init` for the parts of init that the
//! platform's records and Contrail's own clock can tell apart. Pure: times in, spans out.
//!
//! What each time marks (`shared/LAMBDA.md`, the Telemetry API reference):
//! - `platform.initStart`: the INIT phase begins; Lambda starts the extensions, then the
//!   runtime.
//! - `platform.initRuntimeDone`: the runtime called its first `next`, after its own start-up and
//!   the function's init code (the code outside the handler).
//! - the end of `platform.initReport` (its start + `durationMs`): every extension has called
//!   `next` too; init is over.
//! - Contrail's process start and its first `next`: its own clock.
//!
//! The spans:
//! - `aws.lambda.init.contrail`: Contrail's process start to its first `next`;
//! - `aws.lambda.init.runtime`: `initStart` to `initRuntimeDone`: the runtime's start-up and the
//!   function's init code together; no platform record marks where one ends and the other
//!   begins (a runtime or the function's own SDK can mark it with a span of its own);
//! - `aws.lambda.init.extensions`: `initRuntimeDone` to the end of init, when it is longer than
//!   nothing: the time the phase waited for extensions after the runtime was ready.

use opentelemetry_proto::tonic::trace::v1::Span;

use crate::intake::telemetry::event::PhaseSpan;
use crate::mapping::SpanCtx;

use super::spans::child_span;

/// Contrail's own start-up, from its own clock (Unix epoch nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OwnInit {
    /// When the process began: the first thing `app::run` does, once the async runtime is
    /// built.
    pub(crate) process_start_ns: u64,
    /// When it sent its first `next`.
    pub(crate) first_next_ns: u64,
}

fn span(parent: &SpanCtx, name: &str, start: u64, end: u64) -> Span {
    let mut s = child_span(
        parent,
        &PhaseSpan {
            name: name.to_owned(),
            start_unix_nano: start,
            duration_ms: end.saturating_sub(start) as f64 / 1e6,
        },
    );
    s.end_time_unix_nano = end.max(start);
    s
}

/// Contrail's own span.
pub(super) fn own_span(parent: &SpanCtx, own: OwnInit) -> Span {
    span(
        parent,
        "init.contrail",
        own.process_start_ns,
        own.first_next_ns,
    )
}

/// The runtime's and the extensions' spans, from what is known of the phase.
pub(super) fn phase_spans(
    parent: &SpanCtx,
    init_start_ns: Option<u64>,
    runtime_done_ns: Option<u64>,
    end_ns: Option<u64>,
) -> Vec<Span> {
    let mut out = Vec::new();
    let Some(done) = runtime_done_ns else {
        return out;
    };
    if let Some(start) = init_start_ns.filter(|s| *s <= done) {
        out.push(span(parent, "init.runtime", start, done));
    }
    if let Some(end) = end_ns.filter(|e| *e > done) {
        out.push(span(parent, "init.extensions", done, end));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: SpanCtx = SpanCtx {
        trace_id: [7; 16],
        span_id: [9; 8],
    };

    #[test]
    fn the_phase_splits_at_the_runtime_s_first_next() {
        let spans = phase_spans(&CTX, Some(1_000), Some(351_000), Some(400_000));
        let got: Vec<_> = spans
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.start_time_unix_nano,
                    s.end_time_unix_nano,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("aws.lambda.init.runtime", 1_000, 351_000),
                ("aws.lambda.init.extensions", 351_000, 400_000),
            ]
        );
        for s in &spans {
            assert_eq!(s.parent_span_id, CTX.span_id);
            assert_eq!(s.trace_id, CTX.trace_id);
        }
    }

    #[test]
    fn only_what_the_records_mark() {
        assert!(phase_spans(&CTX, Some(1), None, Some(9)).is_empty());
        let spans = phase_spans(&CTX, None, Some(5), Some(5));
        assert!(spans.is_empty(), "no start, no wait: {spans:?}");
        let spans = phase_spans(&CTX, Some(1), Some(5), None);
        assert_eq!(spans.len(), 1);
    }

    #[test]
    fn contrail_s_own_init_is_process_start_to_first_next() {
        let s = own_span(
            &CTX,
            OwnInit {
                process_start_ns: 10_000,
                first_next_ns: 2_010_000,
            },
        );
        assert_eq!(s.name, "aws.lambda.init.contrail");
        assert_eq!(
            (s.start_time_unix_nano, s.end_time_unix_nano),
            (10_000, 2_010_000)
        );
        assert_eq!(s.parent_span_id, CTX.span_id);
    }
}
