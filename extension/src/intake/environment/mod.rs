//! What the execution environment's processes use, read from `/proc`: CPU time, memory,
//! network bytes, file descriptors, threads, `/tmp` and outbound TCP connections, per
//! invocation. The decisions and their cost: `docs/adr/0016-proc-readings.md`.
//!
//! # Which processes are the function's
//!
//! An extension shares the sandbox with the runtime. The function's processes are found
//! once, at the first invocation, by this rule, which holds on Lambda and in `contrail-sim`:
//!
//! 1. the candidates are the children of Contrail's parent (Lambda's init starts the runtime
//!    and every extension; the emulator does the same), read from
//!    `/proc/<parent>/task/*/children`, except Contrail itself;
//! 2. a candidate is the runtime when its environment holds `_HANDLER` (Lambda gives it to the
//!    runtime only, and so does the emulator) and the same `AWS_LAMBDA_RUNTIME_API` as
//!    Contrail's (one emulator process can run several environments, each with its own API
//!    address); an executable under `/opt/extensions` never is;
//! 3. the function's processes are the runtime and everything it started, at most
//!    [`MAX_PROCESSES`].
//!
//! The set is looked for again at the start of an invocation when a process of it has gone,
//! when the runtime's waited-for children time moved, or when the namespace's last process id
//! (`/proc/loadavg`) moved since the last look: on Lambda the sandbox has its own PID
//! namespace, so that id moves only when something in it started a process or a thread; in
//! the emulator it is the host's and moves all the time, so the look happens at every start.
//! Subprocesses the function starts and waits for within one invocation are counted through
//! their parent's children time. On Managed Instances Contrail receives no `INVOKE` and
//! invocations run concurrently in the same processes: nothing is attributed per invocation
//! there.
//!
//! # When it reads
//!
//! At the start of an invocation (when `next` returned INVOKE: the first one is also the end
//! of init, whose figures are the processes' totals since they started), at its end (when the
//! worker is about to map its `platform.runtimeDone`, or, if that never comes, when the
//! lifecycle calls `next` again), and, for invocations longer than the sample interval, the
//! RSS at that interval. Never while the environment is idle: the timer is armed only
//! between the start and the end of an invocation. The files read every time are opened once
//! and read with `pread`.
//!
//! | figure | source |
//! |---|---|
//! | CPU user/system of the function | `/proc/PID/stat` utime+cutime, stime+cstime, clock ticks (10 ms) |
//! | Contrail's CPU | `CLOCK_PROCESS_CPUTIME_ID` (ns) |
//! | RSS peak | `VmHWM` of `/proc/PID/status` after `clear_refs` was written `5` at the start; if that is refused, the highest of the samples and the end |
//! | RSS end, samples | `/proc/PID/status` `VmRSS` (end), `/proc/PID/statm` (samples) |
//! | threads | `/proc/PID/stat` field 20 |
//! | file descriptors, sockets | `/proc/PID/fd` entries and their `socket:[inode]` links |
//! | connections | the kernel's socket diagnostics (`NETLINK_SOCK_DIAG`), else `/proc/self/net/tcp` and `tcp6`: ESTABLISHED TCP sockets whose inode one of the function's descriptors holds |
//! | network bytes | `/proc/self/net/dev`, every interface but `lo` |
//! | `/tmp` used | `statvfs("/tmp")`: on Lambda `/tmp` is a file system of its own, so blocks used are what the function wrote there, at the cost of one system call (a walk would cost one per file) |

mod config;
mod discover;
mod procfs;
mod sock_diag;
mod sockets;

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use crate::diag;

pub(crate) use config::CONNECTIONS_VAR;
#[cfg(test)]
use config::DEFAULT_SAMPLE_INTERVAL;
use config::MAX_SAMPLE_INTERVAL_MS;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use config::SAMPLE_INTERVAL_VAR;
pub use config::{Connections, EnvironmentConfig};
pub use procfs::ByPort;
use procfs::{NetDev, Stat};

/// Samples kept per invocation. When full, every other one is dropped and the interval
/// doubles, so a long invocation is still covered end to end.
pub(crate) const MAX_SAMPLES: usize = 256;
/// The function's processes followed, at most.
pub(crate) const MAX_PROCESSES: usize = 64;
/// Descriptors of one process looked at for sockets, at most.
const MAX_FDS: usize = 4096;
/// Bytes of a `/proc/net` table read, at most (a host's table, in the emulator, can be large).
const MAX_TABLE_BYTES: usize = 4 << 20;
/// Where extensions live on Lambda.
const EXTENSIONS_DIR: &[u8] = b"/opt/extensions/";
const TMP: &str = "/tmp";
const PROC: &str = "/proc";

