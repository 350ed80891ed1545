//! The function's sockets and which of them are established connections, by remote port.

use std::collections::HashSet;
use std::time::Duration;

use rustix::io::Errno;
use rustix::net::AddressFamily;

use super::sock_diag::{self, DiagError, SockDiag};
use super::{
    CONNECTIONS_VAR, Connections, MAX_FDS, MAX_TABLE_BYTES, Sampler, TcpReading, procfs, read_all,
};
use crate::diag;

/// How long a reading of the TCP tables stands while the function's sockets stay the same.
pub(super) const TABLE_REUSE: Duration = Duration::from_secs(1);

static TABLES_COSTLY: diag::Once = diag::Once::new();
static DIAG_REFUSED: diag::Once = diag::Once::new();

/// The kernel's socket diagnostics, as far as this process has got with them.
#[derive(Debug)]
pub(super) enum Diag {
    /// Not needed yet: opened at the first reading of connections.
    NotOpened,
    Open(SockDiag),
    /// Refused or failed once: `/proc/net/tcp` is read for the rest of the process.
    Refused,
}

impl Sampler {
    /// The socket inodes the function's processes hold; returns how many descriptors they
    /// have in all.
    pub(super) fn function_sockets(&mut self, out: &mut HashSet<u64>) -> u32 {
        let mut fds = 0;
        let mut link = Vec::with_capacity(64);
        for p in &mut self.procs {
            let Some(dir) = p.fd_dir.as_mut() else {
                continue;
            };
            dir.entries.rewind();
            let mut seen = 0;
            while let Some(Ok(entry)) = dir.entries.next() {
                let name = entry.file_name();
                if name.to_bytes().first() == Some(&b'.') {
                    continue;
                }
                seen += 1;
                if seen > MAX_FDS {
                    break;
                }
                fds += 1;
                if let Ok(target) = rustix::fs::readlinkat(&dir.fd, name, std::mem::take(&mut link))
                {
                    if let Some(inode) = procfs::socket_inode(target.as_bytes()) {
                        out.insert(inode);
                    }
                    link = target.into_bytes();
                }
            }
        }
        fds
    }

    /// The established connections whose socket is in `sockets`: `each(inode, remote port)`.
    ///
    /// The kernel walks its whole connection hash table for each read of `/proc/net/tcp`
    /// (milliseconds on a large host), so while the function's sockets are the ones of the
    /// last reading, that reading's answer stands for [`TABLE_REUSE`]: a connection the
    /// server closed (its socket still open in the function, in CLOSE_WAIT) stops counting
    /// within that time.
    pub(super) fn established(&mut self, sockets: &HashSet<u64>, mut each: impl FnMut(u64, u16)) {
        if sockets.is_empty() || self.config.connections == Connections::Off {
            return;
        }
        let now = std::time::Instant::now();
        if self.table.as_ref().is_none_or(|last| {
            last.sockets != *sockets || now.duration_since(last.at) >= TABLE_REUSE
        }) {
            let mut found = Vec::new();
            let mut bad = 0;
            // What is done once (the socket opened, the buffer grown) is not the reading's cost.
            self.prepare_diag();
            let started = thread_cpu();
            let mut keep = |c: procfs::TcpConn| {
                if sockets.contains(&c.inode) {
                    found.push((c.inode, c.remote_port));
                }
            };
            if !self.read_diag(&mut keep) {
                for f in &self.tcp {
                    if read_all(f, &mut self.buf, MAX_TABLE_BYTES).is_err() {
                        continue;
                    }
                    bad += procfs::parse_tcp(&String::from_utf8_lossy(&self.buf), &mut keep);
                }
            }
            // A read of the table is no snapshot: while connections open and close, the
            // kernel's walk can return a row twice (seen in the tests, beside other tests'
            // connections). One socket is one connection.
            found.sort_unstable();
            found.dedup_by_key(|(inode, _)| *inode);
            if bad > 0 {
                self.note_unreadable(bad.into());
            }
            let cost = thread_cpu().saturating_sub(started);
            if self.config.connections == Connections::Auto && cost > self.config.table_cpu_limit {
                TABLES_COSTLY.warn(format_args!(
                    "reading the TCP tables cost {} µs of CPU, over the {} µs allowed at this function's memory (the kernel walks a connection table sized by the machine's memory): connections are no longer read; {CONNECTIONS_VAR}=always reads them anyway",
                    cost.as_micros(),
                    self.config.table_cpu_limit.as_micros()
                ));
                self.config.connections = Connections::Off;
            }
            self.table = Some(TcpReading {
                sockets: sockets.clone(),
                established: found,
                at: now,
            });
        }
        if let Some(last) = &self.table {
            for (inode, port) in &last.established {
                each(*inode, *port);
            }
        }
    }

    /// Read the established sockets through the kernel's socket diagnostics; `false` when
    /// that is not possible (then, for the rest of the process, `/proc/net/tcp` is read: the
    /// same rows, as text). A reading that fails part-way passed nothing to `each`.
    fn read_diag(&mut self, each: &mut impl FnMut(procfs::TcpConn)) -> bool {
        let Diag::Open(diag) = &mut self.diag else {
            return false;
        };
        let mut rows = Vec::new();
        for family in [AddressFamily::INET, AddressFamily::INET6] {
            match diag.established(family, &mut self.buf, MAX_TABLE_BYTES, |c| rows.push(c)) {
                Ok(()) => {}
                // A kernel without IPv6 has no IPv6 sockets to report.
                Err(DiagError::Kernel(code))
                    if family == AddressFamily::INET6
                        && [Errno::AFNOSUPPORT, Errno::NOENT]
                            .contains(&Errno::from_raw_os_error(code)) => {}
                Err(e) => {
                    diag_refused(&e);
                    self.diag = Diag::Refused;
                    return false;
                }
            }
        }
        rows.into_iter().for_each(each);
        true
    }

    /// Open the socket diagnostics once, and give the buffer room for their answers.
    fn prepare_diag(&mut self) {
        if matches!(self.diag, Diag::NotOpened) {
            self.diag = SockDiag::open().map_or_else(
                |e| {
                    diag_refused(&e);
                    Diag::Refused
                },
                Diag::Open,
            );
        }
        if matches!(self.diag, Diag::Open(_)) {
            sock_diag::prepare(&mut self.buf);
        }
    }
}

fn diag_refused(e: &DiagError) {
    DIAG_REFUSED.at(
        diag::Level::Info,
        format_args!(
            "the kernel's socket diagnostics (NETLINK_SOCK_DIAG) answered {e}: connections are read from /proc/net/tcp instead, at a higher cost"
        ),
    );
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    super::cpu_time(rustix::time::ClockId::ThreadCPUTime)
}
