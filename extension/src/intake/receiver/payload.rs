//! What both receivers, OTLP/HTTP and OTLP/gRPC, do with the bytes of one export request:
//! inflate them within the cap, decode them, offer them to the intake queue without waiting,
//! and build the `Export*ServiceResponse` that answers them.

use std::io::Read;

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use http::HeaderValue;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use crate::diag;
use crate::diag::Stats;
use crate::pipeline::{Held, Intake, IntakeSender, Offered, OtlpPayload, Signal};

/// The `error_message` of a partial success: the queue was full.
pub(super) const QUEUE_FULL_MESSAGE: &str =
    "Contrail's intake queue is full: these records were dropped and counted, do not retry";

/// Whether an encoding header (`Content-Encoding`, `grpc-encoding`) says gzip; absent, empty
/// and `identity` are no encoding. `Err` carries any other value, to name in a refusal.
pub(super) fn is_gzip(value: Option<&HeaderValue>) -> Result<bool, String> {
    let Some(value) = value else {
        return Ok(false);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text.eq_ignore_ascii_case("gzip") {
        Ok(true)
    } else if text.is_empty() || text.eq_ignore_ascii_case("identity") {
        Ok(false)
    } else {
        Err(text.to_owned())
    }
}

/// Why a gzip body was not inflated.
pub(super) enum Gunzip {
    /// It inflates beyond the cap.
    TooLarge,
    /// The receivers' budget has no room for what it inflates to.
    Busy,
    /// It is not gzip.
    Invalid(std::io::Error),
}

/// Step of [`gunzip_held`]: the inflated bytes are held in the budget this much at a time.
const INFLATE_STEP: usize = 64 * 1024;

/// Decompress at most `max` bytes (a body that inflates beyond that is refused, not read),
/// holding the inflated bytes in `held` (beside the compressed ones) as they come:
/// a body that inflates past the budget is refused as [`Gunzip::Busy`] before it is inflated.
/// The compressed body is dropped here, and `held` then holds the inflated bytes alone.
pub(super) fn gunzip_held(body: Bytes, max: usize, held: &mut Held) -> Result<Bytes, Gunzip> {
    let inflated = inflate(&body, max, held)?;
    drop(body);
    held.shrink_to(inflated.len());
    Ok(inflated)
}

fn inflate(body: &[u8], max: usize, held: &mut Held) -> Result<Bytes, Gunzip> {
    let mut decoder = MultiGzDecoder::new(body).take(max as u64 + 1);
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
    let mut step = vec![0u8; INFLATE_STEP];
    loop {
        let n = decoder.read(&mut step).map_err(Gunzip::Invalid)?;
        if n == 0 {
            break;
        }
        if out.len() + n > max {
            return Err(Gunzip::TooLarge);
        }
        if !held.grow(n) {
            return Err(Gunzip::Busy);
        }
        out.extend_from_slice(&step[..n]);
    }
    Ok(Bytes::from(out))
}

/// Decode the protobuf `Export*ServiceRequest` of `signal`.
pub(super) fn decode_protobuf(
    signal: Signal,
    body: &[u8],
) -> Result<OtlpPayload, prost::DecodeError> {
    Ok(match signal {
        Signal::Traces => OtlpPayload::Traces(ExportTraceServiceRequest::decode(body)?),
        Signal::Metrics => OtlpPayload::Metrics(ExportMetricsServiceRequest::decode(body)?),
        Signal::Logs => OtlpPayload::Logs(ExportLogsServiceRequest::decode(body)?),
    })
}

/// Count the payload's records as received and offer it to the intake queue. `Some(n)` when
/// the queue was full: its `n` records were dropped (and counted as `intake_full`), to be
/// reported back in `partial_success`. `held` goes with the payload until the worker has
/// mapped it (or is given back now, when the payload is dropped).
pub(super) fn queue(intake: &IntakeSender, payload: OtlpPayload, held: Held) -> Option<u64> {
    let intake_unit = Intake::Otlp(payload, held);
    let records = intake_unit.record_count();
    Stats::add(&intake.stats().receiver_records, records);
    match intake.offer(intake_unit) {
        Offered::Queued => None,
        Offered::Dropped => {
            static FULL: diag::Once = diag::Once::new();
            FULL.warn(format_args!(
                "receiver: intake queue full, dropping function telemetry (counted as intake_full)"
            ));
            // Sent back in `partial_success`: spans, log records, metric data points.
            Some(records)
        }
    }
}

/// The protobuf `Export*ServiceResponse` of `signal`: empty, or with a `partial_success`
/// naming `rejected` records.
pub(super) fn response(signal: Signal, rejected: Option<u64>) -> Vec<u8> {
    let n = rejected.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let error_message = || QUEUE_FULL_MESSAGE.to_owned();
    match signal {
        Signal::Traces => ExportTraceServiceResponse {
            partial_success: n.map(|n| ExportTracePartialSuccess {
                rejected_spans: n,
                error_message: error_message(),
            }),
        }
        .encode_to_vec(),
        Signal::Metrics => ExportMetricsServiceResponse {
            partial_success: n.map(|n| ExportMetricsPartialSuccess {
                rejected_data_points: n,
                error_message: error_message(),
            }),
        }
        .encode_to_vec(),
        Signal::Logs => ExportLogsServiceResponse {
            partial_success: n.map(|n| ExportLogsPartialSuccess {
                rejected_log_records: n,
                error_message: error_message(),
            }),
        }
        .encode_to_vec(),
    }
}
