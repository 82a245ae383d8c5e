//! Loopback ports for test servers, taken from *below* the kernel's ephemeral range.
//!
//! Binding `127.0.0.1:0` and closing the listener hands back a port from the ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`, 32768–60999 by default). Until the server binds
//! it, any outgoing connection in the process or on the host (a client, `etcdctl`, a peer
//! dialling out) may be given that same port as its local port, and the server then fails with
//! "address in use". Tests run many servers and clients side by side, so that window was hit
//! in CI. Ports below the ephemeral range are never handed out implicitly: only an explicit
//! bind takes one. Each process walks that range from a start drawn from its PID and the clock
//! (test binaries of one `cargo test` run one after another; a process never repeats a port
//! until it has walked the whole range) and returns only ports a trial bind accepts.
//!
//! This file is shared by path (`#[path]`) with the test harnesses of `net/server` and
//! `net/client`, which do not depend on this crate: it uses only `std`.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Lowest port handed out (below it live well-known and registered services).
const LOW: u32 = 10_000;

/// `[LOW, start of the ephemeral range)`, or `None` when that range is too small to use.
pub fn range() -> Option<(u32, u32)> {
    static RANGE: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *RANGE.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
        let first: u32 = text.split_whitespace().next()?.parse().ok()?;
        (first >= LOW + 1_000).then_some((LOW, first))
    })
}

/// Where this process starts walking: PID and clock mixed, so concurrent processes differ.
fn seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(nanos)
}

/// One loopback port that is free now and that the kernel will not hand to an outgoing
/// connection. Falls back to an OS-chosen port where the ephemeral range starts too low.
pub fn free_port() -> u16 {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let Some((low, high)) = range() else {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
        return l.local_addr().expect("local addr").port();
    };
    let span = high - low;
    let next = NEXT.get_or_init(|| AtomicU32::new(seed() % span));
    for _ in 0..span {
        let port = low + next.fetch_add(1, Ordering::Relaxed) % span;
        let port = u16::try_from(port).expect("port range fits u16");
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}

/// `n` distinct free ports (see [`free_port`]).
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}
