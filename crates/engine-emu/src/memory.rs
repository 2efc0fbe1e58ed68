//! Guest-physical memory as the emu engine sees it: the VM's slots (host
//! mappings registered through `Vm::set_memory_region`), dirty-page logging,
//! and the per-page "holds decoded code" tracking that invalidates cached
//! instructions when the guest writes to its own code.
//!
//! Shared (behind an `Arc`) by every vCPU of a VM; slot changes are rare and
//! published by replacing the slot table, so lookups never take a lock.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use kite_hypervisor::{Error, MemoryRegion, Result};

pub const PAGE_SIZE: u64 = 4096;
pub const PAGE_SHIFT: u32 = 12;

/// One RAM slot.
#[derive(Debug)]
pub struct Slot {
    pub region: MemoryRegion,
    /// One bit per page, set on write when `region.log_dirty`.
    pub dirty: Vec<AtomicU64>,
}

impl Slot {
    #[inline]
    pub fn contains(&self, gpa: u64) -> bool {
        gpa.wrapping_sub(self.region.guest_phys_addr) < self.region.size
    }

    /// Host pointer for `gpa`, which must be inside the slot.
    #[inline]
    pub fn host_ptr(&self, gpa: u64) -> *mut u8 {
        (self.region.host_addr + (gpa - self.region.guest_phys_addr)) as *mut u8
    }

    pub fn mark_dirty(&self, gpa: u64) {
        if self.region.log_dirty {
            let page = (gpa - self.region.guest_phys_addr) >> PAGE_SHIFT;
            if let Some(w) = self.dirty.get((page / 64) as usize) {
                w.fetch_or(1 << (page % 64), Ordering::Relaxed);
            }
        }
    }
}

/// What backs a guest-physical page.
#[derive(Debug, Clone, Copy)]
pub struct PageBacking {
    /// Host address of the page's first byte.
    pub host: *mut u8,
    pub readonly: bool,
    pub log_dirty: bool,
}

/// Tracking of pages that hold decoded code, by guest-physical page number.
/// Pages above `CODE_TRACK_LIMIT` are tracked through a coarse generation.
#[derive(Debug)]
pub struct CodePages {
    /// One bit per page: some vCPU has decoded instructions from it.
    bits: Vec<AtomicU64>,
    /// Bumped each time a code page is written; cached blocks compare it.
    generation: Vec<AtomicU32>,
    /// Bumped whenever a page becomes a code page: vCPUs then drop write
    /// permissions from their TLBs so the next write takes the slow path.
    pub write_epoch: AtomicU64,
    /// Bumped each time a code page is written (any page): vCPUs then stop
    /// following block links without checking generations.
    pub inval_epoch: AtomicU64,
    /// The memory's `any_epoch`, bumped after either of the two above.
    any: Arc<AtomicU64>,
}

/// Physical pages tracked one by one (64 GiB); beyond, one shared entry.
const CODE_TRACK_PAGES: u64 = 1 << 24;

impl CodePages {
    fn new(any: Arc<AtomicU64>) -> Self {
        CodePages {
            bits: Vec::new(),
            generation: Vec::new(),
            write_epoch: AtomicU64::new(0),
            inval_epoch: AtomicU64::new(0),
            any,
        }
    }

