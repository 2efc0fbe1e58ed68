//! Guest memory: the PC's physical address map and the host mappings behind it.
//!
//! RAM starts at 0 and runs up to at most 3 GiB; 3 GiB to 4 GiB is a hole for
//! MMIO (PCI windows, IOAPIC, LAPIC, firmware); whatever RAM is left lives
//! above 4 GiB. Both ranges are mmap'ed by vm-memory; `memory_map` registers
//! them with the VM (around the PC's holes), so every vCPU and every device
//! sees the same bytes.

use thiserror::Error;
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Start of the MMIO hole below 4 GiB.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// Where RAM resumes above the hole.
pub const HIGH_RAM_START: u64 = 0x1_0000_0000;
/// The smallest guest Kite builds: enough for the loaders' low-memory tables
/// and a small kernel.
pub const MIN_MEMORY: u64 = 2 << 20;
/// The largest guest Kite builds (a sanity limit, not a design one).
pub const MAX_MEMORY: u64 = 1 << 40;
/// Top of conventional memory; the BIOS data areas and ROMs follow.
pub const LOW_RAM_END: u64 = 0x9_fc00;
/// The legacy ROM area (video, option ROMs, BIOS) below 1 MiB.
pub const LEGACY_ROM_START: u64 = 0xa_0000;
pub const ONE_MIB: u64 = 0x10_0000;

#[derive(Debug, Error)]
pub enum MemoryError {
    /// The requested size cannot make a PC.
    #[error("memory size {size} bytes is invalid: {why}")]
    BadSize { size: u64, why: &'static str },
    /// The host refused the mapping.
    #[error("cannot map {size} bytes of guest memory: {detail}")]
    Map { size: u64, detail: String },
    /// The engine refused the slot.
    #[error("cannot register guest memory with the engine: {0}")]
    Register(#[from] kite_hypervisor::Error),
}

/// Where RAM lives in guest-physical space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLayout {
    /// Total RAM in bytes.
    pub size: u64,
    /// RAM at 0 .. `low_size` (at most `MMIO_HOLE_START`).
    pub low_size: u64,
    /// RAM at `HIGH_RAM_START` .. + `high_size`.
    pub high_size: u64,
}

impl MemoryLayout {
    pub fn new(size: u64) -> Result<Self, MemoryError> {
        if size < MIN_MEMORY {
            return Err(MemoryError::BadSize {
                size,
                why: "at least 2 MiB is needed",
            });
        }
        if size > MAX_MEMORY {
            return Err(MemoryError::BadSize {
                size,
                why: "at most 1 TiB is supported",
            });
        }
        if !size.is_multiple_of(4096) {
            return Err(MemoryError::BadSize {
                size,
                why: "it must be a multiple of 4 KiB",
            });
        }
        let low_size = size.min(MMIO_HOLE_START);
        Ok(MemoryLayout {
            size,
            low_size,
            high_size: size - low_size,
        })
    }

    /// The RAM ranges as (guest address, length).
    pub fn ram_ranges(&self) -> Vec<(u64, u64)> {
        let mut r = vec![(0, self.low_size)];
        if self.high_size > 0 {
            r.push((HIGH_RAM_START, self.high_size));
        }
        r
    }

    /// Whether `addr .. addr + len` lies in RAM below the hole.
    pub fn in_low_ram(&self, addr: u64, len: u64) -> bool {
        addr.checked_add(len)
            .is_some_and(|end| end <= self.low_size)
    }
}

/// Map guest RAM for `layout` (zero-filled).
pub fn create_guest_memory(layout: &MemoryLayout) -> Result<GuestMemoryMmap, MemoryError> {
    let ranges: Vec<(GuestAddress, usize)> = layout
        .ram_ranges()
        .into_iter()
        .map(|(a, l)| {
            usize::try_from(l)
                .map(|l| (GuestAddress(a), l))
                .map_err(|_| MemoryError::BadSize {
                    size: layout.size,
                    why: "it does not fit the host address space",
                })
        })
        .collect::<Result<_, _>>()?;
    GuestMemoryMmap::from_ranges(&ranges).map_err(|e| MemoryError::Map {
        size: layout.size,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn layout_splits_around_the_hole() {
        let l = MemoryLayout::new(512 << 20).unwrap();
        assert_eq!(l.ram_ranges(), vec![(0, 512 << 20)]);
        let l = MemoryLayout::new(4 << 30).unwrap();
        assert_eq!(
            l.ram_ranges(),
            vec![(0, 3 << 30), (HIGH_RAM_START, 1 << 30)]
        );
        assert!(l.in_low_ram(0, 3 << 30));
        assert!(!l.in_low_ram(1, 3 << 30));
        assert!(!l.in_low_ram(u64::MAX, 2));
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(MemoryLayout::new(1 << 20).is_err());
        assert!(MemoryLayout::new((64 << 20) + 1).is_err());
        assert!(MemoryLayout::new(2 << 40).is_err());
    }

    #[test]
    fn memory_is_mapped_and_zeroed() {
        let l = MemoryLayout::new(8 << 20).unwrap();
        let mem = create_guest_memory(&l).unwrap();
        let v: u64 = mem.read_obj(GuestAddress(0x7f_fff8)).unwrap();
        assert_eq!(v, 0);
        mem.write_obj(0xdead_beef_u64, GuestAddress(0x1000))
            .unwrap();
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(0x1000)).unwrap(),
            0xdead_beef
        );
        assert!(mem.read_obj::<u64>(GuestAddress(8 << 20)).is_err());
    }
}
