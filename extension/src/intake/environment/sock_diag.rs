//! The established TCP sockets of the network namespace, from the kernel's socket diagnostics
//! (`NETLINK_SOCK_DIAG`, what `ss` reads): binary rows of the sockets in the asked states only,
//! where `/proc/net/tcp` writes every socket of the table (`TIME_WAIT` ones included) as text.
//!
//! The kernel walks its whole connection hash table either way, and that table is sized by
//! the machine's memory, but for a dump it passes over empty buckets without the per-bucket
//! work of the `/proc` file and filters by state before it writes anything. Measured in
//! `docs/adr/0016-proc-readings.md`.
//!
//! The messages are the fixed C structures of `linux/netlink.h`, `linux/sock_diag.h` and
//! `linux/inet_diag.h`; [`request`] and [`parse`] are pure and tested on bytes.

use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink};

use super::procfs::TcpConn;

/// `SOCK_DIAG_BY_FAMILY`: the request, and the type of each answered socket.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ROOT | NLM_F_MATCH`: every socket that matches.
const NLM_F_DUMP: u16 = 0x300;
const TCP_ESTABLISHED: u8 = 1;
const IPPROTO_TCP: u8 = 6;
/// `struct nlmsghdr`.
const HEADER: usize = 16;
/// `struct inet_diag_req_v2`.
const REQUEST: usize = 56;
/// `struct inet_diag_msg`: family, state, timer, retransmits, the socket id (ports, addresses,
/// interface, cookie: 48 bytes), expires, queues, uid, inode.
const DIAG_MSG: usize = 72;
const DPORT: usize = 6;
const INODE: usize = 68;
/// Room for one datagram of a dump (the kernel fills at most about 32 KiB per datagram).
const DATAGRAM: usize = 64 * 1024;

/// Why a reading through the diagnostics failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DiagError {
    /// A system call failed (the socket family refused, or no answer waiting).
    Io(Errno),
    /// The kernel answered the request with this error number.
    Kernel(i32),
    /// An answer that is not what the structures say.
    Malformed,
    /// The answer outgrew the bound on a table's size.
    TooLarge,
}

impl std::fmt::Display for DiagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiagError::Io(e) => write!(f, "{e}"),
            DiagError::Kernel(n) => write!(f, "{}", Errno::from_raw_os_error(*n)),
            DiagError::Malformed => f.write_str("an answer that could not be parsed"),
            DiagError::TooLarge => f.write_str("an answer larger than the table bound"),
        }
    }
}

impl From<Errno> for DiagError {
    fn from(e: Errno) -> Self {
        DiagError::Io(e)
    }
}

/// A socket of the diagnostics family, kept open between readings.
#[derive(Debug)]
pub(super) struct SockDiag {
    fd: OwnedFd,
    seq: u32,
}

impl SockDiag {
    pub(super) fn open() -> Result<SockDiag, DiagError> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            Some(netlink::SOCK_DIAG),
        )?;
        Ok(SockDiag { fd, seq: 0 })
    }

    /// Each established TCP socket of `family` (`AF_INET` or `AF_INET6`; the latter includes
    /// IPv4 connections of IPv6 sockets, as `/proc/net/tcp6` does), passed to `each`. `buf` is
    /// reused; the answer is bounded by `max` bytes. It never waits: the kernel writes each part
    /// of a dump before the call that reads the previous one returns, so a missing part is an
    /// error, not a wait. After an error the socket may hold the rest of a dump: drop it.
    pub(super) fn established(
        &mut self,
        family: AddressFamily,
        buf: &mut Vec<u8>,
        max: usize,
        mut each: impl FnMut(TcpConn),
    ) -> Result<(), DiagError> {
        self.seq = self.seq.wrapping_add(1);
        let family = u8::try_from(family.as_raw()).map_err(|_| DiagError::Malformed)?;
        let sent = rustix::net::send(&self.fd, &request(family, self.seq), SendFlags::empty())?;
        if sent != HEADER + REQUEST {
            return Err(DiagError::Malformed);
        }
        prepare(buf);
        let mut total = 0;
        loop {
            // `TRUNC`: the length returned is the datagram's, so a datagram larger than the
            // buffer is seen instead of silently cut.
            let (n, whole) = rustix::net::recv(
                &self.fd,
                &mut buf[..],
                RecvFlags::DONTWAIT | RecvFlags::TRUNC,
            )?;
            if whole > n {
                return Err(DiagError::Malformed);
            }
            total += n;
            if total > max {
                return Err(DiagError::TooLarge);
            }
            if parse(buf.get(..n).unwrap_or_default(), self.seq, &mut each)? {
                return Ok(());
            }
        }
    }
}