/// What one invocation used, as measured between its start and its end.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// The invocation's request id.
    pub request_id: String,
    /// The function's processes at the end.
    pub processes: u32,
    /// User CPU time of the function's processes (and the children they waited for), seconds.
    pub cpu_user: f64,
    /// System CPU time of the function's processes, seconds.
    pub cpu_system: f64,
    /// Contrail's own CPU time over the same span, seconds.
    pub contrail_cpu: f64,
    /// RSS of the function's processes at the end, bytes.
    pub rss_end: u64,
    /// Their highest RSS during the invocation, bytes.
    pub rss_peak: u64,
    /// `true`: the peak is the kernel's (`VmHWM` after a reset); `false`: the highest sample.
    pub peak_exact: bool,
    /// Bytes received by the environment's network namespace (`lo` excluded).
    pub net_rx: Option<u64>,
    /// Bytes sent, as `net_rx`.
    pub net_tx: Option<u64>,
    /// Open file descriptors of the function's processes at the end.
    pub fds: u32,
    /// Their threads at the end.
    pub threads: u32,
    /// Bytes used on `/tmp` at the end.
    pub tmp_used: Option<u64>,
    /// Established TCP connections of the function's processes at the end, by remote port.
    pub connections: ByPort,
    /// Of those, the ones that were not established at the start.
    pub opened: ByPort,
    /// `(unix ns, RSS bytes)` during the invocation, at the sample interval.
    pub samples: Vec<(u64, u64)>,
    /// When the end was read, unix ns.
    pub end_ns: u64,
}

/// What the function's processes had used by init's end (their totals since they started).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InitUsage {
    /// User CPU time of the function's processes since they started, seconds.
    pub cpu_user: f64,
    /// System CPU time, as `cpu_user`.
    pub cpu_system: f64,
    /// Contrail's CPU since it started.
    pub contrail_cpu: f64,
    /// Their RSS at init's end, bytes.
    pub rss: u64,
    /// The lifetime peak (`VmHWM`) of the processes at init's end.
    pub rss_peak: u64,
}

/// One followed process and its files, opened once.
#[derive(Debug)]
struct Proc {
    pid: u32,
    stat: File,
    statm: File,
    status: File,
    /// `/proc/PID/fd`, opened once: its entries are listed again (rewound) at each walk and
    /// their links read relative to it.
    fd_dir: Option<FdDir>,
    /// `/proc/PID/clear_refs`, opened for writing once; `None` once opening or a write was
    /// refused, so a refusal costs one attempt, not one per invocation.
    clear_refs: Option<File>,
}

/// An open `/proc/PID/fd` and its entry reader.
struct FdDir {
    fd: rustix::fd::OwnedFd,
    entries: rustix::fs::Dir,
}

impl std::fmt::Debug for FdDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FdDir")
    }
}

impl FdDir {
    fn open(pid: u32) -> Option<FdDir> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(
            format!("{PROC}/{pid}/fd"),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let entries = rustix::fs::Dir::read_from(&fd).ok()?;
        Some(FdDir { fd, entries })
    }
}

/// The readings at the start of an invocation.
#[derive(Debug)]
struct Open {
    request_id: String,
    /// Per process: pid and its (user, system) ticks.
    cpu: Vec<(u32, u64, u64)>,
    children_ticks: u64,
    contrail_ns: Option<u64>,
    net: Option<NetDev>,
    /// Established sockets at the start (only needed when there is no earlier end to
    /// compare with).
    sockets: HashSet<u64>,
    peak_reset: bool,
    peak_sampled: u64,
    samples: Vec<(u64, u64)>,
    interval: Duration,
    next_sample: Option<Instant>,
}

