//! `contrail-floor`: the least an extension that takes in Lambda's telemetry must do, as a
//! yardstick for Contrail's CPU. It registers (INVOKE and SHUTDOWN; SHUTDOWN only on Managed
//! Instances), subscribes to the `platform` and `function` streams with Contrail's buffering,
//! answers every delivery with 200, and calls `next` until SHUTDOWN. It decodes nothing and
//! sends nothing anywhere. When `CONTRAIL_RECEIVER_ENDPOINT` is set (the bench gives it the
//! same variables as Contrail) it also answers every request there with 200, so that a
//! function's OpenTelemetry SDK costs the function the same with either extension.
//!
//! The standard library only, no async runtime: one thread per connection, a blocking
//! keep-alive connection to the Extensions API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;

type Result<T> = std::result::Result<T, String>;

/// A message's start line and its headers (names in lower case).
type Head = (String, Vec<(String, String)>);

/// Reads one HTTP/1.1 message head (start line and headers) and its body, which must have a
/// `Content-Length` (the emulator's and the SDKs' clients send one). `None` at a clean EOF.
fn read_message(reader: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> Result<Option<Head>> {
    let mut start = String::new();
    if reader.read_line(&mut start).map_err(|e| e.to_string())? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed inside a message head".into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
            if k == "content-length" {
                length = v.parse().map_err(|_| format!("bad content-length {v:?}"))?;
            }
            if k == "transfer-encoding" {
                return Err(format!("transfer-encoding {v} is not read here"));
            }
            headers.push((k, v));
        }
    }
    body.resize(length, 0);
    reader.read_exact(body).map_err(|e| e.to_string())?;
    Ok(Some((start.trim_end().to_owned(), headers)))
}

/// Answers every request on `stream` with an empty 200, until the client closes it or asks
/// for `Connection: close`.
fn answer_all(stream: TcpStream) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut body = Vec::new();
    while let Ok(Some((_, headers))) = read_message(&mut reader, &mut body) {
        let close = headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
            || close
        {
            return;
        }
    }
}

/// Accepts connections on `listener` forever: each on a thread of its own (the Telemetry
/// API keeps its connection open between batches), or one after the other on the accepting
/// thread (an SDK that closes its connection after each export), which costs no thread start
/// per request.
fn serve(listener: TcpListener, thread_per_connection: bool) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_nodelay(true);
            if thread_per_connection {
                std::thread::spawn(move || answer_all(stream));
            } else {
                answer_all(stream);
            }
        }
    });
}

/// One keep-alive connection to the Extensions and Telemetry APIs.
struct Api {
    host: String,
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    body: Vec<u8>,
}

impl Api {
    fn connect(host: &str) -> Result<Api> {
        let addr = host
            .to_socket_addrs()
            .map_err(|e| format!("{host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}: no address"))?;
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        Ok(Api {
            host: host.to_owned(),
            writer,
            reader: BufReader::new(stream),
            body: Vec::new(),
        })
    }

    /// One request; returns the status, the headers and (in `self.body`) the body.
    fn call(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Vec<(String, String)>)> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.writer
            .write_all(head.as_bytes())
            .and_then(|()| self.writer.write_all(body))
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let (start, headers) = read_message(&mut self.reader, &mut self.body)?
            .ok_or_else(|| format!("{method} {path}: connection closed"))?;
        let status = start
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{method} {path}: bad status line {start:?}"))?;
        Ok((status, headers))
    }
}

/// The `eventType` of a `next` answer.
fn event_type(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let rest = &text[text.find("\"eventType\"")? + "\"eventType\"".len()..];
    let rest = &rest[rest.find('"')? + 1..];
    Some(&rest[..rest.find('"')?])
}

fn run() -> Result<()> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").map_err(|_| "AWS_LAMBDA_RUNTIME_API")?;
    let name = std::env::args()
        .next()
        .and_then(|a| a.rsplit('/').next().map(str::to_owned))
        .ok_or("no program name")?;
    let managed = std::env::var("AWS_LAMBDA_INITIALIZATION_TYPE")
        .is_ok_and(|t| t == "lambda-managed-instances");
    if let Ok(endpoint) = std::env::var("CONTRAIL_RECEIVER_ENDPOINT") {
        let listener =
            TcpListener::bind(&endpoint).map_err(|e| format!("listen on {endpoint}: {e}"))?;
        serve(listener, false);
    }
    let telemetry = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = telemetry.local_addr().map_err(|e| e.to_string())?.port();
    serve(telemetry, true);

    let mut conn = Api::connect(&api)?;
    let events: &[u8] = if managed {
        br#"{"events":["SHUTDOWN"]}"#
    } else {
        br#"{"events":["INVOKE","SHUTDOWN"]}"#
    };
    let (status, headers) = conn.call(
        "POST",
        "/2020-01-01/extension/register",
        &[("Lambda-Extension-Name", &name)],
        events,
    )?;
    if status != 200 {
        return Err(format!("register: {status}"));
    }
    let id = headers
        .iter()
        .find(|(k, _)| k == "lambda-extension-identifier")
        .map(|(_, v)| v.clone())
        .ok_or("register: no Lambda-Extension-Identifier")?;
    let schema = if managed { "2025-01-29" } else { "2022-12-13" };
    let subscription = format!(
        r#"{{"schemaVersion":"{schema}","destination":{{"protocol":"HTTP","URI":"http://sandbox.localdomain:{port}/"}},"types":["platform","function"],"buffering":{{"maxItems":1000,"maxBytes":262144,"timeoutMs":25}}}}"#
    );
    let (status, _) = conn.call(
        "PUT",
        "/2022-07-01/telemetry",
        &[
            ("Lambda-Extension-Identifier", &id),
            ("Content-Type", "application/json"),
        ],
        subscription.as_bytes(),
    )?;
    if status != 200 {
        return Err(format!("subscribe: {status}"));
    }
    loop {
        let (status, _) = conn.call(
            "GET",
            "/2020-01-01/extension/event/next",
            &[("Lambda-Extension-Identifier", &id)],
            b"",
        )?;
        if status != 200 {
            return Err(format!("next: {status}"));
        }
        if event_type(&conn.body) == Some("SHUTDOWN") {
            return Ok(());
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("contrail-floor: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_type_is_read_from_the_next_answer() {
        let shutdown = br#"{"deadlineMs":1,"eventType":"SHUTDOWN","shutdownReason":"spindown"}"#;
        assert_eq!(event_type(shutdown), Some("SHUTDOWN"));
        assert_eq!(event_type(br#"{"eventType": "INVOKE"}"#), Some("INVOKE"));
        assert_eq!(event_type(b"{}"), None);
    }
}
