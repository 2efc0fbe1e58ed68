//! The translation cache: one reserved region of host memory per vCPU,
//! never writable and executable at once (W^X). Code is written while its
//! pages are PROT_READ|PROT_WRITE and made PROT_READ|PROT_EXEC before it
//! can run. The region is bounded (`LIMIT`); when a translation does not
//! fit, the whole cache is flushed (its generation moves on, so every
//! translation made before is unreachable) and filling starts again.

/// The translation cache's size per vCPU. Untouched pages cost nothing
/// (the mapping is reserved, MAP_NORESERVE); a Linux boot fills a few MiB.
pub const LIMIT: usize = 32 << 20;

const PAGE: usize = 4096;

pub struct CodeCache {
    base: *mut u8,
    used: usize,
    /// Bumped by every flush: a translation is valid while its generation
    /// is the cache's.
    generation: u32,
    /// The mapping could not be made (or made executable): translate nothing.
    broken: bool,
}

// SAFETY: the region is owned by this cache; it moves between threads only
// with the vCPU that owns it.
unsafe impl Send for CodeCache {}

impl Default for CodeCache {
    fn default() -> Self {
        Self::new()
    }
}

impl CodeCache {
    /// An empty cache; the region is mapped at the first `install`.
    pub fn new() -> CodeCache {
        CodeCache {
            base: std::ptr::null_mut(),
            used: 0,
            generation: 1,
            broken: false,
        }
    }

    #[inline]
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Forget every translation (their generation is no longer current).
    pub fn flush(&mut self) {
        self.used = 0;
        self.generation = self.generation.wrapping_add(1).max(1);
    }

    /// Bytes of translations since the last flush.
    pub fn used(&self) -> usize {
        self.used
    }

    fn map(&mut self) -> bool {
        if !self.base.is_null() {
            return true;
        }
        if self.broken {
            return false;
        }
        // SAFETY: a fresh private anonymous mapping owned by this cache.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LIMIT,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            self.broken = true;
            return false;
        }
        self.base = p as *mut u8;
        true
    }

    /// Copy `code` into the cache and make it executable. Returns its
    /// address and the generation it belongs to; `None` if executable
    /// memory is unavailable (the interpreter then runs everything).
    pub fn install(&mut self, code: &[u8]) -> Option<(*const u8, u32)> {
        if code.is_empty() || code.len() > LIMIT / 4 || !self.map() {
            return None;
        }
        let mut start = (self.used + 15) & !15;
        if start + code.len() > LIMIT {
            self.flush();
            start = 0;
        }
        let first = start & !(PAGE - 1);
        let end = (start + code.len() + PAGE - 1) & !(PAGE - 1);
        // SAFETY: [first, end) lies inside the region (start + len <=
        // LIMIT, LIMIT is page-aligned). No generated code runs while it
        // is writable: translation happens between blocks on the vCPU's
        // own thread, and no other thread runs this cache's code.
        unsafe {
            let pages = self.base.add(first) as *mut libc::c_void;
            if libc::mprotect(pages, end - first, libc::PROT_READ | libc::PROT_WRITE) != 0 {
                self.broken = true;
                return None;
            }
            std::ptr::copy_nonoverlapping(code.as_ptr(), self.base.add(start), code.len());
            if libc::mprotect(pages, end - first, libc::PROT_READ | libc::PROT_EXEC) != 0 {
                self.broken = true;
                return None;
            }
        }
        self.used = start + code.len();
        // SAFETY: start < LIMIT, inside the region.
        Some((
            unsafe { self.base.add(start) } as *const u8,
            self.generation,
        ))
    }
}

impl Drop for CodeCache {
    fn drop(&mut self) {
        if !self.base.is_null() {
            // SAFETY: the region this cache mapped; no translation outlives
            // the cache (blocks holding their addresses live beside it).
            unsafe {
                libc::munmap(self.base as *mut libc::c_void, LIMIT);
            }
        }
    }
}
