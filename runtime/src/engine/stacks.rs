//! Fiber stacks kept for reuse. Every instance runs on a fiber stack of its own; making one
//! is an `mmap` and an `mprotect` for its guard page, dropping one an `munmap`, whose TLB
//! shootdown interrupts every core running a thread of the node. Under load, instances
//! start and end by the thousand per second, so ended instances' stacks wait here for the
//! next ones instead. A stack holds no guest data (guests only reach their linear memory),
//! so it is reused as it is, like wasmtime's pooling allocator does by default.
//!
//! A parked instance keeps its stack, and with it every page its deepest call ever touched
//! (instantiation, starting a child: host code deeper than where it parks).
//! [`trim_below_here`] gives those pages back when it parks: a deep chain of parked parents
//! then holds a page or two of stack each, not three.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use wasmtime::{StackCreator, StackMemory};

use super::mapping::{Mapping, page};

/// Stacks kept at most: enough for the instances that start while others end, few enough
/// that the touched pages they keep (a few KiB each) do not matter.
const KEEP: usize = 256;

/// Makes fiber stacks, and takes ended ones back for reuse.
#[derive(Debug, Default)]
pub struct StackRecycler {
    /// Ended stacks: each a guard page, then the stack.
    free: Arc<Mutex<Vec<Mapping>>>,
}

impl StackRecycler {
    /// A recycler that keeps no stack yet.
    pub fn new() -> Self {
        StackRecycler::default()
    }

    fn take(&self, len: usize) -> Option<Mapping> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let at = free.iter().rposition(|m| m.len() == len)?;
        Some(free.swap_remove(at))
    }
}

/// A stack lent to one fiber; back to the recycler when wasmtime drops it.
struct Lent {
    mapping: Option<Mapping>,
    free: Arc<Mutex<Vec<Mapping>>>,
}

impl Lent {
    fn mapping(&self) -> &Mapping {
        self.mapping
            .as_ref()
            .expect("a lent stack has its mapping until dropped")
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let Some(mapping) = self.mapping.take() else {
            return;
        };
        live().remove(&(mapping.at(page()) as usize));
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < KEEP {
            free.push(mapping);
        }
    }
}

// SAFETY: `top`, `range` and `guard_range` describe one live mapping owned by this stack
// (a guard page below a page-aligned, writable stack) for as long as it exists.
unsafe impl StackMemory for Lent {
    fn top(&self) -> *mut u8 {
        let m = self.mapping();
        m.at(m.len())
    }

    fn range(&self) -> Range<usize> {
        let m = self.mapping();
        m.at(page()) as usize..m.at(m.len()) as usize
    }

    fn guard_range(&self) -> Range<*mut u8> {
        let m = self.mapping();
        m.at(0)..m.at(page())
    }
}

// SAFETY: every stack made is a fresh or recycled mapping with a guard page at its bottom,
// page aligned, used by one fiber at a time (a lent one is out of the free list).
unsafe impl StackCreator for StackRecycler {
    fn new_stack(&self, size: usize, zeroed: bool) -> wasmtime::Result<Box<dyn StackMemory>> {
        let len = size
            .checked_next_multiple_of(page())
            .and_then(|s| s.checked_add(page()))
            .ok_or_else(|| wasmtime::format_err!("fiber stack size {size} overflows"))?;
        let mapping = match self.take(len) {
            Some(mapping) if zeroed => {
                // Asked for zeroed memory: give the reused pages back to the kernel, which
                // maps zero pages on the next touch.
                // SAFETY: the stack part of a mapping nobody uses now.
                unsafe {
                    rustix::mm::madvise(
                        mapping.at(page()).cast(),
                        len - page(),
                        rustix::mm::Advice::LinuxDontNeed,
                    )?;
                }
                mapping
            }
            Some(mapping) => mapping,
            None => {
                let mapping = Mapping::new(len)?;
                mapping.guard(0, page())?;
                mapping
            }
        };
        live().insert(mapping.at(page()) as usize, mapping.at(len) as usize);
        Ok(Box::new(Lent {
            mapping: Some(mapping),
            free: self.free.clone(),
        }))
    }
}

