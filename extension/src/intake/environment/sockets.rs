//! The function's sockets and which of them are established connections, by remote port.

use std::collections::HashSet;
use std::time::Duration;

use super::{
    CONNECTIONS_VAR, Connections, MAX_FDS, MAX_TABLE_BYTES, Sampler, TcpReading, procfs, read_all,
};
use crate::diag;

/// In `auto`, a reading of the TCP tables that costs Contrail more CPU than this turns the
/// readings off. The kernel walks its whole connection hash table for each read, and that table
/// is sized by the machine's memory: a few thousand buckets in a Lambda environment (tens of
/// microseconds), 262,144 on a 24 GB host running the emulator (about 3.5 ms per table).
const TABLE_CPU_LIMIT: Duration = Duration::from_millis(1);

/// How long a reading of the TCP tables stands while the function's sockets stay the same.
pub(super) const TABLE_REUSE: Duration = Duration::from_secs(1);

static TABLES_COSTLY: diag::Once = diag::Once::new();

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
            let started = thread_cpu();
            for f in &self.tcp {
                if read_all(f, &mut self.buf, MAX_TABLE_BYTES).is_err() {
                    continue;
                }
                bad += procfs::parse_tcp(&String::from_utf8_lossy(&self.buf), |c| {
                    if sockets.contains(&c.inode) {
                        found.push((c.inode, c.remote_port));
                    }
                });
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
            if self.config.connections == Connections::Auto && cost > TABLE_CPU_LIMIT {
                TABLES_COSTLY.warn(format_args!(
                    "reading the TCP tables cost {} µs of CPU (the kernel walks a connection table sized by this machine's memory): connections are no longer read; {CONNECTIONS_VAR}=always reads them anyway",
                    cost.as_micros()
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
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    super::cpu_time(rustix::time::ClockId::ThreadCPUTime)
}