    fn with_pages(pages: u64, any: Arc<AtomicU64>) -> Self {
        let pages = pages.min(CODE_TRACK_PAGES) + 1;
        CodePages {
            bits: (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            generation: (0..pages).map(|_| AtomicU32::new(0)).collect(),
            write_epoch: AtomicU64::new(0),
            inval_epoch: AtomicU64::new(0),
            any,
        }
    }

    #[inline]
    fn index(&self, pfn: u64) -> usize {
        let last = self.generation.len().saturating_sub(1) as u64;
        pfn.min(last) as usize
    }

    /// The generation of page `pfn` (compare with a cached block's).
    #[inline]
    pub fn generation(&self, pfn: u64) -> u32 {
        self.generation
            .get(self.index(pfn))
            .map_or(0, |g| g.load(Ordering::Acquire))
    }

    #[inline]
    pub fn is_code(&self, pfn: u64) -> bool {
        let i = self.index(pfn);
        self.bits
            .get(i / 64)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (i % 64)) != 0)
    }

    /// Mark `pfn` as holding decoded code; returns its generation.
    pub fn mark_code(&self, pfn: u64) -> u32 {
        let i = self.index(pfn);
        if let Some(w) = self.bits.get(i / 64) {
            let old = w.fetch_or(1 << (i % 64), Ordering::AcqRel);
            if old & (1 << (i % 64)) == 0 {
                self.write_epoch.fetch_add(1, Ordering::AcqRel);
                self.any.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.generation(pfn)
    }

    /// A write hit code page `pfn`: invalidate its decoded blocks.
    pub fn invalidate(&self, pfn: u64) {
        let i = self.index(pfn);
        if let Some(w) = self.bits.get(i / 64) {
            w.fetch_and(!(1 << (i % 64)), Ordering::AcqRel);
        }
        if let Some(g) = self.generation.get(i) {
            g.fetch_add(1, Ordering::AcqRel);
        }
        self.inval_epoch.fetch_add(1, Ordering::AcqRel);
        self.any.fetch_add(1, Ordering::SeqCst);
    }
}

/// What a vCPU tells `PhysMemory::dirty_log` about itself: whether it is
/// executing guest code now, and the dirty-log epoch it has caught up with
/// (its TLB holds no write permission granted before that epoch's clear).
#[derive(Debug, Default)]
pub struct VcpuMemAck {
    pub in_guest: AtomicBool,
    pub seen_dirty_epoch: AtomicU64,
}

/// How long `dirty_log` waits for running vCPUs to drop their TLB write
/// permissions (they do at the next block boundary, microseconds).
const DIRTY_ACK_TIMEOUT: Duration = Duration::from_secs(1);

/// The slot table and code tracking of one VM.
#[derive(Debug)]
pub struct PhysMemory {
    slots: RwLock<Arc<Vec<Arc<Slot>>>>,
    /// Bumped when the slot table changes, so vCPUs flush TLBs.
    pub layout_epoch: AtomicU64,
    /// Bumped by `dirty_log`, so vCPUs drop TLB write permissions (writes
    /// through them would not be logged) without flushing anything else.
    pub dirty_epoch: AtomicU64,
    /// Bumped after each bump of the epochs above and of the code pages'
    /// (`write_epoch`, `inval_epoch`): a vCPU that sees it unchanged needs
    /// to look at none of them (`Cpu::sync_memory_epochs`).
    pub any_epoch: Arc<AtomicU64>,
    vcpus: Mutex<Vec<Weak<VcpuMemAck>>>,
    code: RwLock<Arc<CodePages>>,
}

impl Default for PhysMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl PhysMemory {
    pub fn new() -> Self {
        let any = Arc::new(AtomicU64::new(0));
        PhysMemory {
            slots: RwLock::new(Arc::new(Vec::new())),
            layout_epoch: AtomicU64::new(0),
            dirty_epoch: AtomicU64::new(0),
            any_epoch: any.clone(),
            vcpus: Mutex::new(Vec::new()),
            code: RwLock::new(Arc::new(CodePages::new(any))),
        }
    }

    /// The current slot table (cheap clone of an Arc; vCPUs cache it).
    pub fn slots(&self) -> Arc<Vec<Arc<Slot>>> {
        self.slots.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn code_pages(&self) -> Arc<CodePages> {
        self.code.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Add, replace or (size 0) remove a slot.
    pub fn set_region(&self, region: MemoryRegion) -> Result<()> {
        if !region.guest_phys_addr.is_multiple_of(PAGE_SIZE)
            || !region.size.is_multiple_of(PAGE_SIZE)
        {
            return Err(Error::Invalid(format!(
                "memory slot {} at {:#x}+{:#x} is not page aligned",
                region.slot, region.guest_phys_addr, region.size
            )));
        }
        if region.guest_phys_addr.checked_add(region.size).is_none() {
            return Err(Error::Invalid(format!(
                "memory slot {} wraps the address space",
                region.slot
            )));
        }
        let mut guard = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let mut table: Vec<Arc<Slot>> = guard
            .iter()
            .filter(|s| s.region.slot != region.slot)
            .cloned()
            .collect();
        if region.size != 0 {
            let end = region.guest_phys_addr + region.size;
            if let Some(o) = table.iter().find(|s| {
                s.region.guest_phys_addr < end
                    && region.guest_phys_addr < s.region.guest_phys_addr + s.region.size
            }) {
                return Err(Error::Invalid(format!(
                    "memory slot {} at {:#x}+{:#x} overlaps slot {}",
                    region.slot, region.guest_phys_addr, region.size, o.region.slot
                )));
            }
            let pages = region.size / PAGE_SIZE;
            let dirty = if region.log_dirty {
                (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect()
            } else {
                Vec::new()
            };
            table.push(Arc::new(Slot { region, dirty }));
            table.sort_by_key(|s| s.region.guest_phys_addr);
        }
        let top = table
            .iter()
            .map(|s| (s.region.guest_phys_addr + s.region.size) >> PAGE_SHIFT)
            .max()
            .unwrap_or(0);
        *guard = Arc::new(table);
        drop(guard);
        let mut code = self.code.write().unwrap_or_else(|e| e.into_inner());
        *code = Arc::new(CodePages::with_pages(top, self.any_epoch.clone()));
        self.layout_epoch.fetch_add(1, Ordering::AcqRel);
        self.any_epoch.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Read and clear the dirty bitmap of `slot`.
    pub fn dirty_log(&self, slot: u32) -> Result<Vec<u64>> {
        let table = self.slots();
        let s = table
            .iter()
            .find(|s| s.region.slot == slot)
            .ok_or_else(|| Error::Invalid(format!("no memory slot {slot}")))?;
        if !s.region.log_dirty {
            return Err(Error::Invalid(format!(
                "memory slot {slot} does not log dirty pages"
            )));
        }
        // TLBs keep write permission only for pages already marked, and a
        // write through such an entry marks nothing. So after the bits are
        // read and cleared, every vCPU in guest code drops its write
        // permissions (a new epoch) before this returns: a page written
        // through an old entry was marked when the entry was made, so it is
        // in this bitmap, and the caller copies it after the write; any
        // later write takes a TLB miss, which marks the page again. Nothing
        // is lost between two calls, which live migration relies on.
        let out = s
            .dirty
            .iter()
            .map(|w| w.swap(0, Ordering::AcqRel))
            .collect();
        let epoch = self.dirty_epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.any_epoch.fetch_add(1, Ordering::SeqCst);
        self.wait_for_dirty_acks(epoch);
        Ok(out)
    }

    /// A vCPU's handle for the dirty-log handshake; keep it as long as the
    /// vCPU lives.
    pub fn register_vcpu(&self) -> Arc<VcpuMemAck> {
        let ack = Arc::new(VcpuMemAck::default());
        ack.seen_dirty_epoch
            .store(self.dirty_epoch.load(Ordering::SeqCst), Ordering::SeqCst);
        let mut v = self.vcpus.lock().unwrap_or_else(|e| e.into_inner());
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(&ack));
        ack
    }

    /// Wait until no vCPU can still write through a TLB entry from before
    /// `epoch`: each is out of guest code or has caught up.
    fn wait_for_dirty_acks(&self, epoch: u64) {
        let acks: Vec<Arc<VcpuMemAck>> = {
            let v = self.vcpus.lock().unwrap_or_else(|e| e.into_inner());
            v.iter().filter_map(Weak::upgrade).collect()
        };
        let start = Instant::now();
        for ack in acks {
            while ack.in_guest.load(Ordering::SeqCst)
                && ack.seen_dirty_epoch.load(Ordering::SeqCst) < epoch
            {
                if start.elapsed() > DIRTY_ACK_TIMEOUT {
                    log::warn!("emu: a vCPU did not reach a block boundary in {DIRTY_ACK_TIMEOUT:?}; the dirty log may miss its writes");
                    return;
                }
                std::thread::yield_now();
            }
        }
    }
}

/// A vCPU's cached view of the slot table, for lookups without locks.
#[derive(Debug, Clone)]
pub struct SlotView {
    pub slots: Arc<Vec<Arc<Slot>>>,
}

impl SlotView {
    /// The slot backing `gpa`, if RAM.
    #[inline]
    pub fn find(&self, gpa: u64) -> Option<&Arc<Slot>> {
        // Few slots: a linear scan beats a search.
        self.slots.iter().find(|s| s.contains(gpa))
    }

    pub fn page(&self, gpa: u64) -> Option<PageBacking> {
        let s = self.find(gpa)?;
        let page = gpa & !(PAGE_SIZE - 1);
        Some(PageBacking {
            host: s.host_ptr(page),
            readonly: s.region.readonly,
            log_dirty: s.region.log_dirty,
        })
    }

    /// Copy guest-physical bytes out; false if any byte is not RAM.
    pub fn read(&self, mut gpa: u64, buf: &mut [u8]) -> bool {
        let mut done = 0;
        while done < buf.len() {
            let Some(s) = self.find(gpa) else {
                return false;
            };
            let in_slot = (s.region.guest_phys_addr + s.region.size - gpa) as usize;
            let n = in_slot.min(buf.len() - done);
            // SAFETY: `gpa..gpa+n` lies inside the slot, whose mapping the VM
            // owner guarantees valid (Vm::set_memory_region's contract).
            unsafe { std::ptr::copy_nonoverlapping(s.host_ptr(gpa), buf[done..].as_mut_ptr(), n) };
            done += n;
            gpa += n as u64;
        }
        true
    }

    /// Copy bytes into guest-physical memory (RAM, writable slots only).
    pub fn write(&self, mut gpa: u64, buf: &[u8], code: &CodePages) -> bool {
        let mut done = 0;
        while done < buf.len() {
            let Some(s) = self.find(gpa) else {
                return false;
            };
            if s.region.readonly {
                return false;
            }
            let in_slot = (s.region.guest_phys_addr + s.region.size - gpa) as usize;
            let n = in_slot.min(buf.len() - done);
            // SAFETY: as in `read`.
            unsafe { std::ptr::copy_nonoverlapping(buf[done..].as_ptr(), s.host_ptr(gpa), n) };
            let mut p = gpa & !(PAGE_SIZE - 1);
            while p < gpa + n as u64 {
                s.mark_dirty(p);
                if code.is_code(p >> PAGE_SHIFT) {
                    code.invalidate(p >> PAGE_SHIFT);
                }
                p += PAGE_SIZE;
            }
            done += n;
            gpa += n as u64;
        }
        true
    }
}
