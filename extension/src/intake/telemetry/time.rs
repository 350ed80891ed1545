//! Timestamps as the platform and the loggers write them, parsed without a date-time
//! dependency: RFC 3339 as the Telemetry API writes it (`2022-10-12T00:03:50.000Z`), the
//! variations real producers were seen to write, and epoch numbers.

use serde_json::Value;

/// The earliest time an epoch number is taken for (2000-01-01T00:00:00Z, in seconds): a
/// smaller number is a counter or a duration, not a time.
const EPOCH_FLOOR_SECS: u64 = 946_684_800;

/// Nanoseconds since the Unix epoch for a date-time string, or `None` if `s` is not one (or
/// lies before 1970).
///
/// Beyond RFC 3339 it accepts what real producers write: `T`, `t` or a space between date and
/// time; a fraction after `.`, `,` (Python logging) or `:` (AWS's telemetry schema reference),
/// of any length (digits past nanoseconds are ignored); and `Z`, `z`, `±HH:MM`, `±HHMM`, `±HH`
/// or no zone at all (UTC, the platform's clock). Anything after the zone is refused.
pub(crate) fn parse_date_time(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: u64 = 0;
    if matches!(b.get(i), Some(b'.' | b',' | b':')) {
        i += 1;
        let start = i;
        let mut scale: u64 = 100_000_000;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            nanos += u64::from(c - b'0') * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset_secs = zone_offset(b.get(i..)?)?;
    let days = days_from_civil(year as i64, month, day);
    let secs = days * 86_400 + (hour * 3600 + minute * 60 + second) as i64 - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Seconds east of UTC of what follows the time: nothing, `Z`, `±HH:MM`, `±HHMM` or `±HH`.
fn zone_offset(zone: &[u8]) -> Option<i64> {
    let (sign, hh_mm) = match zone {
        [] | [b'Z' | b'z'] => return Some(0),
        [b'+', rest @ ..] => (1, rest),
        [b'-', rest @ ..] => (-1, rest),
        _ => return None,
    };
    let (oh, om) = match hh_mm {
        [_, _] => (digits(hh_mm, 0, 2)?, 0),
        [_, _, _, _] => (digits(hh_mm, 0, 2)?, digits(hh_mm, 2, 2)?),
        [_, _, b':', _, _] => (digits(hh_mm, 0, 2)?, digits(hh_mm, 3, 2)?),
        _ => return None,
    };
    if oh > 23 || om > 59 {
        return None;
    }
    Some(sign * i64::from(oh * 3600 + om * 60))
}

/// Nanoseconds since the Unix epoch of a time field's JSON value: a date-time string
/// ([`parse_date_time`]), or an epoch number in seconds, milliseconds, microseconds or
/// nanoseconds (told apart by magnitude), also when written as a string. `None` for anything
/// else, and for an epoch number before 2000 (a counter or a duration, not a time).
pub(crate) fn parse_time_value(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) => parse_time_str(s),
        Value::Number(n) => match n.as_u64() {
            Some(whole) => epoch_nanos(whole),
            None => epoch_nanos_f64(n.as_f64()?),
        },
        _ => None,
    }
}

/// A time written as a string: a date-time, or an epoch number.
pub(crate) fn parse_time_str(s: &str) -> Option<u64> {
    if let Some(t) = parse_date_time(s) {
        return Some(t);
    }
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return None;
    }
    match s.parse::<u64>() {
        Ok(whole) => epoch_nanos(whole),
        Err(_) => epoch_nanos_f64(s.parse().ok()?),
    }
}

/// An epoch number in seconds, milliseconds, microseconds or nanoseconds, told apart by its
/// magnitude, in nanoseconds. `None` for a number whose nanoseconds overflow a `u64` (after
/// the year 2554).
pub(crate) fn epoch_nanos(n: u64) -> Option<u64> {
    let nanos = match n {
        0..100_000_000_000 => n.checked_mul(1_000_000_000)?,
        100_000_000_000..100_000_000_000_000 => n.checked_mul(1_000_000)?,
        100_000_000_000_000..100_000_000_000_000_000 => n.checked_mul(1_000)?,
        _ => n,
    };
    (nanos >= EPOCH_FLOOR_SECS * 1_000_000_000).then_some(nanos)
}

/// As [`epoch_nanos`] for a number with a fraction, to the microsecond (an `f64` holds no
/// more of a current epoch in seconds).
pub(crate) fn epoch_nanos_f64(x: f64) -> Option<u64> {
    if !x.is_finite() || x < 0.0 {
        return None;
    }
    let micros = if x < 1e11 {
        x * 1e6
    } else if x < 1e14 {
        x * 1e3
    } else if x < 1e17 {
        x
    } else {
        x / 1e3
    };
    let micros = micros.round();
    if micros >= u64::MAX as f64 / 1_000.0 {
        return None;
    }
    let nanos = (micros as u64) * 1_000;
    (nanos >= EPOCH_FLOOR_SECS * 1_000_000_000).then_some(nanos)
}

