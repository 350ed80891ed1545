//! What the `/proc` readings cost per invocation (`intake::environment`), against a real
//! process: a `bash` child standing in for the runtime, holding three TCP connections.
//!
//! - `environment/invocation`: `Sampler::begin` + `Sampler::end`, the processes already
//!   known: what every invocation costs on Lambda, where the sandbox's PID namespace is its own
//!   and the processes are looked for again only after something in it started a process. Run
//!   it in a PID namespace of its own for that figure (`unshare --pid --fork --mount-proc`):
//!   in the host's, the namespace's last pid moves with every process the machine starts, and
//!   some iterations look for the processes again;
//! - `environment/first_invocation`: a new sampler each time, so the processes are looked for
//!   and their files opened: the first invocation, and every one in the emulator;
//! - `environment/sample`: one RSS sample.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::time::Instant;

use contrail::{Connections, EnvironmentConfig, Sampler};

const API: &str = "127.0.0.1:9999";

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn sampler() -> Sampler {
    Sampler::with_scope(
        EnvironmentConfig {
            sample_interval: Some(Duration::from_millis(250)),
            connections: Connections::Always,
            ..EnvironmentConfig::default()
        },
        Some(std::process::id()),
        Some(API.as_bytes().to_vec()),
    )
}

fn bench(c: &mut Criterion) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} 4<>/dev/tcp/127.0.0.1/{port} 5<>/dev/tcp/127.0.0.1/{port}; echo ready; read -r x"
        ))
        .env_clear()
        .env("_HANDLER", "app.handler")
        .env("AWS_LAMBDA_RUNTIME_API", API)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("bash");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");

    // The sampler must see the runtime and its connections, or the figures mean nothing.
    let mut s = sampler();
    let _ = s.begin("check", Instant::now(), now_ns());
    let usage = s.end(now_ns()).unwrap();
    assert_eq!(usage.processes, 1);
    assert_eq!(usage.connections.get(&port), Some(&3));

    let mut group = c.benchmark_group("environment");
    group.throughput(Throughput::Elements(1));
    group.bench_function("invocation", |b| {
        b.iter(|| {
            let _ = s.begin("r", Instant::now(), now_ns());
            black_box(s.end(now_ns()))
        })
    });
    group.bench_function("first_invocation", |b| {
        b.iter(|| {
            let mut fresh = sampler();
            let _ = fresh.begin("r", Instant::now(), now_ns());
            black_box(fresh.end(now_ns()))
        })
    });
    let _ = s.begin("r", Instant::now(), now_ns());
    group.bench_function("sample", |b| b.iter(|| s.sample(Instant::now(), now_ns())));
    group.finish();
    let _ = child.stdin.take().map(|mut i| writeln!(i, "done"));
    let _ = child.kill();
    let _ = child.wait();
}

criterion_group!(benches, bench);
criterion_main!(benches);
