//! `contrail-bench runtime`: a Lambda runtime written with the standard library alone. It
//! answers every invocation with `{}` after printing `BENCH_LINES` log lines (default 0),
//! spending `BENCH_WORK_MS` of CPU time (default 0; a Python runtime spends about 2 ms per
//! invocation of its own) and, when `BENCH_OTLP_ENDPOINT` (`host:port`) is set, exporting one
//! span to it as an OpenTelemetry SDK would (OTLP/HTTP protobuf, in the invocation's trace).
//! With `BENCH_UNIQUE_LINES` set, each line starts with [`UNIQUE_PREFIX`], the request id and
//! its number, so that a sink can tell duplicates from repeats.
//! With `BENCH_SAMPLES` (a file), each invocation appends the resident set (`VmRSS`, kB) and
//! the open descriptors of the extension process named `BENCH_SAMPLE_EXTENSION`, its sibling
//! under the emulator: the soak scenario's per-invocation figures.
//! It starts in about a millisecond, so that the extension's own cost is not hidden behind the
//! function's.
//!
//! Its HTTP client ([`http`]) is the few lines below rather than hyper's, which the workspace
//! has: hyper needs a tokio runtime in this process, and with it the runtime took 0.15–0.2 ms
//! longer from spawn to its first request, even with a blocking connect (median of 600
//! interleaved spawns each: 1.08 ms here, 1.27 ms with hyper). That time is in the init phase of the runs with and without Contrail alike, so it
//! would shrink the ratio of the two without Contrail getting any faster. The end-mode
//! scenario times its round trips to the sink with the same client.

/// What starts every line when `BENCH_UNIQUE_LINES` is set.
pub(crate) const UNIQUE_PREFIX: &str = "bench-line ";

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// The bytes of a hex string (`Root` and `Parent` of an X-Ray header).
fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// One span of the invocation whose X-Ray header is `trace`, as an SDK exports it.
fn span_request(trace: &str, n: u64) -> Vec<u8> {
    let field = |key: &str| {
        trace
            .split(';')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    };
    let trace_id = field("Root")
        .map(|r| r.strip_prefix("1-").unwrap_or(r).replace('-', ""))
        .and_then(|h| hex_bytes(&h))
        .unwrap_or_else(|| vec![1; 16]);
    let parent = field("Parent").and_then(hex_bytes).unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let span = Span {
        trace_id,
        span_id: (n + 1).to_be_bytes().to_vec(),
        parent_span_id: parent,
        name: "handle-order".to_owned(),
        kind: 1,
        start_time_unix_nano: now.saturating_sub(1_000_000),
        end_time_unix_nano: now,
        ..Span::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

/// CPU time this thread has used (`/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("bad schedstat {stat:?}"))?;
    Ok(Duration::from_nanos(ns))
}

/// Spends `cpu` of CPU time on this thread, whatever share of a CPU it gets.
fn work(cpu: Duration) -> Result<u64> {
    let until = thread_cpu()? + cpu;
    let mut sum = 0u64;
    while thread_cpu()? < until {
        for i in 0..1_000u64 {
            sum = sum.wrapping_mul(31).wrapping_add(i);
        }
    }
    Ok(sum)
}

pub(crate) fn main() -> Result<()> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").context("AWS_LAMBDA_RUNTIME_API")?;
    let addr = resolve(&api)?;
    let lines: u32 = match std::env::var("BENCH_LINES") {
        Ok(v) => v.trim().parse().context("BENCH_LINES")?,
        Err(_) => 0,
    };
    let work_ms: u64 = match std::env::var("BENCH_WORK_MS") {
        Ok(v) => v.trim().parse().context("BENCH_WORK_MS")?,
        Err(_) => 0,
    };
    let unique = std::env::var_os("BENCH_UNIQUE_LINES").is_some();
    let otlp = match std::env::var("BENCH_OTLP_ENDPOINT") {
        Ok(v) => Some(resolve(&v)?),
        Err(_) => None,
    };
    let mut sampler = match std::env::var("BENCH_SAMPLES") {
        Ok(path) => {
            let name = std::env::var("BENCH_SAMPLE_EXTENSION").context("BENCH_SAMPLE_EXTENSION")?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("open {path}"))?;
            Some((name, None, std::io::BufWriter::new(file)))
        }
        Err(_) => None,
    };
    for n in 0u64.. {
        let next = http(addr, "GET", "/2018-06-01/runtime/invocation/next", "", &[])?;
        if let Some((name, pid, out)) = &mut sampler {
            let found = match *pid {
                Some(pid) => pid,
                None => sibling(name)?,
            };
            *pid = Some(found);
            let (rss, fds) = rss_and_fds(found)?;
            writeln!(out, "{n} {rss} {fds}")?;
            out.flush()?;
        }
        let request_id = next
            .header("lambda-runtime-aws-request-id")
            .ok_or_else(|| anyhow!("next: no Lambda-Runtime-Aws-Request-Id"))?
            .to_owned();
        if let Some(otlp) = otlp {
            let trace = next.header("lambda-runtime-trace-id").unwrap_or_default();
            let sent = http(
                otlp,
                "POST",
                "/v1/traces",
                "application/x-protobuf",
                &span_request(trace, n),
            )?;
            if sent.status != 200 {
                bail!("span export answered {}", sent.status);
            }
        }
        if work_ms > 0 {
            std::hint::black_box(work(Duration::from_millis(work_ms))?);
        }
        if lines > 0 {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for i in 0..lines {
                if unique {
                    // Each line told apart from every other, to count duplicates at the sink.
                    write!(out, "{UNIQUE_PREFIX}{request_id}/{i} ")?;
                }
                writeln!(
                    out,
                    "INFO\tprocessed order {i} for customer c-{} in {} ms (items={})",
                    i * 7 % 1_000,
                    i % 40,
                    i % 9 + 1
                )?;
            }
            out.flush()?;
        }
        http(
            addr,
            "POST",
            &format!("/2018-06-01/runtime/invocation/{request_id}/response"),
            "application/json",
            b"{}",
        )?;
    }
    Ok(())
}

/// The process named `name` (its `comm`) whose parent is this process's parent.
fn sibling(name: &str) -> Result<u32> {
    let ppid = |pid: &str| -> Option<String> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid ...`: the command may hold spaces, the last `)` ends it.
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split_whitespace().nth(1).map(str::to_owned)
    };
    let parent = ppid("self").ok_or_else(|| anyhow!("no parent"))?;
    for entry in std::fs::read_dir("/proc")? {
        let file_name = entry?.file_name();
        let pid = file_name.to_string_lossy();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == name && ppid(&pid).as_deref() == Some(parent.as_str()) {
            return Ok(pid.parse()?);
        }
    }
    bail!("no process {name:?} beside this runtime")
}

/// `VmRSS` (kB) and the number of open descriptors of `pid`.
fn rss_and_fds(pid: u32) -> Result<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    Ok((rss, fds))
}

fn resolve(host_port: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    host_port
        .to_socket_addrs()
        .with_context(|| format!("resolve {host_port}"))?
        .next()
        .ok_or_else(|| anyhow!("{host_port}: no address"))
}

pub(crate) struct Response {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a new connection; reads the whole response.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Response> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        let _ = write!(head, "Content-Type: {content_type}\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{method} {path}: bad status line {line:?}"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest)?;
    Ok(Response { status, headers })
}
