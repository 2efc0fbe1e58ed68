//! The guest-physical memory map as the engine sees it: which host memory
//! backs which guest range, as memory slots. RAM is one host mapping
//! (`memory::create_guest_memory`), registered in pieces around the PC's
//! holes: the VGA window 0xa0000-0xbffff stays unbacked (a display device
//! traps it), the thirteen PAM segments of 0xc0000-0xfffff are RAM, read-only
//! RAM, the BIOS ROM's alias or nothing as the i440FX's PAM registers say,
//! the firmware ROM sits at the top of 4 GiB, and BARs backed by host memory
//! (framebuffers) go wherever the guest puts them. One owner of every slot,
//! so all of them are deleted before the memory behind them goes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use kite_devices::chipset::{PamMapper, PamMode, PamSegment, PAM_SEGMENTS};
use kite_devices::pci::{BarRam, RamMapper};
use kite_devices::MmioDevice;
use kite_hypervisor::{MemoryRegion, Vm};
use vm_memory::mmap::MmapRegion;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::memory::{MemoryError, MemoryLayout, HIGH_RAM_START, ONE_MIB};

/// The VGA window, never RAM.
pub const VGA_WINDOW: (u64, u64) = (0xa_0000, 0x2_0000);
/// 0xc0000-0xfffff: the PAM segments.
pub const PAM_START: u64 = 0xc_0000;
pub const PAM_LEN: u64 = 0x4_0000;
/// The BIOS ROM's last 128 KiB show at 0xe0000-0xfffff (when PAM says ROM).
const ROM_ALIAS_START: u64 = 0xe_0000;
const ROM_ALIAS_LEN: u64 = 0x2_0000;

const SLOT_LOW_RAM: u32 = 0;
const SLOT_RAM_ABOVE_1M: u32 = 1;
const SLOT_HIGH_RAM: u32 = 2;
const SLOT_PAM_FIRST: u32 = 3;
const SLOT_ROM: u32 = SLOT_PAM_FIRST + PAM_SEGMENTS as u32;
/// BARs take slots from here up.
const SLOT_BAR_FIRST: u32 = 64;
const PAGE_SIZE: u64 = 4096;

/// A firmware image in its own page-aligned host memory.
pub struct FirmwareRom {
    region: MmapRegion,
}

impl FirmwareRom {
    pub fn new(image: &[u8]) -> Result<FirmwareRom, MemoryError> {
        let region = MmapRegion::new(image.len()).map_err(|e| MemoryError::Map {
            size: image.len() as u64,
            detail: e.to_string(),
        })?;
        // SAFETY: the fresh mapping is image.len() bytes and writable.
        unsafe { std::ptr::copy_nonoverlapping(image.as_ptr(), region.as_ptr(), image.len()) };
        Ok(FirmwareRom { region })
    }

    pub fn len(&self) -> u64 {
        self.region.size() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn host(&self, offset: u64) -> u64 {
        self.region.as_ptr() as u64 + offset
    }
}

/// The slots of one VM.
pub struct GuestMap {
    vm: Arc<dyn Vm>,
    mem: Arc<GuestMemoryMmap>,
    rom: Option<FirmwareRom>,
    slots: Mutex<BTreeMap<u32, MemoryRegion>>,
    /// BAR id -> slot.
    bars: Mutex<BTreeMap<u32, u32>>,
    /// Each PAM segment's mode: bit 0 read RAM, bit 1 write RAM.
    pam: [AtomicU8; PAM_SEGMENTS],
}

impl GuestMap {
    /// Register RAM (with the holes) and the firmware ROM, if any. The PAM
    /// segments stay unmapped until the host bridge tells their mode.
    pub fn new(
        vm: Arc<dyn Vm>,
        mem: Arc<GuestMemoryMmap>,
        layout: &MemoryLayout,
        rom: Option<FirmwareRom>,
    ) -> Result<Arc<GuestMap>, MemoryError> {
        let map = Arc::new(GuestMap {
            vm,
            mem,
            rom,
            slots: Mutex::new(BTreeMap::new()),
            bars: Mutex::new(BTreeMap::new()),
            pam: std::array::from_fn(|_| AtomicU8::new(0)),
        });
        map.ram_slot(SLOT_LOW_RAM, 0, layout.low_size.min(VGA_WINDOW.0), false)?;
        if layout.low_size > ONE_MIB {
            map.ram_slot(SLOT_RAM_ABOVE_1M, ONE_MIB, layout.low_size - ONE_MIB, false)?;
        }
        if layout.high_size > 0 {
            map.ram_slot(SLOT_HIGH_RAM, HIGH_RAM_START, layout.high_size, false)?;
        }
        if let Some(rom) = &map.rom {
            let region = MemoryRegion {
                slot: SLOT_ROM,
                guest_phys_addr: (1u64 << 32) - rom.len(),
                size: rom.len(),
                host_addr: rom.host(0),
                readonly: true,
                log_dirty: false,
            };
            map.set_slot(SLOT_ROM, Some(region))?;
        }
        Ok(map)
    }

