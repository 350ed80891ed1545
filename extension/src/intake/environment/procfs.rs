//! Parsers for the `/proc` files the environment sampler reads. Pure: text in, figures out.
//!
//! Every parser of a table works line by line and never lets one bad line cost the rest: a
//! line that does not parse is skipped and counted, so the caller can report it.

use std::collections::BTreeMap;

/// What `/proc/PID/stat` says about one process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) ppid: u32,
    /// User and system time of the process, in clock ticks.
    pub(crate) utime: u64,
    pub(crate) stime: u64,
    /// User and system time of its children that it waited for, in clock ticks.
    pub(crate) cutime: u64,
    pub(crate) cstime: u64,
    pub(crate) threads: u64,
    /// Resident set size, in pages.
    pub(crate) rss_pages: u64,
}

/// Parse `/proc/PID/stat` (man 5 proc). The command name (field 2) is in parentheses and may
/// itself hold spaces and parentheses, so fields are counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let after = text.get(text.rfind(')')? + 1..)?;
    // fields[0] is field 3 (state): field N is fields[N - 3].
    let fields: Vec<&str> = after.split_ascii_whitespace().take(22).collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        utime: field(14)?,
        stime: field(15)?,
        cutime: field(16)?,
        cstime: field(17)?,
        threads: field(20)?,
        rss_pages: field(24)?,
    })
}

/// Resident pages from `/proc/PID/statm` (its second field).
pub(crate) fn parse_statm(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// What `/proc/PID/status` says about memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Status {
    /// `VmRSS`, bytes.
    pub(crate) rss: Option<u64>,
    /// `VmHWM`, bytes: the peak resident set since the process started or since
    /// `clear_refs` was last written `5`.
    pub(crate) hwm: Option<u64>,
    /// Lines that did not parse.
    pub(crate) bad_lines: u32,
}

/// Parse the `VmRSS` and `VmHWM` lines of `/proc/PID/status` (`VmRSS:\t  1234 kB`).
pub(crate) fn parse_status(text: &str) -> Status {
    let mut out = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            if !line.trim().is_empty() {
                out.bad_lines += 1;
            }
            continue;
        };
        let slot = match key {
            "VmRSS" => &mut out.rss,
            "VmHWM" => &mut out.hwm,
            _ => continue,
        };
        match kib_value(value) {
            Some(bytes) => *slot = Some(bytes),
            None => out.bad_lines += 1,
        }
    }
    out
}

fn kib_value(value: &str) -> Option<u64> {
    let mut parts = value.split_ascii_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => n.checked_mul(1024),
        _ => None,
    }
}

/// Bytes received and sent on every interface but `lo`, from `/proc/net/dev`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NetDev {
    pub(crate) rx_bytes: u64,
    pub(crate) tx_bytes: u64,
    /// Interface lines that did not parse (the two header lines are not counted).
    pub(crate) bad_lines: u32,
}

/// Parse `/proc/net/dev`: two header lines, then `  eth0: rx_bytes rx_packets ... (8 receive
/// fields) tx_bytes ...`.
pub(crate) fn parse_net_dev(text: &str) -> NetDev {
    let mut out = NetDev::default();
    for line in text.lines() {
        let Some((name, counters)) = line.split_once(':') else {
            // The headers ("Inter-|   Receive ...", " face |bytes ...") have no colon.
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let fields: Vec<&str> = counters.split_ascii_whitespace().collect();
        let rx = fields.first().and_then(|f| f.parse::<u64>().ok());
        let tx = fields.get(8).and_then(|f| f.parse::<u64>().ok());
        match (rx, tx) {
            (Some(rx), Some(tx)) if !name.is_empty() => {
                out.rx_bytes = out.rx_bytes.saturating_add(rx);
                out.tx_bytes = out.tx_bytes.saturating_add(tx);
            }
            _ => out.bad_lines += 1,
        }
    }
    out
}

/// TCP state `01` in `/proc/net/tcp`: ESTABLISHED.
const TCP_ESTABLISHED: &str = "01";

/// An established connection of `/proc/net/tcp` or `tcp6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpConn {
    pub(crate) remote_port: u16,
    pub(crate) inode: u64,
}

/// The established connections of a `/proc/net/tcp` or `/proc/net/tcp6` table, passed to
/// `each`; returns the lines that did not parse (the header is not counted). Line format:
/// `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode`,
/// addresses as `HEXADDR:HEXPORT`.
pub(crate) fn parse_tcp(text: &str, mut each: impl FnMut(TcpConn)) -> u32 {
    let mut bad = 0;
    for line in text.lines().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        match tcp_line(line) {
            Some(Some(conn)) => each(conn),
            Some(None) => {}
            None => bad += 1,
        }
    }
    bad
}

/// `Some(None)`: a well-formed line of a connection that is not established.
fn tcp_line(line: &str) -> Option<Option<TcpConn>> {
    let mut fields = line.split_ascii_whitespace();
    let slot = fields.next()?;
    if !slot.ends_with(':') {
        return None;
    }
    let _local = fields.next()?;
    let remote = fields.next()?;
    let state = fields.next()?;
    let remote_port = u16::from_str_radix(remote.rsplit_once(':')?.1, 16).ok()?;
    // tx:rx queues, timer, retransmits, uid, timeout, then the inode.
    let inode: u64 = fields.nth(5)?.parse().ok()?;
    if state.len() != 2 || !state.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((state == TCP_ESTABLISHED).then_some(TcpConn { remote_port, inode }))
}

/// The socket inode a `/proc/PID/fd/N` link points to (`socket:[12345]`).
pub(crate) fn socket_inode(link: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The value of `key` in a `/proc/PID/environ` block (`KEY=value\0...`).
pub(crate) fn environ_value<'a>(environ: &'a [u8], key: &str) -> Option<&'a [u8]> {
    environ.split(|b| *b == 0).find_map(|entry| {
        entry
            .strip_prefix(key.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
    })
}

/// The process ids of a `/proc/PID/task/TID/children` file (space separated); bad ids are
/// skipped and counted.
pub(crate) fn parse_children(text: &str, out: &mut Vec<u32>) -> u32 {
    let mut bad = 0;
    for id in text.split_ascii_whitespace() {
        match id.parse() {
            Ok(pid) => out.push(pid),
            Err(_) => bad += 1,
        }
    }
    bad
}

/// The last field of `/proc/loadavg` (`0.10 0.20 0.30 1/234 5678`): the last process id handed
/// out in the reader's PID namespace.
pub(crate) fn parse_loadavg_last_pid(text: &str) -> Option<u32> {
    let mut fields = text.split_ascii_whitespace();
    let running = fields.nth(3)?;
    if !running.contains('/') {
        return None;
    }
    fields.next()?.parse().ok()
}

/// Established connections counted by remote port.
pub type ByPort = BTreeMap<u16, u32>;

#[cfg(test)]
mod tests;