fn digits(b: &[u8], at: usize, len: usize) -> Option<u32> {
    let slice = b.get(at..at + len)?;
    let mut v: u32 = 0;
    for c in slice {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

fn is_leap(year: u32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (the inverse of
/// [`days_from_civil`]).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `telemetry_batch` fuzz target: milliseconds and microseconds past the
    /// year 2554 overflowed the multiplication (a panic with overflow checks, a wrapped,
    /// wrong time without them).
    #[test]
    fn epoch_numbers_past_u64_nanoseconds_are_not_times() {
        for n in [
            18_446_744_073_710,
            99_999_999_999_999,
            18_446_744_073_709_552,
            40_443_333_333_333_333,
            99_999_999_999_999_999,
        ] {
            assert_eq!(epoch_nanos(n), None, "{n}");
            assert_eq!(parse_time_str(&n.to_string()), None, "{n}");
        }
        // The largest of each magnitude that fits.
        assert_eq!(
            epoch_nanos(18_446_744_073_709),
            Some(18_446_744_073_709_000_000)
        );
        assert_eq!(
            epoch_nanos(18_446_744_073_709_551),
            Some(18_446_744_073_709_551_000)
        );
    }

    #[test]
    fn civil_from_days_inverts_days_from_civil() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(16_677), (2015, 8, 30));
    }

    #[test]
    fn parses_the_formats_lambda_writes() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("1970-01-01T00:00:00.000000001Z", Some(1)),
            ("2022-10-12T00:03:50.000Z", Some(1_665_533_030_000_000_000)),
            ("2022-10-12T00:03:50.123Z", Some(1_665_533_030_123_000_000)),
            (
                "2022-10-12T00:03:50.123456789123Z",
                Some(1_665_533_030_123_456_789),
            ),
            (
                "2022-10-12T02:03:50.5+02:00",
                Some(1_665_533_030_500_000_000),
            ),
            ("2022-10-11T23:03:50-01:00", Some(1_665_533_030_000_000_000)),
            ("2024-02-29T12:00:00z", Some(1_709_208_000_000_000_000)),
            ("2024-02-29 12:00:00Z", Some(1_709_208_000_000_000_000)),
            ("2023-02-29T12:00:00Z", None),
            ("2022-13-01T00:00:00Z", None),
            ("2022-10-12T24:00:00Z", None),
            ("2022-10-12T00:03:50.Z", None),
            ("2022-10-12T00:03:50.1Zx", None),
            ("1969-12-31T23:59:59Z", None),
            ("", None),
            ("not a date at all, no", None),
            ("2022-10-12T00:03:50.000Z\u{e9}", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_date_time(input), *want, "{input}");
        }
    }

    /// Every shape of date-time real producers were seen to write (AWS's documentation, AWS's
    /// own emulator, Powertools for AWS Lambda, Python logging, generic JSON loggers).
    #[test]
    fn parses_what_real_producers_write() {
        let cases: &[(&str, Option<u64>)] = &[
            // No zone: UTC, as Lambda's clock is.
            ("2022-10-12T00:03:50", Some(1_665_533_030_000_000_000)),
            // A colon before the milliseconds: AWS's schema reference, runtimeDone spans.
            ("2022-08-02T12:01:23:521Z", Some(1_659_441_683_521_000_000)),
            // Python logging's default: a comma, a space, an offset without a colon.
            (
                "2021-05-03 11:47:12,494+0200",
                Some(1_620_035_232_494_000_000),
            ),
            ("2016-10-03 13:27:57,438", Some(1_475_501_277_438_000_000)),
            (
                "2024-05-12T11:43:19.171675+00:00",
                Some(1_715_514_199_171_675_000),
            ),
            ("2022-10-12T15:04:05.0000Z", Some(1_665_587_045_000_000_000)),
            ("2022-10-12T00:03:50+0200", Some(1_665_525_830_000_000_000)),
            ("2022-10-12T00:03:50.5+02", Some(1_665_525_830_500_000_000)),
            (
                "2022-10-12T00:03:50,5-0000",
                Some(1_665_533_030_500_000_000),
            ),
            // Still not a date-time.
            ("2022-10-12T00:03:50:Z", None),
            ("2022-10-12T00:03:50,", None),
            ("2022-10-12T00:03:50+2", None),
            ("2022-10-12T00:03:50+02:0", None),
            ("2022-10-12T00:03:50+25:00", None),
            ("2022-10-12T00:03:50 garbage", None),
            ("2022-10-12", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_date_time(input), *want, "{input}");
        }
    }

    #[test]
    fn epoch_numbers_are_told_apart_by_magnitude() {
        use serde_json::json;
        const S: u64 = 1_715_817_560;
        let cases = [
            (json!(S), Some(S * 1_000_000_000)),
            (
                json!(S * 1_000 + 163),
                Some(S * 1_000_000_000 + 163_000_000),
            ),
            (
                json!(S * 1_000_000 + 163_123),
                Some(S * 1_000_000_000 + 163_123_000),
            ),
            (
                json!(S * 1_000_000_000 + 163_123_456),
                Some(S * 1_000_000_000 + 163_123_456),
            ),
            (
                json!(1_715_817_560.5),
                Some(S * 1_000_000_000 + 500_000_000),
            ),
            (
                json!(1_715_817_560_163.25),
                Some(S * 1_000_000_000 + 163_250_000),
            ),
            (
                json!("1715817560163"),
                Some(S * 1_000_000_000 + 163_000_000),
            ),
            (
                json!("1715817560.25"),
                Some(S * 1_000_000_000 + 250_000_000),
            ),
            (json!("2024-05-15T23:59:20Z"), Some(S * 1_000_000_000)),
            // Counters and durations are not times; nor is anything else.
            (json!(17), None),
            (json!(1_234.5), None),
            (json!(-1_715_817_560), None),
            (json!(1.5e300), None),
            (json!("17"), None),
            (json!("1.2.3"), None),
            (json!(""), None),
            (json!(true), None),
            (json!(null), None),
            (json!({"t": S}), None),
        ];
        for (value, want) in cases {
            assert_eq!(parse_time_value(&value), want, "{value}");
        }
    }

    #[test]
    fn never_panics_on_truncations() {
        let full = "2022-10-12T00:03:50.123+02:00";
        for end in 0..full.len() {
            let _ = parse_date_time(&full[..end]);
        }
        for s in [
            "\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}",
            "9999-99-99T99:99:99Z",
        ] {
            assert_eq!(parse_date_time(s), None);
        }
    }
}