    fn ram_slot(&self, slot: u32, gpa: u64, len: u64, readonly: bool) -> Result<(), MemoryError> {
        let host = self
            .mem
            .get_host_address(GuestAddress(gpa))
            .map_err(|e| MemoryError::Map {
                size: len,
                detail: e.to_string(),
            })?;
        self.set_slot(
            slot,
            Some(MemoryRegion {
                slot,
                guest_phys_addr: gpa,
                size: len,
                host_addr: host as u64,
                readonly,
                log_dirty: false,
            }),
        )
    }

    /// Replace slot `slot` by `region` (None deletes it).
    fn set_slot(&self, slot: u32, region: Option<MemoryRegion>) -> Result<(), MemoryError> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = slots.remove(&slot) {
            if Some(old) == region {
                slots.insert(slot, old);
                return Ok(());
            }
            // SAFETY: a zero-sized region deletes the slot; no mapping is named.
            unsafe { self.vm.set_memory_region(MemoryRegion { size: 0, ..old })? };
        }
        if let Some(r) = region {
            // SAFETY: every region names host memory this map keeps alive
            // (guest RAM, the ROM, or a BarRam the device holds) until
            // `unmap_all` deletes the slot; sizes are within those mappings.
            unsafe { self.vm.set_memory_region(r)? };
            slots.insert(slot, r);
        }
        Ok(())
    }

    /// Delete every slot (before the memory behind them is dropped).
    pub fn unmap_all(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for (_, r) in std::mem::take(&mut *slots) {
            // SAFETY: as in set_slot.
            if let Err(e) = unsafe { self.vm.set_memory_region(MemoryRegion { size: 0, ..r }) } {
                log::warn!("cannot delete memory slot {}: {e}", r.slot);
            }
        }
    }

    /// Have the engine log guest writes to RAM (for a live migration), or
    /// stop. The slots are re-registered in place with the flag changed (no
    /// moment without them); ROM, read-only and BAR slots are left alone.
    pub fn log_ram_writes(&self, on: bool) -> Result<(), MemoryError> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for r in slots.values_mut() {
            if r.slot >= SLOT_ROM || r.readonly || r.log_dirty == on {
                continue;
            }
            let new = MemoryRegion {
                log_dirty: on,
                ..*r
            };
            // SAFETY: the same host memory as the slot already names, which
            // this map keeps alive until `unmap_all`.
            unsafe { self.vm.set_memory_region(new)? };
            *r = new;
        }
        Ok(())
    }

    /// Guest-physical addresses of the RAM pages written since the last
    /// call (or since `log_ram_writes(true)`), in logged slots.
    pub fn take_dirty_ram(&self) -> Vec<u64> {
        let logged: Vec<MemoryRegion> = {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots
                .values()
                .filter(|r| r.slot < SLOT_ROM && r.log_dirty)
                .copied()
                .collect()
        };
        let mut out = Vec::new();
        for r in logged {
            let Ok(words) = self.vm.dirty_log(r.slot) else {
                continue;
            };
            let pages = r.size / PAGE_SIZE;
            for (w, &bits) in words.iter().enumerate() {
                let mut b = bits;
                while b != 0 {
                    let i = w as u64 * 64 + u64::from(b.trailing_zeros());
                    b &= b - 1;
                    if i < pages {
                        out.push(r.guest_phys_addr + i * PAGE_SIZE);
                    }
                }
            }
        }
        out
    }

    fn pam_mode(&self, gpa: u64) -> Option<PamMode> {
        let index = (0..PAM_SEGMENTS).find(|&i| {
            PamSegment::get(i).is_some_and(|s| gpa >= s.base && gpa < s.base + s.size)
        })?;
        let v = self.pam[index].load(Ordering::Acquire);
        Some(PamMode::from_nibble(v))
    }
}

