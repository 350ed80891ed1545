//! The environment sampler against real processes: this test process stands in for Lambda's
//! init (the parent), `bash` children stand in for the runtime and for another extension, and
//! a loopback listener for a database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use contrail::{Connections, EnvironmentConfig, Sampler};
use tokio::time::Instant;

const API: &str = "127.0.0.1:9999";

/// A `bash` child that runs each line it is sent and answers `ok` after each.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<std::process::ChildStdout>,
}

impl Shell {
    fn start(vars: &[(&str, &str)]) -> Shell {
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg("while read -r line; do eval \"$line\"; echo ok; done")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("bash");
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Shell { child, stdin, out }
    }

    fn run(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        let mut answer = String::new();
        self.out.read_line(&mut answer).unwrap();
        assert_eq!(answer.trim(), "ok", "{line}");
    }

    fn ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 1..];
        let f: Vec<u64> = after
            .split_whitespace()
            .skip(11)
            .take(4)
            .map(|x| x.parse().unwrap())
            .collect();
        f.iter().sum()
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn the_runtime_is_found_and_only_its_connections_and_cpu_are_counted() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Keep every accepted connection open for the test's length.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let mut runtime = Shell::start(&[("_HANDLER", "app.handler"), ("AWS_LAMBDA_RUNTIME_API", API)]);
    // Another extension (no _HANDLER) and the runtime of another environment (another API
    // address): both connect too, and neither may be counted.
    let mut extension = Shell::start(&[("AWS_LAMBDA_RUNTIME_API", API)]);
    let mut other_env = Shell::start(&[
        ("_HANDLER", "app.handler"),
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9998"),
    ]);
    for s in [&mut runtime, &mut extension, &mut other_env] {
        s.run("true");
    }

    let mut sampler = Sampler::with_scope(
        EnvironmentConfig {
            sample_interval: Some(Duration::from_millis(250)),
            // `auto` stops reading after a reading over its limit, which this host's large
            // connection table can cost; the test needs every reading.
            connections: Connections::Always,
            ..EnvironmentConfig::default()
        },
        Some(std::process::id()),
        Some(API.as_bytes().to_vec()),
    );
    let (previous, init) = sampler.begin("r1", Instant::now(), now_ns());
    assert!(previous.is_none());
    assert!(init.is_some(), "the first start is init's end");
    assert!(
        sampler.sample_due().is_some(),
        "armed while the invocation runs"
    );
    let before = runtime.ticks();
    runtime.run(&format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port}; exec 4<>/dev/tcp/127.0.0.1/{port}"
    ));
    runtime.run("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done");
    extension.run(&format!("exec 3<>/dev/tcp/127.0.0.1/{port}"));
    other_env.run(&format!("exec 3<>/dev/tcp/127.0.0.1/{port}"));
    sampler.sample(Instant::now(), now_ns());
    let after = runtime.ticks();
    let usage = sampler.end(now_ns()).expect("open");
    assert!(sampler.sample_due().is_none(), "no timer once it ended");

    assert_eq!(usage.request_id, "r1");
    assert_eq!(usage.processes, 1, "the runtime alone: {usage:?}");
    assert_eq!(usage.threads, 1);
    // stdin, stdout, stderr... and the two sockets.
    assert!(usage.fds >= 4, "{usage:?}");
    assert_eq!(usage.connections.get(&port), Some(&2), "{usage:?}");
    assert_eq!(usage.opened.get(&port), Some(&2), "{usage:?}");
    // The same ticks as the runtime's own stat, read around the same span (one tick apart
    // at most for what bash did between the reads).
    let ticks = ((usage.cpu_user + usage.cpu_system) * 100.0).round() as u64;
    assert!(
        ticks.abs_diff(after - before) <= 1,
        "{ticks} ticks reported, {} measured",
        after - before
    );
    assert!(
        usage.rss_end > 0 && usage.rss_peak >= usage.rss_end,
        "{usage:?}"
    );
    assert_eq!(usage.samples.len(), 1);

    // The next invocation: the connections are still there, none of them new.
    let _ = sampler.begin("r2", Instant::now(), now_ns());
    let usage = sampler.end(now_ns()).expect("open");
    assert_eq!(usage.connections.get(&port), Some(&2));
    assert!(usage.opened.is_empty(), "{usage:?}");

    // One closed, one opened: 2 established, 1 opened.
    let _ = sampler.begin("r3", Instant::now(), now_ns());
    runtime.run(&format!("exec 3>&-; exec 5<>/dev/tcp/127.0.0.1/{port}"));
    let usage = sampler.end(now_ns()).expect("open");
    assert_eq!(usage.connections.get(&port), Some(&2));
    assert_eq!(usage.opened.get(&port), Some(&1));

    // A subprocess the runtime started and keeps (not waited for) is found at the next start.
    runtime.run("sleep 30 &");
    let _ = sampler.begin("r4", Instant::now(), now_ns());
    let usage = sampler.end(now_ns()).expect("open");
    assert_eq!(usage.processes, 2, "{usage:?}");
}

#[test]
fn a_connection_the_server_closed_stops_counting_within_a_second() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (close, closed) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        closed.recv().unwrap();
        drop(stream);
    });
    // An API address of its own: the other tests' runtimes run beside this one.
    let api = "127.0.0.1:9997";
    let mut runtime = Shell::start(&[("_HANDLER", "app.handler"), ("AWS_LAMBDA_RUNTIME_API", api)]);
    runtime.run("true");
    let mut sampler = Sampler::with_scope(
        EnvironmentConfig {
            sample_interval: None,
            connections: Connections::Always,
            ..EnvironmentConfig::default()
        },
        Some(std::process::id()),
        Some(api.as_bytes().to_vec()),
    );
    let _ = sampler.begin("r1", Instant::now(), now_ns());
    runtime.run(&format!("exec 3<>/dev/tcp/127.0.0.1/{port}"));
    let usage = sampler.end(now_ns()).expect("open");
    assert_eq!(usage.connections.get(&port), Some(&1), "{usage:?}");

    // The server closes it; the runtime keeps its descriptor (CLOSE_WAIT).
    close.send(()).unwrap();
    std::thread::sleep(Duration::from_millis(1_100));
    let _ = sampler.begin("r2", Instant::now(), now_ns());
    let usage = sampler.end(now_ns()).expect("open");
    assert!(usage.connections.is_empty(), "{usage:?}");
    assert!(usage.fds >= 4, "the socket is still held: {usage:?}");
}

#[test]
fn without_a_runtime_nothing_is_attributed() {
    let mut sampler = Sampler::with_scope(
        EnvironmentConfig::default(),
        Some(std::process::id()),
        Some(b"127.0.0.1:1".to_vec()),
    );
    let _ = sampler.begin("r1", Instant::now(), now_ns());
    let usage = sampler.end(now_ns()).expect("open");
    assert_eq!(usage.processes, 0);
    assert_eq!((usage.cpu_user, usage.cpu_system), (0.0, 0.0));
    assert!(usage.connections.is_empty());
}
