//! What every fuzz target shares: an allocator that refuses any single allocation over
//! [`MAX_ALLOCATION`], so that a size taken from the input and trusted (a declared length, a
//! count) is a crash even without a sanitizer's `-malloc_limit_mb` hooks (docs/FUZZING.md).

use std::alloc::{GlobalAlloc, Layout, System};

/// The largest single allocation a target may make: far above what any bounded input needs
/// (the receiver target's cap is 256 KiB, the export buffer's 1 MiB).
pub const MAX_ALLOCATION: usize = 64 * 1024 * 1024;

/// The system allocator, aborting on an allocation over [`MAX_ALLOCATION`].
pub struct Limited;

fn check(layout: Layout) {
    if layout.size() > MAX_ALLOCATION {
        // Printing would allocate; the abort is what libFuzzer reports, with the stack.
        std::process::abort();
    }
}

// SAFETY: every call is forwarded unchanged to `System`, after a check that allocates nothing.
unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOCATION {
            std::process::abort();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
