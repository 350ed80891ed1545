//! `contrail-bench runtime`: a Lambda runtime written with the standard library alone. It
//! answers every invocation with `{}` after printing `BENCH_LINES` log lines (default 0), and
//! starts in about a millisecond, so that the extension's own cost is not hidden behind the
//! function's.
//!
//! Its HTTP client ([`http`]) is the few lines below rather than hyper's, which the workspace
//! has: hyper needs a tokio runtime in this process, and with it the runtime took 0.15–0.2 ms
//! longer from spawn to its first request, even with a blocking connect (median of 600
//! interleaved spawns each: 1.08 ms here, 1.27 ms with hyper). That time is in the init phase of the runs with and without Contrail alike, so it
//! would shrink the ratio of the two without Contrail getting any faster. The end-mode
//! scenario times its round trips to the sink with the same client.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use anyhow::{Context, Result, anyhow};
pub(crate) fn main() -> Result<()> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").context("AWS_LAMBDA_RUNTIME_API")?;
    let addr = resolve(&api)?;
    let lines: u32 = match std::env::var("BENCH_LINES") {
        Ok(v) => v.trim().parse().context("BENCH_LINES")?,
        Err(_) => 0,
    };
    loop {
        let next = http(addr, "GET", "/2018-06-01/runtime/invocation/next", "", &[])?;
        let request_id = next
            .header("lambda-runtime-aws-request-id")
            .ok_or_else(|| anyhow!("next: no Lambda-Runtime-Aws-Request-Id"))?
            .to_owned();
        if lines > 0 {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for i in 0..lines {
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
