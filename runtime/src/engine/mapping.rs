//! One private anonymous memory mapping, unmapped when dropped: what the reused fiber
//! stacks ([`super::stacks`]) and linear memories ([`super::memories`]) are made of.

use std::ptr::NonNull;

use rustix::mm::{MapFlags, MprotectFlags, MremapFlags, ProtFlags};

/// `len` bytes of readable, writable memory (parts may be made inaccessible as guards).
#[derive(Debug)]
pub(super) struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a mapping is plain memory owned by whoever holds it; nothing in it is tied to a
// thread, and shared references only read its address.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

/// The system's page size.
pub(super) fn page() -> usize {
    rustix::param::page_size()
}

impl Mapping {
    /// A fresh mapping of `len` bytes (a multiple of the page size), zero-filled on touch.
    pub(super) fn new(len: usize) -> std::io::Result<Self> {
        // SAFETY: a new private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )?
        };
        let base =
            NonNull::new(base.cast()).ok_or_else(|| std::io::Error::other("null mapping"))?;
        Ok(Mapping { base, len })
    }

    /// Make `len` bytes at `offset` inaccessible (a guard); both page aligned, within.
    pub(super) fn guard(&self, offset: usize, len: usize) -> std::io::Result<()> {
        assert!(offset + len <= self.len, "a guard within the mapping");
        // SAFETY: part of this mapping, which this value owns.
        unsafe { rustix::mm::mprotect(self.at(offset).cast(), len, MprotectFlags::empty())? };
        Ok(())
    }

    /// Grow to `len` bytes, moving if the kernel must; what was there stays.
    pub(super) fn grow(&mut self, len: usize) -> std::io::Result<()> {
        // SAFETY: this mapping, which this value owns; callers read its base again after.
        let moved = unsafe {
            rustix::mm::mremap(
                self.base.as_ptr().cast(),
                self.len,
                len,
                MremapFlags::MAYMOVE,
            )?
        };
        self.base =
            NonNull::new(moved.cast()).ok_or_else(|| std::io::Error::other("null mapping"))?;
        self.len = len;
        Ok(())
    }

    /// The address `offset` bytes in (at most one past the end).
    pub(super) fn at(&self, offset: usize) -> *mut u8 {
        assert!(offset <= self.len, "an address within the mapping");
        // SAFETY: within this mapping, or one past its end.
        unsafe { self.base.as_ptr().add(offset) }
    }

    /// Its length in bytes.
    pub(super) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: this mapping, unused once its owner is dropped.
        let unmapped = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
        if let Err(e) = unmapped {
            tracing::warn!("cannot unmap {} bytes: {e}", self.len);
        }
    }
}
