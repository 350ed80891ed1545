//! Export requests are in origin form (RFC 9112 §3.2.1): `POST /v1/traces HTTP/1.1` with a
//! `Host` header, never `POST http://host:port/v1/traces`. Shown twice: against a small server
//! that records each request line as it arrives on the socket, and against Python's
//! `http.server`, which answers 404 to an absolute-form target.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tokio::time::Instant;

use super::delivery;
use crate::diag::{DropReason, Stats};
use crate::pipeline::Signals;

fn spans_and_logs(spans: usize, logs: usize) -> Signals {
    Signals {
        spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..spans)
                    .map(|i| Span {
                        trace_id: vec![7; 16],
                        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                        name: format!("span-{i}"),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..logs).map(|_| LogRecord::default()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// What the recording server saw of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    request_line: String,
    host: Option<String>,
}

/// An HTTP/1.1 server on loopback that records the request line and `Host` of every request,
/// reads its body by `Content-Length` and answers `200` with an empty body (keep-alive). Plain
/// blocking sockets, one thread per connection: nothing between the bytes and the record.
fn recording_server() -> (u16, Arc<Mutex<Vec<Head>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        // Serves until accepting fails, which ends the thread with the test process.
        for stream in listener.incoming().map_while(Result::ok) {
            let seen = seen.clone();
            std::thread::spawn(move || serve_recording(stream, &seen));
        }
    });
    (port, heads)
}

fn serve_recording(stream: std::net::TcpStream, seen: &Mutex<Vec<Head>>) {
    let mut write = stream.try_clone().unwrap();
    let mut read = BufReader::new(stream);
    // One request per turn, until the client closes the connection.
    let mut request_line = String::new();
    while read.read_line(&mut request_line).unwrap_or(0) > 0 {
        let (mut host, mut length) = (None, 0usize);
        loop {
            let mut line = String::new();
            read.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "host" => host = Some(value.trim().to_owned()),
                "content-length" => length = value.trim().parse().unwrap(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        read.read_exact(&mut body).unwrap();
        seen.lock().unwrap().push(Head {
            request_line: request_line.trim_end().to_owned(),
            host,
        });
        write
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
        request_line.clear();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_export_request_line_is_in_origin_form_with_the_endpoint_in_host() {
    let (port, heads) = recording_server();
    let base = format!("http://127.0.0.1:{port}");
    let traces = format!("{base}/custom/v1/traces?tenant=a");
    let (mut d, _) = delivery(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &base),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces),
    ]);
    d.push(spans_and_logs(3, 2));
    let outcome = d.flush(Instant::now() + Duration::from_secs(20)).await;
    assert!(outcome.complete, "{outcome:?}");
    assert_eq!(outcome.exported, 5);

    let mut lines: Vec<String> = heads
        .lock()
        .unwrap()
        .iter()
        .map(|h| h.request_line.clone())
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "POST /custom/v1/traces?tenant=a HTTP/1.1",
            "POST /v1/logs HTTP/1.1",
            // Self-telemetry, in its own request: this flush had no metrics of its own.
            "POST /v1/metrics HTTP/1.1",
        ]
    );
    let host = format!("127.0.0.1:{port}");
    for head in heads.lock().unwrap().iter() {
        assert_eq!(head.host.as_deref(), Some(host.as_str()), "{head:?}");
    }
}

/// A strict HTTP/1.1 origin server on Python's `http.server`: `200` to `POST` on the three
/// OTLP paths, `404` to any other target (an absolute-form one among them); it prints its port,
/// then the target of every request.
const STRICT_ORIGIN: &str = r#"
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        print(self.path, flush=True)
        ok = self.path in ("/v1/traces", "/v1/metrics", "/v1/logs")
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The Python server, running; killed when dropped.
struct StrictOrigin {
    child: Child,
    port: u16,
    targets: Arc<Mutex<Vec<String>>>,
}

impl StrictOrigin {
    fn start() -> StrictOrigin {
        let mut child = Command::new("python3")
            .args(["-c", STRICT_ORIGIN])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 is needed for this test (it is on every machine of this kind)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines
            .next()
            .expect("the server printed its port")
            .unwrap()
            .parse()
            .unwrap();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = targets.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                seen.lock().unwrap().push(line);
            }
        });
        StrictOrigin {
            child,
            port,
            targets,
        }
    }
}

impl Drop for StrictOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3"]
async fn a_strict_origin_server_accepts_every_record() {
    let server = StrictOrigin::start();
    let endpoint = format!("http://127.0.0.1:{}", server.port);
    let (mut d, stats) = delivery(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    d.push(spans_and_logs(20, 5));
    let outcome = d.flush(Instant::now() + Duration::from_secs(20)).await;
    assert!(outcome.complete, "{outcome:?}");
    assert_eq!(outcome.exported, 25, "{outcome:?}");
    assert_eq!(outcome.dropped, 0, "{outcome:?}");
    assert!(outcome.self_telemetry_sent, "{outcome:?}");
    assert_eq!(Stats::get(&stats.exported_records), 25);
    assert_eq!(stats.dropped_total(DropReason::Rejected), 0);
    assert_eq!(stats.dropped_total(DropReason::ExportFailed), 0);

    // The server prints each path before it answers, but the thread reading its output may
    // not have taken the last line yet: wait for it, boundedly.
    let seen = Instant::now() + Duration::from_secs(5);
    while server.targets.lock().unwrap().len() < 3 && Instant::now() < seen {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut targets = server.targets.lock().unwrap().clone();
    targets.sort();
    assert_eq!(targets, ["/v1/logs", "/v1/metrics", "/v1/traces"]);
}
