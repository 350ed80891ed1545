//! Loopback ports for listeners a child process opens (a collector, an extension's receiver),
//! where the port must be named before the child binds it.

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out.
const LOWEST: u32 = 10_000;
/// The start of Linux's default ephemeral range, when `/proc` does not say.
const EPHEMERAL_DEFAULT: u32 = 32_768;

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, then released).
///
/// Taken below the kernel's ephemeral range, in turn from a start that differs per process: a
/// port the kernel hands out for `bind(…, 0)` or as an outgoing connection's local port (a
/// sink's, the emulator's, an extension's exports) could be taken again between this check and
/// the child's bind. Two calls in one process never return the same port until the range wraps.
pub fn free_loopback_port() -> io::Result<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(EPHEMERAL_DEFAULT)
        .min(u32::from(u16::MAX));
    let span = ephemeral.saturating_sub(LOWEST).max(1);
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let n = LOWEST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let Ok(port) = u16::try_from(n) else { continue };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free loopback port in {LOWEST}..{ephemeral}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_distinct_and_below_the_ephemeral_range() {
        let a = free_loopback_port().unwrap();
        let b = free_loopback_port().unwrap();
        assert_ne!(a, b);
        for port in [a, b] {
            assert!(u32::from(port) >= LOWEST, "{port}");
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        }
    }
}