/// Make `buf` room for one datagram (its contents are overwritten; it is zero-filled only
/// where it grows).
pub(super) fn prepare(buf: &mut Vec<u8>) {
    if buf.len() < DATAGRAM {
        buf.resize(DATAGRAM, 0);
    }
}

/// The dump request for the established TCP sockets of `family`.
pub(super) fn request(family: u8, seq: u32) -> [u8; HEADER + REQUEST] {
    let mut m = [0u8; HEADER + REQUEST];
    m[0..4].copy_from_slice(&((HEADER + REQUEST) as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // Port id 0: the kernel fills in this socket's.
    m[HEADER] = family;
    m[HEADER + 1] = IPPROTO_TCP;
    // idiag_ext 0 (no extra attributes), then the state mask; the socket id stays zero.
    m[HEADER + 4..HEADER + 8].copy_from_slice(&(1u32 << TCP_ESTABLISHED).to_ne_bytes());
    m
}

/// One datagram of the answer to request `seq`: each established socket to `each`. `true`
/// when it ends the dump. Messages of another sequence number (the rest of an earlier dump)
/// are passed over.
pub(super) fn parse(
    datagram: &[u8],
    seq: u32,
    each: &mut impl FnMut(TcpConn),
) -> Result<bool, DiagError> {
    let mut rest = datagram;
    while !rest.is_empty() {
        let len = u32_at(rest, 0).ok_or(DiagError::Malformed)? as usize;
        let kind = u16_at(rest, 4).ok_or(DiagError::Malformed)?;
        let msg_seq = u32_at(rest, 8).ok_or(DiagError::Malformed)?;
        let body = rest.get(HEADER..len).ok_or(DiagError::Malformed)?;
        // Messages are aligned to 4 bytes; the last one may end the datagram unpadded.
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
        if msg_seq != seq {
            continue;
        }
        match kind {
            // Both carry an error number: the dump's own result in `DONE` (a dump that failed
            // part-way, such as one whose protocol handler is missing, ends with it), the
            // request's in `ERROR`. 0 is success; `DONE` may also come without one.
            NLMSG_DONE | NLMSG_ERROR => {
                let code = match body.get(..4) {
                    Some(b) => i32::from_ne_bytes(b.try_into().map_err(|_| DiagError::Malformed)?),
                    None if kind == NLMSG_DONE => 0,
                    None => return Err(DiagError::Malformed),
                };
                return if code == 0 {
                    Ok(true)
                } else {
                    Err(DiagError::Kernel(code.saturating_neg()))
                };
            }
            SOCK_DIAG_BY_FAMILY => {
                if body.len() < DIAG_MSG {
                    return Err(DiagError::Malformed);
                }
                // The kernel filtered by state; a row of another is not counted all the same.
                if body[1] != TCP_ESTABLISHED {
                    continue;
                }
                let port = u16::from_be_bytes([body[DPORT], body[DPORT + 1]]);
                let inode = u32_at(body, INODE).ok_or(DiagError::Malformed)?;
                each(TcpConn {
                    remote_port: port,
                    inode: u64::from(inode),
                });
            }
            // Other control messages (NLMSG_NOOP, NLMSG_OVERRUN) carry no socket.
            _ => {}
        }
    }
    Ok(false)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One message of `kind` with `body`, padded to 4 bytes.
    fn message(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((HEADER + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        m.resize(m.len().next_multiple_of(4), 0);
        m
    }

    fn socket(state: u8, dport: u16, inode: u32) -> Vec<u8> {
        let mut b = vec![0u8; DIAG_MSG];
        b[0] = 2;
        b[1] = state;
        b[4..6].copy_from_slice(&40000u16.to_be_bytes());
        b[DPORT..DPORT + 2].copy_from_slice(&dport.to_be_bytes());
        b[INODE..INODE + 4].copy_from_slice(&inode.to_ne_bytes());
        b
    }

    fn rows(datagram: &[u8], seq: u32) -> (Result<bool, DiagError>, Vec<(u64, u16)>) {
        let mut found = Vec::new();
        let r = parse(datagram, seq, &mut |c: TcpConn| {
            found.push((c.inode, c.remote_port))
        });
        (r, found)
    }

    #[test]
    fn the_request_asks_for_established_tcp_sockets_of_one_family() {
        let r = request(10, 7);
        assert_eq!(u32_at(&r, 0), Some(72));
        assert_eq!(u16_at(&r, 4), Some(SOCK_DIAG_BY_FAMILY));
        assert_eq!(u16_at(&r, 6), Some(0x301));
        assert_eq!(u32_at(&r, 8), Some(7));
        assert_eq!((r[16], r[17]), (10, IPPROTO_TCP));
        assert_eq!(u32_at(&r, 20), Some(1 << 1));
        assert!(r[24..].iter().all(|b| *b == 0));
    }

    #[test]
    fn sockets_then_done_and_other_dumps_are_passed_over() {
        let mut d = message(SOCK_DIAG_BY_FAMILY, 3, &socket(1, 5432, 1001));
        d.extend(message(SOCK_DIAG_BY_FAMILY, 2, &socket(1, 6379, 1002)));
        d.extend(message(SOCK_DIAG_BY_FAMILY, 3, &socket(8, 443, 1003)));
        d.extend(message(SOCK_DIAG_BY_FAMILY, 3, &socket(1, 443, 1004)));
        assert_eq!(rows(&d, 3), (Ok(false), vec![(1001, 5432), (1004, 443)]));
        d.extend(message(NLMSG_DONE, 3, &0i32.to_ne_bytes()));
        assert_eq!(rows(&d, 3).0, Ok(true));
        // The unpadded end of a datagram.
        let mut short = message(NLMSG_DONE, 3, &[0; 4]);
        short.truncate(HEADER + 4);
        assert_eq!(rows(&short, 3).0, Ok(true));
    }

    #[test]
    fn a_kernel_error_and_broken_answers_are_errors() {
        let refused = message(NLMSG_ERROR, 1, &(-2i32).to_ne_bytes());
        assert_eq!(rows(&refused, 1).0, Err(DiagError::Kernel(2)));
        let ack = message(NLMSG_ERROR, 1, &0i32.to_ne_bytes());
        assert_eq!(rows(&ack, 1).0, Ok(true));
        // A dump that failed part-way ends with its error in `DONE`.
        let failed = message(NLMSG_DONE, 1, &(-2i32).to_ne_bytes());
        assert_eq!(rows(&failed, 1).0, Err(DiagError::Kernel(2)));
        assert_eq!(rows(&message(NLMSG_DONE, 1, &[]), 1).0, Ok(true));
        let short_row = message(SOCK_DIAG_BY_FAMILY, 1, &[1; 20]);
        assert_eq!(rows(&short_row, 1).0, Err(DiagError::Malformed));
        let mut overlong = message(SOCK_DIAG_BY_FAMILY, 1, &socket(1, 1, 1));
        overlong[0..4].copy_from_slice(&500u32.to_ne_bytes());
        assert_eq!(rows(&overlong, 1).0, Err(DiagError::Malformed));
        assert_eq!(rows(&[1, 2, 3], 1).0, Err(DiagError::Malformed));
        let mut zero = message(NLMSG_DONE, 1, &[]);
        zero[0..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(rows(&zero, 1).0, Err(DiagError::Malformed));
    }

    /// Against the kernel: a connection this test holds is in the dump of its family with its
    /// remote port and the inode its descriptor links to, as in `/proc/net/tcp`.
    #[test]
    fn a_connection_of_this_process_is_in_the_dump_as_in_the_proc_table() {
        let (_client, _server, port, inode) = super::super::tests::connection();
        let mut diag = SockDiag::open().expect("NETLINK_SOCK_DIAG opens on Linux");
        let mut buf = Vec::new();
        let mut dumped = Vec::new();
        diag.established(AddressFamily::INET, &mut buf, 4 << 20, |c| {
            dumped.push((c.inode, c.remote_port))
        })
        .unwrap();
        assert!(dumped.contains(&(inode, port)), "{dumped:?}");
        // A second reading on the same socket works the same way.
        dumped.clear();
        diag.established(AddressFamily::INET, &mut buf, 4 << 20, |c| {
            dumped.push((c.inode, c.remote_port))
        })
        .unwrap();
        assert!(dumped.contains(&(inode, port)));
        let text = std::fs::read_to_string("/proc/self/net/tcp").unwrap();
        let mut listed = Vec::new();
        super::super::procfs::parse_tcp(&text, |c| listed.push((c.inode, c.remote_port)));
        assert!(listed.contains(&(inode, port)));
        // The bound is kept.
        let mut tiny = SockDiag::open().unwrap();
        let r = tiny.established(AddressFamily::INET, &mut buf, 8, |_| {});
        assert!(
            matches!(r, Err(DiagError::TooLarge)),
            "{r:?}: the dump holds at least one socket, over 8 bytes"
        );
    }
}