/// Reads `/proc` at the start and end of each invocation; see the module documentation.
#[derive(Debug)]
pub struct Sampler {
    config: EnvironmentConfig,
    self_pid: u32,
    /// Whose children are the candidates (`None`: Contrail's parent).
    parent: Option<u32>,
    api: Option<Vec<u8>>,
    page: u64,
    tick: f64,
    procs: Vec<Proc>,
    scanned: bool,
    rescan: bool,
    /// `/proc/loadavg`, whose last field is the last process id the namespace handed out.
    loadavg: Option<File>,
    /// That id when the processes were last looked for.
    last_pid: Option<u32>,
    net_dev: Option<File>,
    /// `/proc/self/net/tcp` and `tcp6`, read when the socket diagnostics cannot be.
    tcp: Vec<File>,
    /// The socket diagnostics, opened at the first reading of connections.
    diag: sockets::Diag,
    buf: Vec<u8>,
    open: Option<Open>,
    /// The established sockets of the function at the end of the previous invocation.
    last_sockets: Option<HashSet<u64>>,
    /// The last reading of the TCP tables: the function's sockets then, and which of them
    /// were established (inode, remote port).
    table: Option<TcpReading>,
    /// Lines or files that could not be read, for Contrail's own diagnostics.
    unreadable: u64,
}

/// One reading of the TCP tables.
#[derive(Debug)]
struct TcpReading {
    /// The function's sockets then.
    sockets: HashSet<u64>,
    /// Those of them that were established: (inode, remote port).
    established: Vec<(u64, u16)>,
    at: std::time::Instant,
}

static BAD_PROC: diag::Once = diag::Once::new();

impl Sampler {
    /// The sampler of this extension: the runtime is among the children of Contrail's
    /// parent. Nothing is read until the first invocation starts.
    pub(crate) fn new(config: EnvironmentConfig) -> Sampler {
        let api = std::env::var_os(crate::config::RUNTIME_API_VAR).map(|v| v.as_bytes().to_vec());
        Sampler::with_scope(config, None, api)
    }

    /// A sampler that looks for the runtime among the children of `parent` (Contrail's own
    /// parent when `None`) whose `AWS_LAMBDA_RUNTIME_API` is `api` (any, when `None`). For
    /// the benchmark and the tests, which start the runtime themselves.
    pub fn with_scope(
        config: EnvironmentConfig,
        parent: Option<u32>,
        api: Option<Vec<u8>>,
    ) -> Sampler {
        Sampler {
            config,
            self_pid: std::process::id(),
            parent,
            api,
            page: rustix::param::page_size() as u64,
            tick: rustix::param::clock_ticks_per_second().max(1) as f64,
            procs: Vec::new(),
            scanned: false,
            rescan: false,
            loadavg: None,
            last_pid: None,
            net_dev: None,
            tcp: Vec::new(),
            diag: sockets::Diag::NotOpened,
            buf: Vec::with_capacity(4096),
            open: None,
            last_sockets: None,
            table: None,
            unreadable: 0,
        }
    }

    /// The request being measured.
    pub fn open_request(&self) -> Option<&str> {
        self.open.as_ref().map(|o| o.request_id.as_str())
    }

    /// When the next RSS sample is due (`None` outside invocations).
    pub fn sample_due(&self) -> Option<Instant> {
        self.open.as_ref()?.next_sample
    }

    /// An invocation started. Returns the init figures on the first call. An invocation
    /// still open (its end never came) is ended first and returned.
    pub fn begin(
        &mut self,
        request_id: &str,
        now: Instant,
        now_ns: u64,
    ) -> (Option<Usage>, Option<InitUsage>) {
        let previous = self.end(now_ns);
        let first = !self.scanned;
        let last_pid = self.last_pid();
        if first || self.rescan || last_pid != self.last_pid {
            self.discover();
            self.last_pid = last_pid;
        }
        let mut init = None;
        let mut cpu = Vec::with_capacity(self.procs.len());
        let mut children_ticks = 0;
        let mut rss = 0;
        let mut hwm = 0;
        let mut gone = false;
        for p in &self.procs {
            match read_stat(&p.stat, &mut self.buf) {
                Some(s) => {
                    cpu.push((p.pid, s.utime + s.cutime, s.stime + s.cstime));
                    children_ticks += s.cutime + s.cstime;
                    rss += s.rss_pages * self.page;
                }
                None => gone = true,
            }
            if first {
                hwm += read_status(&p.status, &mut self.buf).hwm.unwrap_or(0);
            }
        }
        self.rescan = gone;
        let contrail_ns = contrail_cpu_ns();
        if first {
            let (user, system) = cpu
                .iter()
                .fold((0, 0), |(u, s), (_, pu, ps)| (u + pu, s + ps));
            init = Some(InitUsage {
                cpu_user: user as f64 / self.tick,
                cpu_system: system as f64 / self.tick,
                contrail_cpu: contrail_ns.unwrap_or(0) as f64 / 1e9,
                rss,
                rss_peak: hwm.max(rss),
            });
        }
        // The peak is exact only if every process's was reset; after one refuses, the others
        // need not be (the peak then comes from the samples).
        let peak_reset = !self.procs.is_empty() && self.procs.iter_mut().all(Proc::reset_peak);
        let net = self.read_net_dev();
        let sockets = if self.last_sockets.is_none() {
            let mut sockets = HashSet::new();
            self.function_sockets(&mut sockets);
            let mut established = HashSet::new();
            self.established(&sockets, |inode, _| {
                established.insert(inode);
            });
            established
        } else {
            HashSet::new()
        };
        let interval = self.config.sample_interval;
        self.open = Some(Open {
            request_id: request_id.to_owned(),
            cpu,
            children_ticks,
            contrail_ns,
            net,
            sockets,
            peak_reset,
            peak_sampled: rss,
            samples: Vec::new(),
            interval: interval.unwrap_or(Duration::ZERO),
            next_sample: interval.map(|i| now + i),
        });
        (previous, init)
    }

