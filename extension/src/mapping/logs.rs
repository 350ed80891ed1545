//! `function` and `extension` records → OTLP log records (without trace context, which the
//! mapper adds once it knows the invocation).
//!
//! Text lines in the formats Lambda's runtimes write are split into timestamp, request id,
//! level and message:
//!
//! | runtime | line |
//! |---|---|
//! | Python | `[INFO]\t2024-01-01T12:00:00.123Z\t<request id>\tmessage` |
//! | Node.js, .NET (text format) | `2024-01-01T12:00:00.123Z\t<request id>\tINFO\tmessage` |
//! | Java (log4j2 Lambda layout) | `2024-01-01 12:00:00 <request id> INFO  Class - message` |
//! | .NET `ILogger`, runtime errors | `[Information] message`, `[ERROR] Runtime.ImportModuleError: …` |
//! | platform lines | `START RequestId: <id> …`, `END RequestId: <id>`, `REPORT RequestId: <id> …` |
//! | anything starting with an upper-case level word | `ERROR something failed` (kept whole) |
//!
//! JSON lines (the JSON log format): `timestamp` → time, `level` → severity, `requestId` →
//! invocation, the message → body: `message`, else `msg`, else `fields.message` (tracing's
//! JSON layout), else a string `event` (structlog's); a line with none of them (or only empty
//! ones) keeps the line itself as body, as written or, for an object, as JSON text. Every
//! other key becomes an attribute (objects flattened one level, values typed).

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyVal;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};
use serde_json::{Map, Value};

use super::otlp::{any, json_to_any, push_json_attribute};
use crate::intake::telemetry::event::LogLine;
use crate::intake::telemetry::time::{parse_date_time, parse_time_value};

/// A log record and the request id the line itself names, if any (a text line that names
/// `current` gives `None`: the caller has that id already).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedLog {
    pub(crate) record: LogRecord,
    pub(crate) request_id: Option<String>,
}

/// Build the log record of one line. `record_time` is the envelope's time (when Lambda
/// captured the line): the observed time, and the time if the line carries none. `current` is
/// the invocation running now, which most lines name.
pub(crate) fn parse_log(line: LogLine, record_time: u64, current: Option<&str>) -> ParsedLog {
    match line {
        LogLine::Text(text) => match json_object(&text) {
            // A structured logger writing JSON lines under the Text log format: Lambda delivers
            // them as strings, but they carry the same fields as JSON-format records.
            Some(map) => parse_json_record(map, Some(text), record_time),
            None => parse_text_record(text, record_time, current),
        },
        LogLine::Json(map) => parse_json_record(map, None, record_time),
    }
}