/// Lent stacks of the process, usable part only: bottom address to top address.
fn live() -> std::sync::MutexGuard<'static, BTreeMap<usize, usize>> {
    static LIVE: OnceLock<Mutex<BTreeMap<usize, usize>>> = OnceLock::new();
    LIVE.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Bytes given back by [`trim_below_here`] so far, process-wide.
static TRIMMED: AtomicU64 = AtomicU64::new(0);

/// Bytes of fiber stack given back by parked instances so far, in this process (pages
/// given back twice count twice).
pub fn trimmed_bytes() -> u64 {
    TRIMMED.load(Ordering::Relaxed)
}

/// Room left below the marker in [`trim_below_here`]'s frame: the rest of that frame and the
/// `madvise` system call made from it (under 100 bytes, measured with gdb), with room to spare.
/// Small on purpose: a sleeper parks 3.4 KiB below its stack's top, so a larger margin
/// would keep a second page for it.
const TRIM_MARGIN: usize = 512;

/// When running on a lent fiber stack (guest code and the host calls it makes), give back
/// the pages below the running frame: what deeper calls left there is dead, and the kernel
/// maps zero pages again if a later call reaches that deep. Returns the bytes given back
/// (0 off a lent stack, or when nothing lies that deep).
#[inline(never)]
pub fn trim_below_here() -> usize {
    let marker = 0u8;
    let here = std::hint::black_box(std::ptr::addr_of!(marker)) as usize;
    let Some(bottom) = live()
        .range(..=here)
        .next_back()
        .filter(|(_, top)| here < **top)
        .map(|(bottom, _)| *bottom)
    else {
        return 0;
    };
    let end = here.saturating_sub(TRIM_MARGIN) & !(page() - 1);
    if end <= bottom {
        return 0;
    }
    // SAFETY: part of the stack this code runs on, wholly below every live frame (this
    // one and its callers are above `here`; the margin holds the call made now). Its
    // contents are dead: giving the pages back only makes them read zero when touched next.
    let given = unsafe {
        rustix::mm::madvise(
            bottom as *mut std::ffi::c_void,
            end - bottom,
            rustix::mm::Advice::LinuxDontNeed,
        )
    };
    match given {
        Ok(()) => {
            TRIMMED.fetch_add((end - bottom) as u64, Ordering::Relaxed);
            end - bottom
        }
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_lent_stack_nothing_is_trimmed() {
        let recycler = StackRecycler::new();
        let _stack = recycler.new_stack(64 << 10, false).unwrap();
        assert_eq!(
            trim_below_here(),
            0,
            "a test thread's own stack is not a lent one"
        );
    }

    #[test]
    fn an_ended_stack_is_lent_again() {
        let recycler = StackRecycler::new();
        let first = recycler.new_stack(64 << 10, false).unwrap();
        let (top, range) = (first.top() as usize, first.range());
        assert_eq!(top, range.end);
        assert_eq!(range.len(), 64 << 10);
        assert_eq!(first.guard_range().end as usize, range.start);
        // SAFETY: the stack's own writable range.
        unsafe { *((range.end - 8) as *mut u64) = 7 };
        drop(first);
        let again = recycler.new_stack(64 << 10, false).unwrap();
        assert_eq!(again.top() as usize, top, "the ended stack came back");
        let other = recycler.new_stack(64 << 10, false).unwrap();
        assert_ne!(
            other.top() as usize,
            top,
            "a lent stack is never lent twice"
        );
        drop(again);
        let zeroed = recycler.new_stack(64 << 10, true).unwrap();
        assert_eq!(zeroed.top() as usize, top);
        // SAFETY: as above.
        assert_eq!(unsafe { *((zeroed.range().end - 8) as *const u64) }, 0);
    }
}