    /// Take one RSS sample (called by the worker when [`Sampler::sample_due`] passed).
    pub fn sample(&mut self, now: Instant, now_ns: u64) {
        let mut total = 0;
        for p in &self.procs {
            if let Some(pages) = read_text(&p.statm, &mut self.buf).and_then(procfs::parse_statm) {
                total += pages * self.page;
            }
        }
        let Some(open) = self.open.as_mut() else {
            return;
        };
        open.peak_sampled = open.peak_sampled.max(total);
        if open.samples.len() >= MAX_SAMPLES {
            let mut keep = false;
            open.samples.retain(|_| {
                keep = !keep;
                keep
            });
            open.interval = open
                .interval
                .saturating_mul(2)
                .min(Duration::from_millis(MAX_SAMPLE_INTERVAL_MS));
        }
        open.samples.push((now_ns, total));
        // No timer when the instant cannot be represented (it would never come anyway).
        open.next_sample = now.checked_add(open.interval);
    }

    /// The invocation ended: what it used. `None` when none is open.
    pub fn end(&mut self, now_ns: u64) -> Option<Usage> {
        let open = self.open.take()?;
        let mut usage = Usage {
            request_id: open.request_id,
            end_ns: now_ns,
            samples: open.samples,
            peak_exact: open.peak_reset,
            ..Usage::default()
        };
        let (mut user, mut system, mut children) = (0, 0, 0);
        let (mut hwm, mut bad) = (0, 0);
        for p in &self.procs {
            let Some(s) = read_stat(&p.stat, &mut self.buf) else {
                self.rescan = true;
                continue;
            };
            usage.processes += 1;
            usage.threads += s.threads as u32;
            children += s.cutime + s.cstime;
            if let Some((_, u0, s0)) = open.cpu.iter().find(|(pid, _, _)| *pid == p.pid) {
                user += (s.utime + s.cutime).saturating_sub(*u0);
                system += (s.stime + s.cstime).saturating_sub(*s0);
            }
            let status = read_status(&p.status, &mut self.buf);
            bad += u64::from(status.bad_lines);
            usage.rss_end += status.rss.unwrap_or(s.rss_pages * self.page);
            hwm += status.hwm.unwrap_or(0);
        }
        if bad > 0 {
            self.note_unreadable(bad);
        }
        if children != open.children_ticks {
            // The function waits for subprocesses: look for new ones at the next start.
            self.rescan = true;
        }
        usage.cpu_user = user as f64 / self.tick;
        usage.cpu_system = system as f64 / self.tick;
        usage.contrail_cpu = match (open.contrail_ns, contrail_cpu_ns()) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
            _ => 0.0,
        };
        let sampled = open.peak_sampled.max(usage.rss_end);
        usage.rss_peak = if open.peak_reset {
            hwm.max(sampled)
        } else {
            sampled
        };
        if let (Some(a), Some(b)) = (open.net, self.read_net_dev()) {
            usage.net_rx = Some(b.rx_bytes.saturating_sub(a.rx_bytes));
            usage.net_tx = Some(b.tx_bytes.saturating_sub(a.tx_bytes));
        }
        usage.tmp_used = rustix::fs::statvfs(TMP)
            .ok()
            .map(|v| v.f_blocks.saturating_sub(v.f_bfree) * v.f_frsize);
        let mut sockets = HashSet::new();
        usage.fds = self.function_sockets(&mut sockets);
        let before = self.last_sockets.take().unwrap_or(open.sockets);
        let mut established = HashSet::new();
        let (mut connections, mut opened) = (ByPort::new(), ByPort::new());
        self.established(&sockets, |inode, port| {
            established.insert(inode);
            *connections.entry(port).or_default() += 1;
            if !before.contains(&inode) {
                *opened.entry(port).or_default() += 1;
            }
        });
        usage.connections = connections;
        usage.opened = opened;
        self.last_sockets = Some(established);
        Some(usage)
    }

    fn note_unreadable(&mut self, n: u64) {
        self.unreadable += n;
        BAD_PROC.warn(format_args!(
            "some /proc lines of the function's processes could not be parsed; their figures are left out"
        ));
    }

    fn read_net_dev(&mut self) -> Option<NetDev> {
        let f = self.net_dev.as_ref()?;
        read_all(f, &mut self.buf, MAX_TABLE_BYTES).ok()?;
        let n = procfs::parse_net_dev(&String::from_utf8_lossy(&self.buf));
        if n.bad_lines > 0 {
            self.note_unreadable(n.bad_lines.into());
        }
        Some(n)
    }
}

