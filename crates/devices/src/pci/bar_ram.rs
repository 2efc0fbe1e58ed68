//! Host memory a PCI device lends the guest through a memory BAR (a
//! framebuffer): the root maps it as guest RAM wherever the guest puts the
//! BAR, through the machine's `RamMapper`, and the device learns which pages
//! the guest wrote from the engine's dirty log.

use std::sync::Mutex;

use thiserror::Error;
use vm_memory::mmap::MmapRegion;

/// Which pages of a `BarRam` changed since the last look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirtyPages {
    /// One bit per 4 KiB page, in 64-bit words.
    Bitmap(Vec<u64>),
    /// Unknown (not mapped with a dirty log yet, or the log failed): treat
    /// every page as written.
    All,
}

impl DirtyPages {
    /// Whether page `page` may have changed.
    pub fn is_dirty(&self, page: usize) -> bool {
        match self {
            DirtyPages::All => true,
            DirtyPages::Bitmap(b) => b
                .get(page / 64)
                .is_some_and(|w| w & (1 << (page % 64)) != 0),
        }
    }
}

#[derive(Debug, Error)]
pub enum BarRamError {
    #[error("BAR memory of {size:#x} bytes must be a power of two of at least 4 KiB")]
    BadSize { size: usize },
    #[error("cannot map {size:#x} bytes of BAR memory: {detail}")]
    Map { size: usize, detail: String },
}

/// Reads and clears the dirty log of wherever a `BarRam` is mapped now.
pub type DirtyLogFn = Box<dyn Fn() -> Option<Vec<u64>> + Send>;

/// Anonymous, zeroed host memory for a memory BAR.
pub struct BarRam {
    region: MmapRegion,
    dirty_log: Mutex<Option<DirtyLogFn>>,
}

impl BarRam {
    pub fn new(size: usize) -> Result<BarRam, BarRamError> {
        if !size.is_power_of_two() || size < 4096 {
            return Err(BarRamError::BadSize { size });
        }
        let region = MmapRegion::new(size).map_err(|e| BarRamError::Map {
            size,
            detail: e.to_string(),
        })?;
        Ok(BarRam {
            region,
            dirty_log: Mutex::new(None),
        })
    }

    pub fn len(&self) -> usize {
        self.region.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The host address of the first byte (for the mapper).
    pub fn host_addr(&self) -> *mut u8 {
        self.region.as_ptr()
    }

    /// Copy bytes out; false when the range leaves the memory.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        match offset.checked_add(buf.len()) {
            Some(end) if end <= self.len() => {
                // SAFETY: offset..end lies inside the mapping, which lives as
                // long as self; the guest may write concurrently, which makes
                // the bytes stale, never invalid (plain bytes).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.region.as_ptr().add(offset),
                        buf.as_mut_ptr(),
                        buf.len(),
                    )
                };
                true
            }
            _ => false,
        }
    }

    /// Copy bytes in; false when the range leaves the memory.
    pub fn write(&self, offset: usize, buf: &[u8]) -> bool {
        match offset.checked_add(buf.len()) {
            Some(end) if end <= self.len() => {
                // SAFETY: as in `read`; the mapping is writable.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        buf.as_ptr(),
                        self.region.as_ptr().add(offset),
                        buf.len(),
                    )
                };
                true
            }
            _ => false,
        }
    }

    /// Run `f` over the whole memory as a byte slice (stale bytes while the
    /// guest writes are harmless: a renderer redraws the pages it wrote).
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        // SAFETY: the mapping is valid for len() bytes for self's lifetime;
        // guest writes race with this read only as plain byte stores.
        let bytes = unsafe { std::slice::from_raw_parts(self.region.as_ptr(), self.len()) };
        f(bytes)
    }

    /// The pages written since the last call (the mapper installs the log).
    pub fn take_dirty(&self) -> DirtyPages {
        let log = self.dirty_log.lock().unwrap_or_else(|e| e.into_inner());
        match log.as_ref().and_then(|f| f()) {
            Some(b) => DirtyPages::Bitmap(b),
            None => DirtyPages::All,
        }
    }

    /// Set (or clear) how `take_dirty` reads the log; the mapper's call.
    pub fn set_dirty_log(&self, f: Option<DirtyLogFn>) {
        *self.dirty_log.lock().unwrap_or_else(|e| e.into_inner()) = f;
    }
}

/// Maps a `BarRam` into guest-physical space (the machine implements it with
/// a memory slot and a dirty log); `id` names the BAR across calls.
pub trait RamMapper: Send + Sync {
    /// Map `ram` at `address`, or unmap it when `address` is None.
    fn map(&self, id: u32, ram: &std::sync::Arc<BarRam>, address: Option<u64>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_bounds() {
        let r = BarRam::new(8192).unwrap();
        assert!(r.write(4096, &[1, 2, 3]));
        let mut b = [0u8; 3];
        assert!(r.read(4096, &mut b));
        assert_eq!(b, [1, 2, 3]);
        assert!(!r.read(8190, &mut b));
        assert!(!r.write(usize::MAX, &b));
        assert!(BarRam::new(1000).is_err());
        assert_eq!(r.take_dirty(), DirtyPages::All);
        r.set_dirty_log(Some(Box::new(|| Some(vec![0b10]))));
        let d = r.take_dirty();
        assert!(d.is_dirty(1) && !d.is_dirty(0) && !d.is_dirty(700));
    }
}
