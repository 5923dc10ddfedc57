//! Fiber stacks kept for reuse. Every instance runs on a fiber stack of its own; making one
//! is an `mmap` and an `mprotect` for its guard page, dropping one an `munmap`, whose TLB
//! shootdown interrupts every core running a thread of the node. Under load, instances
//! start and end by the thousand per second, so ended instances' stacks wait here for the
//! next ones instead. A stack holds no guest data (guests only reach their linear memory),
//! so it is reused as it is, like wasmtime's pooling allocator does by default.

use std::ops::Range;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};
use wasmtime::{StackCreator, StackMemory};

/// Stacks kept at most: enough for the instances that start while others end, few enough
/// that the touched pages they keep (a few KiB each) do not matter.
const KEEP: usize = 256;

/// Makes fiber stacks, and takes ended ones back for reuse.
#[derive(Debug, Default)]
pub struct StackRecycler {
    free: Arc<Mutex<Vec<Region>>>,
}

impl StackRecycler {
    /// A recycler that keeps no stack yet.
    pub fn new() -> Self {
        StackRecycler::default()
    }

    fn take(&self, len: usize) -> Option<Region> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let at = free.iter().rposition(|r| r.len == len)?;
        Some(free.swap_remove(at))
    }
}

/// One mapping: a guard page, then the stack.
#[derive(Debug)]
struct Region {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a region is plain memory owned by whoever holds it; nothing in it is tied to a
// thread, and shared references only read its address.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    /// A fresh mapping of `size` bytes of stack above one guard page.
    fn map(size: usize) -> std::io::Result<Self> {
        let page = rustix::param::page_size();
        let len = size
            .checked_next_multiple_of(page)
            .and_then(|s| s.checked_add(page))
            .ok_or_else(|| std::io::Error::other("fiber stack size overflows"))?;
        // SAFETY: a new private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )?
        };
        let region = Region {
            base: NonNull::new(base.cast()).ok_or_else(|| std::io::Error::other("null mapping"))?,
            len,
        };
        // SAFETY: the first page of the mapping made above (on failure `region` unmaps it).
        unsafe { rustix::mm::mprotect(base, page, MprotectFlags::empty())? };
        Ok(region)
    }

    fn guard(&self) -> usize {
        rustix::param::page_size()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the region's own mapping, unused once the region is dropped.
        let unmapped = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
        if let Err(e) = unmapped {
            tracing::warn!("cannot unmap a fiber stack: {e}");
        }
    }
}

/// A stack lent to one fiber; back to the recycler when wasmtime drops it.
struct Lent {
    region: Option<Region>,
    free: Arc<Mutex<Vec<Region>>>,
}

impl Lent {
    fn region(&self) -> &Region {
        self.region
            .as_ref()
            .expect("a lent stack has its region until dropped")
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let Some(region) = self.region.take() else {
            return;
        };
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < KEEP {
            free.push(region);
        }
    }
}

// SAFETY: `top`, `range` and `guard_range` describe one live mapping owned by this stack
// (a guard page below a page-aligned, writable stack) for as long as it exists.
unsafe impl StackMemory for Lent {
    fn top(&self) -> *mut u8 {
        let r = self.region();
        // SAFETY: one past the end of the region's own mapping.
        unsafe { r.base.as_ptr().add(r.len) }
    }

    fn range(&self) -> Range<usize> {
        let r = self.region();
        let base = r.base.as_ptr() as usize;
        base + r.guard()..base + r.len
    }

    fn guard_range(&self) -> Range<*mut u8> {
        let r = self.region();
        // SAFETY: within the region's own mapping.
        r.base.as_ptr()..unsafe { r.base.as_ptr().add(r.guard()) }
    }
}

// SAFETY: every stack made is a fresh or recycled mapping with a guard page at its bottom,
// page aligned, used by one fiber at a time (a lent region is out of the free list).
unsafe impl StackCreator for StackRecycler {
    fn new_stack(&self, size: usize, zeroed: bool) -> wasmtime::Result<Box<dyn StackMemory>> {
        let page = rustix::param::page_size();
        let len = size.next_multiple_of(page) + page;
        let region = match self.take(len) {
            Some(region) if zeroed => {
                // Asked for zeroed memory: give the reused pages back to the kernel, which
                // maps zero pages on the next touch.
                // SAFETY: the stack part of a region nobody uses now.
                unsafe {
                    rustix::mm::madvise(
                        region.base.as_ptr().add(page).cast(),
                        len - page,
                        rustix::mm::Advice::LinuxDontNeed,
                    )?;
                }
                region
            }
            Some(region) => region,
            None => Region::map(size)?,
        };
        Ok(Box::new(Lent {
            region: Some(region),
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
