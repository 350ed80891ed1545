//! Retry classification, pure: what the answer to an export attempt means for its data, and how
//! long to wait before the next attempt.
//!
//! | answer | [`Class`] |
//! |---|---|
//! | 2xx | [`Class::Delivered`] (the body may still report a partial success) |
//! | 429, 502, 503, 504 | [`Class::Retryable`], after `Retry-After` when the answer has one ([`retry_after`], capped at [`MAX_RETRY_AFTER`]) |
//! | any other 4xx | [`Class::Rejected`]: the backend will never take this data |
//! | any other status | [`Class::Failed`] |
//!
//! A connection error and an attempt that outlives its per-request timeout are retryable too;
//! the exporter decides that without an answer to classify. Without `Retry-After`, the delay
//! before retry `n` grows exponentially from [`BACKOFF_START`] to [`BACKOFF_MAX`], with jitter
//! ([`Backoff`]).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};

use crate::intake::telemetry::time::days_from_civil;

/// First retry delay.
pub(crate) const BACKOFF_START: Duration = Duration::from_millis(25);
/// Longest retry delay.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// The longest `Retry-After` Contrail honours.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What an answer's status means for the data sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The backend took it.
    Delivered,
    /// Worth sending again: the backend is overloaded or a gateway failed.
    Retryable,
    /// A permanent refusal.
    Rejected,
    /// A failure that sending again would not mend.
    Failed,
}

/// Classify an answer's status (see the module table).
pub(crate) fn classify(status: StatusCode) -> Class {
    match status {
        s if s.is_success() => Class::Delivered,
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => Class::Retryable,
        s if s.is_client_error() => Class::Rejected,
        _ => Class::Failed,
    }
}

/// `Retry-After`: delay-seconds or an HTTP date, relative to `now`. A date in the past is zero.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => parse_http_date(value)?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    // A backend or proxy asking for hours (or for ever) would stop a signal for good and, added
    // to an `Instant`, could overflow it; data waits at most this long before the next attempt.
    Some(delay.min(MAX_RETRY_AFTER))
}

/// Parse an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP requires senders to
/// use.
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let rest = s.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let sec: u64 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + sec;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Exponential backoff with jitter; each exporter draws from its own.
#[derive(Debug)]
pub(crate) struct Backoff {
    random: RandomState,
    draws: u64,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff {
            random: RandomState::new(),
            draws: 0,
        }
    }

    /// The delay before retry number `failures` (0-based): exponential, capped, jittered into
    /// the upper half of its step.
    pub(crate) fn delay(&mut self, failures: u32) -> Duration {
        let step = BACKOFF_START
            .saturating_mul(1u32 << failures.min(16))
            .min(BACKOFF_MAX);
        self.draws = self.draws.wrapping_add(1);
        let mut hasher = self.random.build_hasher();
        hasher.write_u64(self.draws);
        let fraction = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
        step.mul_f64(0.5 + 0.5 * fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_the_table_says() {
        let cases = [
            (200, Class::Delivered),
            (202, Class::Delivered),
            (204, Class::Delivered),
            (429, Class::Retryable),
            (502, Class::Retryable),
            (503, Class::Retryable),
            (504, Class::Retryable),
            (400, Class::Rejected),
            (401, Class::Rejected),
            (404, Class::Rejected),
            (413, Class::Rejected),
            (500, Class::Failed),
            (501, Class::Failed),
            (505, Class::Failed),
            (301, Class::Failed),
        ];
        for (status, class) in cases {
            assert_eq!(
                classify(StatusCode::from_u16(status).unwrap()),
                class,
                "{status}"
            );
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_and_stays_in_the_upper_half_of_each_step() {
        let mut backoff = Backoff::new();
        for failures in 0..40 {
            let step = BACKOFF_START
                .saturating_mul(1u32 << failures.min(16))
                .min(BACKOFF_MAX);
            let delay = backoff.delay(failures);
            assert!(delay >= step / 2 && delay <= step, "{failures}: {delay:?}");
        }
        assert!(backoff.delay(30) >= BACKOFF_MAX / 2);
    }

    #[test]
    fn http_date_parses() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        assert!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT").is_none());
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(
            retry_after(&h, SystemTime::now()),
            Some(Duration::from_secs(7))
        );
        let now = UNIX_EPOCH + Duration::from_secs(784_111_770);
        h.insert(
            http::header::RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(
            http::header::RETRY_AFTER,
            "18446744073709551615".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(MAX_RETRY_AFTER));
        h.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }
}
