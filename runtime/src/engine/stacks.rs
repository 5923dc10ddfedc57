//! Fiber stacks kept for reuse. Every instance runs on a fiber stack of its own; making one
//! is an `mmap` and an `mprotect` for its guard page, dropping one an `munmap`, whose TLB
//! shootdown interrupts every core running a thread of the node. Under load, instances
//! start and end by the thousand per second, so ended instances' stacks wait here for the
//! next ones instead. A stack holds no guest data (guests only reach their linear memory),
//! so it is reused as it is, like wasmtime's pooling allocator does by default.

use std::ops::Range;
use std::sync::{Arc, Mutex};

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
        Ok(Box::new(Lent {
            mapping: Some(mapping),
            free: self.free.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