/// The line as a JSON object, when it is one (checked by its first byte before parsing).
fn json_object(text: &str) -> Option<Map<String, Value>> {
    let trimmed = text.trim();
    if !(trimmed.starts_with('{') && trimmed.ends_with('}')) {
        return None;
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn parse_text_record(mut text: String, record_time: u64, current: Option<&str>) -> ParsedLog {
    let parsed = parse_text(&text);
    let mut record = LogRecord {
        time_unix_nano: parsed.timestamp.unwrap_or(record_time),
        observed_time_unix_nano: record_time,
        ..Default::default()
    };
    if let Some(level) = parsed.level {
        if let Some(number) = severity_number(level) {
            record.severity_number = number as i32;
            record.severity_text = level.to_owned();
        }
    }
    let request_id = parsed
        .request_id
        .filter(|id| Some(*id) != current)
        .map(str::to_owned);
    // The message is a part of the line: the line's own string becomes the body, cut to it
    // in place rather than copied.
    let message = subslice(&text, parsed.message);
    text.truncate(message.end);
    if message.start > 0 {
        text.replace_range(..message.start, "");
    }
    truncate_newline(&mut text);
    record.body = any(AnyVal::StringValue(text));
    ParsedLog { record, request_id }
}

/// Where `part`, a slice of `whole`, lies in it (if it is not one: nothing when it is empty,
/// else all of `whole`).
fn subslice(whole: &str, part: &str) -> std::ops::Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    if start <= whole.len() && part.len() <= whole.len() - start {
        start..start + part.len()
    } else if part.is_empty() {
        whole.len()..whole.len()
    } else {
        0..whole.len()
    }
}

fn truncate_newline(s: &mut String) {
    while s.ends_with('\n') || s.ends_with('\r') {
        s.pop();
    }
}

/// `text` is the line as written, when it came as a string.
fn parse_json_record(
    mut map: Map<String, Value>,
    text: Option<String>,
    record_time: u64,
) -> ParsedLog {
    let mut record = LogRecord {
        time_unix_nano: record_time,
        observed_time_unix_nano: record_time,
        ..Default::default()
    };
    // Without a message, the body is the line itself: as written, or the whole object.
    let body = match (take_message(&mut map), text) {
        (Some(message), _) => Some(json_to_any(message)),
        (None, Some(mut text)) => {
            truncate_newline(&mut text);
            any(AnyVal::StringValue(text))
        }
        (None, None) => any(AnyVal::StringValue(
            serde_json::to_string(&map).unwrap_or_default(),
        )),
    };
    if let Some(t) = map.get("timestamp").and_then(parse_time_value) {
        record.time_unix_nano = t;
        map.remove("timestamp");
    }
    if let Some(Value::String(level)) = map.get("level") {
        if let Some(number) = severity_number(level) {
            record.severity_number = number as i32;
            if let Some(Value::String(level)) = map.remove("level") {
                record.severity_text = level;
            }
        }
    }
    let request_id = match map.remove("requestId") {
        Some(Value::String(id)) if !id.is_empty() => Some(id),
        Some(Value::String(_)) | None => None,
        Some(other) => {
            // Not a string: not an id Contrail can use; keep it as it came.
            map.insert("requestId".to_owned(), other);
            None
        }
    };
    record.body = body;
    record.attributes.reserve(map.len());
    for (key, value) in map {
        push_json_attribute(&mut record.attributes, key, value);
    }
    ParsedLog { record, request_id }
}

/// Take the line's message out of `map`: the first of `message`, `msg`, `fields.message` and a
/// string `event` that is not empty.
fn take_message(map: &mut Map<String, Value>) -> Option<Value> {
    for key in ["message", "msg"] {
        match map.remove(key) {
            Some(m) if !is_blank(&m) => return Some(m),
            _ => {}
        }
    }
    if let Some(Value::Object(fields)) = map.get_mut("fields") {
        let message = fields.remove("message").filter(|m| !is_blank(m));
        if fields.is_empty() {
            map.remove("fields");
        }
        if message.is_some() {
            return message;
        }
    }
    match map.get("event") {
        Some(Value::String(e)) if !e.trim().is_empty() => map.remove("event"),
        _ => None,
    }
}

fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// The parts of a text line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TextParts<'a> {
    pub(crate) timestamp: Option<u64>,
    pub(crate) request_id: Option<&'a str>,
    pub(crate) level: Option<&'a str>,
    pub(crate) message: &'a str,
}

