//! Linear memories kept for reuse. A fresh memory is an `mmap`, a page fault and a zeroed
//! page for every page the guest touches, and an `munmap` at the end whose TLB shootdown
//! interrupts every core running a thread of the node. An ended instance's memory is
//! instead wiped and kept for the next instance of the same size: the pages its guest
//! touched are zeroed in place (found with `mincore`), so the next guest starts on zeroed,
//! already mapped pages, exactly as on a fresh mapping.
//!
//! Wiping is what keeps one flow's data from the next: every page that may hold data is
//! zeroed before a memory is lent again. Pages `mincore` reports absent were never touched,
//! or were swapped out; those are dropped with `MADV_DONTNEED`, which zero-fills them anew.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wasmtime::{LinearMemory, MemoryCreator, MemoryType};

use super::mapping::{Mapping, page};

/// Memories kept at most, all sizes together; each keeps the pages its guest touched
/// (a few dozen KiB for a small guest), zeroed.
const KEEP: usize = 256;
/// Larger memories are not kept: wiping them costs more than a fresh mapping.
const KEEP_AT_MOST_BYTES: usize = 8 << 20;

/// Makes linear memories, and takes ended ones back, wiped, for reuse.
#[derive(Debug, Default)]
pub struct MemoryRecycler {
    free: Arc<Mutex<Free>>,
}

#[derive(Debug, Default)]
struct Free {
    /// Wiped mappings by length.
    by_capacity: BTreeMap<usize, Vec<Mapping>>,
    count: usize,
}

impl MemoryRecycler {
    /// A recycler that keeps no memory yet.
    pub fn new() -> Self {
        MemoryRecycler::default()
    }
}

