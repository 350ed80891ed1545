//! Identifiers the platform generates: request ids, X-Ray trace headers, span ids, instance ids,
//! and the RFC 3339 timestamps of telemetry envelopes.

use rand::Rng;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A new request id (UUID v4, as Lambda uses).
pub(crate) fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn random_hex(digits: usize) -> String {
    let mut rng = rand::rng();
    let mut out = String::with_capacity(digits);
    for _ in 0..digits {
        let nibble: u8 = rng.random_range(0..16);
        out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
    }
    out
}

/// A new 16-hex-digit span id.
pub(crate) fn span_id() -> String {
    random_hex(16)
}

/// A new 32-hex-digit execution environment instance id.
pub(crate) fn instance_id() -> String {
    random_hex(32)
}

/// A new X-Ray trace header for an invocation that starts at `now`:
/// `Root=1-{8 hex of epoch seconds}-{24 hex};Parent={16 hex};Sampled=1`.
pub(crate) fn trace_header(now: OffsetDateTime) -> String {
    let secs = u32::try_from(now.unix_timestamp()).unwrap_or(u32::MAX);
    format!(
        "Root=1-{secs:08x}-{};Parent={};Sampled=1",
        random_hex(24),
        random_hex(16)
    )
}

/// `2022-10-12T00:00:15.064Z`: the timestamp format of telemetry envelopes and spans.
pub(crate) fn rfc3339_millis(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let millis = t.millisecond();
    let whole = t.replace_nanosecond(0).unwrap_or(t);
    match whole.format(&Rfc3339) {
        Ok(s) => {
            let base = s.trim_end_matches('Z');
            format!("{base}.{millis:03}Z")
        }
        Err(_) => t.unix_timestamp().to_string(),
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn epoch_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_header_has_the_xray_shape() {
        let now = OffsetDateTime::from_unix_timestamp(0x5759_e988).unwrap();
        let h = trace_header(now);
        let parts: Vec<&str> = h.split(';').collect();
        assert_eq!(parts.len(), 3);
        let root = parts[0].strip_prefix("Root=1-5759e988-").unwrap();
        assert_eq!(root.len(), 24);
        assert!(root.chars().all(|c| c.is_ascii_hexdigit()));
        let parent = parts[1].strip_prefix("Parent=").unwrap();
        assert_eq!(parent.len(), 16);
        assert_eq!(parts[2], "Sampled=1");
    }

    #[test]
    fn timestamps_have_millisecond_precision() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_665_532_815_064_123_456).unwrap();
        assert_eq!(rfc3339_millis(t), "2022-10-12T00:00:15.064Z");
        assert_eq!(epoch_millis(t), 1_665_532_815_064);
    }
}
