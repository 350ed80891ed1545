//! Heap allocations per record in each stage of the Telemetry API path: a count, not a time,
//! so it is the same on a busy machine and on a quiet one (allocation and freeing are the
//! largest share of the per-line profile, ADR 0013).
//!
//! `cargo bench -p contrail --bench allocations` prints, for the batch of `benches/common`
//! (one invocation, 997 function lines) in the text and the JSON log format, the allocations
//! per record of `decode`, `map` and `encode` (buffer, take, request body; protobuf, gzip).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A global allocator is `unsafe` by its trait; this one forwards every call to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use contrail::{Compression, Signals, decode_batch};

mod common;
use common::{Format, NOW, RECORDS, batch, export_bodies, mapper};

/// The system allocator, counting allocations (and reallocations, which allocate anew).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`, after a count that allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f`, and what it returned (dropped after the count is taken: freeing
/// costs no allocation).
fn count<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let out = f();
    (ALLOCATIONS.load(Ordering::Relaxed) - before, out)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter or other options are not used.
    let per_record = |n: u64| n as f64 / RECORDS as f64;
    println!("allocations per record, {RECORDS}-record batch (997 function lines)");
    println!("| format | decode | map | encode (protobuf) | encode (gzip) |");
    println!("|---|---|---|---|---|");
    for format in [Format::Text, Format::Json] {
        let body = batch(format);
        let (decode, decoded) = count(|| decode_batch(&body, NOW));
        let mut m = mapper();
        let (map, mapped) = count(|| {
            let mut out = Signals::default();
            m.on_records(decoded.records, &mut out);
            out
        });
        let copy = mapped.clone();
        let (plain, _) = count(|| export_bodies(copy, Compression::None));
        let (gzip, _) = count(|| export_bodies(mapped, Compression::Gzip));
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            format.name(),
            per_record(decode),
            per_record(map),
            per_record(plain),
            per_record(gzip)
        );
    }
}