/// Split a text line written in one of the runtimes' formats. A line in no known format is all
/// message.
pub(crate) fn parse_text(line: &str) -> TextParts<'_> {
    let plain = TextParts {
        timestamp: None,
        request_id: None,
        level: None,
        message: line,
    };
    // Python: [LEVEL]\tTIMESTAMP\tREQUEST_ID\tMESSAGE ; .NET/runtime errors: [Level] message
    if let Some(rest) = line.strip_prefix('[') {
        if let Some((level, after)) = rest.split_once(']') {
            if severity_number(level).is_some() {
                if let Some(tabbed) = after.strip_prefix('\t') {
                    let mut parts = tabbed.splitn(3, '\t');
                    let ts = parts.next().and_then(parse_date_time);
                    if let (Some(ts), Some(id), Some(msg)) = (ts, parts.next(), parts.next()) {
                        return TextParts {
                            timestamp: Some(ts),
                            request_id: request_id(id),
                            level: Some(level),
                            message: msg,
                        };
                    }
                }
                return TextParts {
                    level: Some(level),
                    message: after.trim_start(),
                    ..plain
                };
            }
        }
        return plain;
    }
    // Node.js / .NET: TIMESTAMP\tREQUEST_ID\tLEVEL\tMESSAGE (or without the level)
    if let Some((first, rest)) = line.split_once('\t') {
        if let Some(ts) = parse_date_time(first) {
            // An empty message is the empty slice at the line's end, as every part is a slice
            // of the line (the body is cut from the line in place).
            let end = &line[line.len()..];
            let (id, rest) = rest.split_once('\t').unwrap_or((rest, end));
            let (level, message) = match rest.split_once('\t') {
                Some((level, msg)) if severity_number(level).is_some() => (Some(level), msg),
                _ if severity_number(rest.trim_end()).is_some() => (Some(rest.trim_end()), end),
                _ => (None, rest),
            };
            return TextParts {
                timestamp: Some(ts),
                request_id: request_id(id),
                level,
                message,
            };
        }
    }
    // Platform lines.
    for prefix in ["START RequestId: ", "END RequestId: ", "REPORT RequestId: "] {
        if let Some(rest) = line.strip_prefix(prefix) {
            let id = rest.split([' ', '\t', '\n']).next().unwrap_or("");
            return TextParts {
                request_id: request_id(id),
                ..plain
            };
        }
    }
    // Java log4j2 Lambda layout: yyyy-MM-dd HH:mm:ss REQUEST_ID LEVEL rest
    if looks_like_log4j_date(line) {
        let mut tokens = line.get(20..).unwrap_or("").splitn(2, ' ');
        if let (Some(id), Some(rest)) = (tokens.next(), tokens.next()) {
            let rest = rest.trim_start();
            let (level, _) = rest.split_once(' ').unwrap_or((rest, ""));
            if severity_number(level).is_some() && is_uuid(id) {
                return TextParts {
                    request_id: Some(id),
                    level: Some(level),
                    ..plain
                };
            }
        }
    }
    // A leading upper-case level word: keep the line whole, take the severity.
    let first = line.split([' ', '\t', ':']).next().unwrap_or("");
    if first.len() >= 4
        && first.bytes().all(|b| b.is_ascii_uppercase())
        && severity_number(first).is_some()
    {
        return TextParts {
            level: Some(first),
            ..plain
        };
    }
    plain
}

fn looks_like_log4j_date(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20
        && b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && b.get(10) == Some(&b' ')
        && b.get(13) == Some(&b':')
        && b.get(16) == Some(&b':')
        && b.get(19) == Some(&b' ')
        && b.iter()
            .take(19)
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16) || c.is_ascii_digit())
}