fn open_proc(pid: u32) -> Option<Proc> {
    let base = format!("{PROC}/{pid}");
    Some(Proc {
        pid,
        stat: File::open(format!("{base}/stat")).ok()?,
        statm: File::open(format!("{base}/statm")).ok()?,
        status: File::open(format!("{base}/status")).ok()?,
        fd_dir: FdDir::open(pid),
        clear_refs: OpenOptions::new()
            .write(true)
            .open(format!("{base}/clear_refs"))
            .ok(),
    })
}

impl Proc {
    /// Reset the process's `VmHWM` to its current RSS; `false` when that is not permitted.
    fn reset_peak(&mut self) -> bool {
        let written = self
            .clear_refs
            .as_ref()
            .is_some_and(|f| f.write_all_at(b"5", 0).is_ok());
        if !written {
            self.clear_refs = None;
        }
        written
    }
}

/// CPU time of `clock` (this process, or the calling thread).
fn cpu_time(clock: rustix::time::ClockId) -> Duration {
    let t = rustix::time::clock_gettime(clock);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

fn contrail_cpu_ns() -> Option<u64> {
    u64::try_from(cpu_time(rustix::time::ClockId::ProcessCPUTime).as_nanos()).ok()
}

fn read_file(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

/// Read a whole `/proc` file from offset 0 into `buf` (at most `max` bytes). Until a read
/// returns nothing: the network tables answer a page at a time, so a short read is not the end.
fn read_all(f: &File, buf: &mut Vec<u8>, max: usize) -> io::Result<()> {
    buf.clear();
    let mut off = 0;
    let mut chunk = 16 * 1024;
    loop {
        let want = chunk.min(max.saturating_sub(off));
        if want == 0 {
            return Ok(());
        }
        buf.resize(off + want, 0);
        let n = f.read_at(buf.get_mut(off..).unwrap_or_default(), off as u64)?;
        off += n;
        buf.truncate(off);
        if n == 0 {
            return Ok(());
        }
        chunk = (chunk * 2).min(256 * 1024);
    }
}

/// A file of one record (`stat`, `statm`, `status`, `loadavg`): the kernel writes it whole
/// into one read that is large enough, so a read that did not fill the buffer is all of it.
fn read_text<'a>(f: &File, buf: &'a mut Vec<u8>) -> Option<&'a str> {
    const ONE_READ: usize = 4096;
    buf.clear();
    buf.resize(ONE_READ, 0);
    let n = f.read_at(buf, 0).ok()?;
    buf.truncate(n);
    if n == ONE_READ {
        read_all(f, buf, 64 * 1024).ok()?;
    }
    if buf.is_empty() {
        // A process that has exited reads as empty.
        return None;
    }
    std::str::from_utf8(buf).ok()
}

fn read_stat(f: &File, buf: &mut Vec<u8>) -> Option<Stat> {
    procfs::parse_stat(read_text(f, buf)?)
}

fn read_status(f: &File, buf: &mut Vec<u8>) -> procfs::Status {
    read_text(f, buf)
        .map(procfs::parse_status)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