impl PamMapper for GuestMap {
    fn set(&self, index: usize, seg: PamSegment, mode: PamMode) {
        let Some(cell) = self.pam.get(index) else {
            return;
        };
        cell.store(
            u8::from(mode.read_ram) | (u8::from(mode.write_ram) << 1),
            Ordering::Release,
        );
        let slot = SLOT_PAM_FIRST + index as u32;
        let result = if mode.read_ram {
            // Read-only RAM: writes leave as MMIO exits and `PamWrites` drops them.
            self.ram_slot(slot, seg.base, seg.size, !mode.write_ram)
        } else {
            match &self.rom {
                Some(rom) if seg.base >= ROM_ALIAS_START && rom.len() >= ROM_ALIAS_LEN => {
                    let offset = rom.len() - ROM_ALIAS_LEN + (seg.base - ROM_ALIAS_START);
                    self.set_slot(
                        slot,
                        Some(MemoryRegion {
                            slot,
                            guest_phys_addr: seg.base,
                            size: seg.size,
                            host_addr: rom.host(offset),
                            readonly: true,
                            log_dirty: false,
                        }),
                    )
                }
                _ => self.set_slot(slot, None),
            }
        };
        if let Err(e) = result {
            log::warn!("PAM segment {:#x}: cannot remap: {e}", seg.base);
        }
    }
}

impl RamMapper for GuestMap {
    fn map(&self, id: u32, ram: &Arc<BarRam>, address: Option<u64>) {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = bars.remove(&id) {
            ram.set_dirty_log(None);
            let _ = self.set_slot(slot, None);
        }
        let Some(gpa) = address else { return };
        let slot = (SLOT_BAR_FIRST..)
            .find(|s| !bars.values().any(|v| v == s))
            .unwrap_or(SLOT_BAR_FIRST);
        let region = MemoryRegion {
            slot,
            guest_phys_addr: gpa,
            size: ram.len() as u64,
            host_addr: ram.host_addr() as u64,
            readonly: false,
            log_dirty: true,
        };
        match self.set_slot(slot, Some(region)) {
            Ok(()) => {
                bars.insert(id, slot);
                let vm = self.vm.clone();
                ram.set_dirty_log(Some(Box::new(move || vm.dirty_log(slot).ok())));
            }
            Err(e) => log::warn!("BAR memory at {gpa:#x} not mapped: {e}"),
        }
    }
}

/// The MMIO side of 0xc0000-0xfffff: accesses that no slot took. Writes
/// reach RAM where PAM says writes go to RAM (write-only segments; the
/// others are ROM or read-only RAM and drop them); reads give all ones.
pub struct PamWrites(pub Arc<GuestMap>);

impl MmioDevice for PamWrites {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let gpa = PAM_START + offset;
        if self.0.pam_mode(gpa).is_some_and(|m| m.write_ram) {
            let _ = self.0.mem.write_slice(data, GuestAddress(gpa));
        }
    }
}