/// Zero every page of `mapping` that may hold data.
fn wipe(mapping: &Mapping) -> std::io::Result<()> {
    let page = page();
    let pages = mapping.len() / page;
    let mut resident = vec![0u8; pages];
    // SAFETY: this mapping, page aligned; `resident` has one byte per page.
    let rc = unsafe { libc::mincore(mapping.at(0).cast(), mapping.len(), resident.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut at = 0;
    while at < pages {
        let present = resident[at] & 1 == 1;
        let run = resident[at..]
            .iter()
            .take_while(|r| (**r & 1 == 1) == present)
            .count();
        let start = mapping.at(at * page);
        if present {
            // SAFETY: pages [at, at + run) of the mapping, which nobody uses while wiped.
            unsafe { std::ptr::write_bytes(start, 0, run * page) };
        } else if swap_in_use() {
            // SAFETY: as above.
            unsafe {
                rustix::mm::madvise(start.cast(), run * page, rustix::mm::Advice::LinuxDontNeed)?;
            }
        }
        at += run;
    }
    Ok(())
}

/// Whether the machine swaps: then a page `mincore` reports absent may hold data on swap.
fn swap_in_use() -> bool {
    static SWAP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SWAP.get_or_init(|| {
        std::fs::read_to_string("/proc/swaps").map_or(true, |s| s.lines().count() > 1)
    })
}

/// A memory lent to one instance; wiped and back to the recycler when wasmtime drops it.
struct Lent {
    mapping: Option<Mapping>,
    /// Usable bytes of the mapping (any guard asked for follows them).
    capacity: usize,
    size: usize,
    /// Made with a fixed reservation (and maybe a guard): it never moves and is not kept.
    fixed: bool,
    free: Arc<Mutex<Free>>,
}

impl Lent {
    fn mapping(&self) -> &Mapping {
        self.mapping
            .as_ref()
            .expect("a lent memory has its mapping until dropped")
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let Some(mapping) = self.mapping.take() else {
            return;
        };
        if self.fixed || mapping.len() > KEEP_AT_MOST_BYTES {
            return;
        }
        {
            let free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            if free.count >= KEEP {
                return;
            }
        }
        // Wiped outside the lock; a memory that cannot be wiped is unmapped, never kept.
        if let Err(e) = wipe(&mapping) {
            tracing::warn!("cannot wipe a linear memory for reuse: {e}");
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.count < KEEP {
            free.count += 1;
            free.by_capacity
                .entry(mapping.len())
                .or_default()
                .push(mapping);
        }
    }
}

// SAFETY: `as_ptr` is the base of a live mapping of `byte_capacity` writable bytes (plus any
// guard asked for), of which `byte_size` are accessible; growth past the capacity moves the
// memory (allowed by `memory_may_move`) unless it was made with a fixed reservation.
unsafe impl LinearMemory for Lent {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.capacity
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        if new_size <= self.capacity {
            // Beyond the old size the mapping is zero: fresh, or wiped before it was lent.
            self.size = new_size;
            return Ok(());
        }
        if self.fixed {
            wasmtime::bail!(
                "memory cannot grow past its reservation of {} bytes",
                self.capacity
            );
        }
        let new_capacity = round_to_pages(new_size)?;
        self.mapping
            .as_mut()
            .expect("a lent memory has its mapping until dropped")
            .grow(new_capacity)?;
        self.capacity = new_capacity;
        self.size = new_size;
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.mapping().at(0)
    }
}

fn round_to_pages(bytes: usize) -> wasmtime::Result<usize> {
    bytes
        .max(1)
        .checked_next_multiple_of(page())
        .ok_or_else(|| wasmtime::format_err!("memory size {bytes} overflows"))
}

// SAFETY: every memory lent is a fresh mapping or a wiped one (all zero), owned by one
// instance at a time (a lent one is out of the free list), sized and guarded as asked.
unsafe impl MemoryCreator for MemoryRecycler {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        _maximum: Option<usize>,
        reserved: Option<usize>,
        guard: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        // wasmtime passes its configured reservation, `Some(0)` in ours: no reservation,
        // and the memory may move as it grows.
        let reserved = reserved.filter(|r| *r > 0);
        let fixed = reserved.is_some() || guard > 0;
        let wanted =
            round_to_pages(minimum.max(reserved.unwrap_or(0))).map_err(|e| e.to_string())?;
        let reused = if fixed {
            None
        } else {
            // The smallest kept mapping that fits: guests grow their memory as they run,
            // so an ended memory is often larger than a new one starts. Being wiped, its
            // extra capacity is zero too, and later growth into it moves nothing.
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            let fits = free
                .by_capacity
                .range_mut(wanted..=wanted.saturating_mul(4))
                .find_map(|(_, kept)| kept.pop());
            if fits.is_some() {
                free.count -= 1;
            }
            fits
        };
        let mapping = match reused {
            Some(mapping) => mapping,
            None => {
                let fresh = wanted
                    .checked_add(guard)
                    .ok_or_else(|| format!("memory size {wanted} + guard {guard} overflows"))
                    .and_then(|len| {
                        Mapping::new(len).map_err(|e| format!("cannot map memory: {e}"))
                    })?;
                if guard > 0 {
                    fresh
                        .guard(wanted, guard)
                        .map_err(|e| format!("cannot protect a memory's guard: {e}"))?;
                }
                fresh
            }
        };
        let capacity = if fixed { wanted } else { mapping.len() };
        Ok(Box::new(Lent {
            mapping: Some(mapping),
            capacity,
            size: minimum,
            fixed,
            free: self.free.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A memory as wasmtime asks for one with Sluice's engine settings (no reservation).
    fn memory(recycler: &MemoryRecycler, bytes: usize) -> Box<dyn LinearMemory> {
        let ty = MemoryType::new((bytes >> 16) as u32, None);
        recycler.new_memory(ty, bytes, None, Some(0), 0).unwrap()
    }

    fn bytes(memory: &dyn LinearMemory) -> &[u8] {
        // SAFETY: the memory's accessible bytes, read while nobody writes them.
        unsafe { std::slice::from_raw_parts(memory.as_ptr(), memory.byte_size()) }
    }

    #[test]
    fn a_reused_memory_is_all_zero_and_grows() {
        let recycler = MemoryRecycler::new();
        let size = 17 << 16;
        let mut first = memory(&recycler, size);
        let base = first.as_ptr();
        // SAFETY: within the memory's accessible bytes.
        unsafe {
            for at in [0, 4095, 4096, 1 << 20, size - 1] {
                *base.add(at) = 0xAB;
            }
        }
        first.grow_to(size + 4096).unwrap();
        let base = first.as_ptr(); // growth may move it
        // SAFETY: as above.
        assert_eq!(
            unsafe { *base.add(size - 1) },
            0xAB,
            "growth keeps what was there"
        );
        drop(first);
        let again = memory(&recycler, size + 4096);
        assert_eq!(again.as_ptr(), base, "the ended memory came back");
        assert!(
            bytes(&*again).iter().all(|b| *b == 0),
            "nothing of its guest remains"
        );
        let other = memory(&recycler, size + 4096);
        assert_ne!(other.as_ptr(), base, "a lent memory is never lent twice");

        let mut grown = memory(&recycler, 1 << 16);
        // SAFETY: as above.
        unsafe { *grown.as_ptr() = 1 };
        grown.grow_to(40 << 16).unwrap();
        assert_eq!(grown.byte_size(), 40 << 16);
        assert_eq!(bytes(&*grown)[0], 1, "growth keeps what was there");
        assert!(bytes(&*grown)[1..].iter().all(|b| *b == 0));
    }
}