/// A request id as runtimes print it; `undefined`/empty (lines written during init) are none.
fn request_id(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty() && s != "undefined" && s != "null" && !s.contains(char::is_whitespace))
        .then_some(s)
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// OpenTelemetry severity number of a level name as runtimes and logging libraries write it.
pub(crate) fn severity_number(level: &str) -> Option<SeverityNumber> {
    // Lower-cased on the stack: this runs for every line, often twice.
    let mut buf = [0u8; 11];
    let lower = match level.len() {
        n @ 3..=11 => {
            let lower = &mut buf[..n];
            lower.copy_from_slice(level.as_bytes());
            lower.make_ascii_lowercase();
            &*lower
        }
        _ => return None,
    };
    Some(match lower {
        b"trace" | b"trce" | b"finest" | b"finer" => SeverityNumber::Trace,
        b"debug" | b"dbug" | b"fine" => SeverityNumber::Debug,
        b"info" | b"information" | b"config" => SeverityNumber::Info,
        b"notice" => SeverityNumber::Info2,
        b"warn" | b"warning" => SeverityNumber::Warn,
        b"error" | b"err" | b"fail" | b"severe" => SeverityNumber::Error,
        b"fatal" | b"critical" | b"crit" => SeverityNumber::Fatal,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "79b4f56e-95b1-4643-9700-2807f4e68189";

    /// line, timestamp, request id, level, message ("" = the whole line)
    type Case = (
        String,
        Option<u64>,
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
    );

    #[test]
    fn json_lines_under_the_text_format_are_read_as_json() {
        let line = format!(
            "{{\"timestamp\":\"2024-01-01T12:00:00.123456Z\",\"level\":\"WARN\",\"message\":\"low stock\",\"requestId\":\"{ID}\",\"sku\":\"A-1\"}}\n"
        );
        let parsed = parse_log(LogLine::Text(line), 7, None);
        assert_eq!(parsed.request_id.as_deref(), Some(ID));
        assert_eq!(parsed.record.time_unix_nano, 1_704_110_400_123_456_000);
        assert_eq!(parsed.record.severity_number, SeverityNumber::Warn as i32);
        assert!(parsed.record.attributes.iter().any(|kv| kv.key == "sku"));

        // Braces that are not one JSON object stay text.
        for text in ["{not json}", "{\"a\":1} trailing", "[1,2]"] {
            let parsed = parse_log(LogLine::Text(text.to_owned()), 7, None);
            assert_eq!(parsed.record.time_unix_nano, 7, "{text}");
            assert!(parsed.record.attributes.is_empty(), "{text}");
        }
    }

    #[test]
    fn a_text_line_keeps_its_message_and_names_only_another_invocation() {
        let line = |id: &str| format!("2024-01-01T12:00:00.123Z\t{id}\tINFO\tcharged €12\r\n");
        let body = |p: &ParsedLog| match p.record.body.as_ref().and_then(|b| b.value.clone()) {
            Some(AnyVal::StringValue(s)) => s,
            other => panic!("{other:?}"),
        };
        // The running invocation's own id is not copied out: the caller has it.
        let own = parse_log(LogLine::Text(line(ID)), 7, Some(ID));
        assert_eq!(own.request_id, None);
        assert_eq!(body(&own), "charged €12");
        let other = "0f2c-other";
        let named = parse_log(LogLine::Text(line(other)), 7, Some(ID));
        assert_eq!(named.request_id.as_deref(), Some(other));
        assert_eq!(body(&named), "charged €12");
        // A level and no message: an empty body, not the line.
        for line in [
            format!("2024-01-01T12:00:00.123Z\t{ID}\tERROR\n"),
            format!("2024-01-01T12:00:00.123Z\t{ID}"),
        ] {
            let parsed = parse_log(LogLine::Text(line.clone()), 7, Some(ID));
            assert_eq!(body(&parsed), "", "{line:?}");
        }
        // A line in no known format is its own body, whole.
        let plain = parse_log(LogLine::Text("just words\n".to_owned()), 7, Some(ID));
        assert_eq!(plain.request_id, None);
        assert_eq!(body(&plain), "just words");
    }

    #[test]
    fn runtime_text_formats() {
        let cases: Vec<Case> = vec![
            (
                format!("[INFO]\t2024-01-01T12:00:00.123Z\t{ID}\tprocessing order 42\n"),
                Some(1_704_110_400_123_000_000),
                Some(ID),
                Some("INFO"),
                "processing order 42\n",
            ),
            (
                "[WARNING]\t2024-01-01T12:00:00.123Z\t\tduring init\n".to_owned(),
                Some(1_704_110_400_123_000_000),
                None,
                Some("WARNING"),
                "during init\n",
            ),
            (
                format!("2024-01-01T12:00:00.123Z\t{ID}\tERROR\tInvoke Error \t{{\"a\":1}}"),
                Some(1_704_110_400_123_000_000),
                Some(ID),
                Some("ERROR"),
                "Invoke Error \t{\"a\":1}",
            ),
            (
                "2024-01-01T12:00:00.123Z\tundefined\tINFO\tloading config".to_owned(),
                Some(1_704_110_400_123_000_000),
                None,
                Some("INFO"),
                "loading config",
            ),
            (
                format!("2024-01-01T12:00:00.123Z\t{ID}\tinfo\tdotnet line"),
                Some(1_704_110_400_123_000_000),
                Some(ID),
                Some("info"),
                "dotnet line",
            ),
            (
                format!("2024-01-01T12:00:00.123Z\t{ID}\tno level here"),
                Some(1_704_110_400_123_000_000),
                Some(ID),
                None,
                "no level here",
            ),
            (
                format!("2024-01-01 12:00:00 {ID} WARN  OrderHandler - stock low"),
                None,
                Some(ID),
                Some("WARN"),
                "",
            ),
            (
                "[Information] Orders.Api: started".to_owned(),
                None,
                None,
                Some("Information"),
                "Orders.Api: started",
            ),
            (
                "[ERROR] Runtime.ImportModuleError: Unable to import module 'app'".to_owned(),
                None,
                None,
                Some("ERROR"),
                "Runtime.ImportModuleError: Unable to import module 'app'",
            ),
            (
                format!("START RequestId: {ID} Version: $LATEST"),
                None,
                Some(ID),
                None,
                "",
            ),
            (format!("END RequestId: {ID}"), None, Some(ID), None, ""),
            (
                format!("REPORT RequestId: {ID}\tDuration: 2.00 ms"),
                None,
                Some(ID),
                None,
                "",
            ),
            ("ERROR: disk full".to_owned(), None, None, Some("ERROR"), ""),
            (
                "Error connecting is not a level".to_owned(),
                None,
                None,
                None,
                "",
            ),
            ("[not a level] text".to_owned(), None, None, None, ""),
            ("plain text".to_owned(), None, None, None, ""),
            ("".to_owned(), None, None, None, ""),
        ];
        for (line, ts, id, level, message) in &cases {
            let p = parse_text(line);
            assert_eq!(p.timestamp, *ts, "{line:?}");
            assert_eq!(p.request_id, *id, "{line:?}");
            assert_eq!(p.level, *level, "{line:?}");
            let want_message = if message.is_empty() {
                line.as_str()
            } else {
                message
            };
            assert_eq!(p.message, want_message, "{line:?}");
        }
    }

    #[test]
    fn text_parsing_never_panics_on_fragments() {
        let line = format!("[INFO]\t2024-01-01T12:00:00.123Z\t{ID}\tmsg \u{e9}\u{1F600}");
        for (i, _) in line.char_indices() {
            let _ = parse_text(&line[..i]);
            let _ = parse_text(&line[i..]);
        }
        let line = format!("2024-01-01 12:00:00 {ID} INFO x\u{1F600}");
        for (i, _) in line.char_indices() {
            let _ = parse_text(&line[..i]);
        }
    }

    #[test]
    fn severities() {
        for (level, n) in [
            ("TRACE", SeverityNumber::Trace),
            ("dbug", SeverityNumber::Debug),
            ("INFO", SeverityNumber::Info),
            ("Information", SeverityNumber::Info),
            ("notice", SeverityNumber::Info2),
            ("WARNING", SeverityNumber::Warn),
            ("warn", SeverityNumber::Warn),
            ("ERROR", SeverityNumber::Error),
            ("fail", SeverityNumber::Error),
            ("CRITICAL", SeverityNumber::Fatal),
            ("FATAL", SeverityNumber::Fatal),
        ] {
            assert_eq!(severity_number(level), Some(n), "{level}");
        }
        for level in ["", "x", "verbose-ish-level", "OK"] {
            assert_eq!(severity_number(level), None, "{level}");
        }
    }
}
