//! A counting global allocator: heap bytes allocated on the current thread,
//! and their peak, so a check can assert that an entry point stays under its
//! documented memory bound (plus a constant) for each input.
//!
//! Install it in the binary or test that measures:
//! `#[global_allocator] static A: Counting = Counting;`. Without it,
//! [`measure`] reports 0 and [`installed`] is false.
//!
//! Counts are per thread (a `const` thread-local, which needs no
//! allocation), so tests running in parallel do not see each other; memory
//! freed on another thread than the one that allocated it lowers that
//! thread's count, which can only make a measured peak smaller, never
//! larger, so a bound that holds is not a false alarm.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The counting allocator (the system allocator underneath).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counting;

thread_local! {
    static CURRENT: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
    static ON: Cell<bool> = const { Cell::new(false) };
}

fn add(n: i64) {
    let _ = CURRENT.try_with(|c| {
        let v = c.get() + n;
        c.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v)
            }
        });
    });
    let _ = ON.try_with(|o| o.set(true));
}

#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the same arguments and
// only adds bookkeeping in thread-locals that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as i64));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Old and new block are both held for a moment: count the peak.
            add(new_size as i64);
            add(-(layout.size() as i64));
        }
        p
    }
}

/// True once the counting allocator has seen an allocation on this thread.
pub fn installed() -> bool {
    let _ = Box::new(0u8);
    ON.try_with(Cell::get).unwrap_or(false)
}

/// Run `f`; return its result and the peak of heap bytes held on this
/// thread while it ran, above what was held when it started.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let start = CURRENT.try_with(Cell::get).unwrap_or(0);
    let _ = PEAK.try_with(|p| p.set(start));
    let r = f();
    let peak = PEAK.try_with(Cell::get).unwrap_or(start);
    (r, u64::try_from(peak - start).unwrap_or(0))
}
