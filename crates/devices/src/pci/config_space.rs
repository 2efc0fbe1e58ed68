//! A type-0 PCI configuration space (256 bytes) with per-bit write masks,
//! write-1-to-clear status bits, BARs that answer the sizing protocol, and a
//! capability list. Devices embed one and forward config accesses to it.

use thiserror::Error;

use crate::state::{StateError, StateReader, StateWriter};

use super::{BarRegion, ROM_BAR};

/// Size of the conventional configuration space.
pub const CONFIG_SPACE_SIZE: usize = 256;

pub const VENDOR_ID: usize = 0x00;
pub const DEVICE_ID: usize = 0x02;
pub const COMMAND: usize = 0x04;
pub const STATUS: usize = 0x06;
pub const REVISION_ID: usize = 0x08;
pub const CLASS_PROG_IF: usize = 0x09;
pub const CACHE_LINE_SIZE: usize = 0x0c;
pub const LATENCY_TIMER: usize = 0x0d;
pub const HEADER_TYPE: usize = 0x0e;
pub const BAR0: usize = 0x10;
pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
pub const SUBSYSTEM_ID: usize = 0x2e;
pub const CAPABILITIES_POINTER: usize = 0x34;
pub const EXPANSION_ROM: usize = 0x30;
pub const INTERRUPT_LINE: usize = 0x3c;
pub const INTERRUPT_PIN: usize = 0x3d;

/// Command register: I/O space, memory space, bus master, parity error
/// response, SERR# enable, INTx disable.
const COMMAND_WRITABLE: u16 = 0x0547;
pub const COMMAND_IO_SPACE: u16 = 1 << 0;
pub const COMMAND_MEMORY_SPACE: u16 = 1 << 1;
/// Status register error bits, cleared by writing 1.
const STATUS_W1C: u16 = 0xf900;
const STATUS_CAP_LIST: u16 = 1 << 4;
/// First byte of the device-specific area, where capabilities go.
const CAPABILITIES_START: usize = 0x40;

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// Port I/O space.
    Io,
    /// 32-bit memory space.
    Memory32 { prefetchable: bool },
    /// 64-bit memory space (takes this BAR and the next).
    Memory64 { prefetchable: bool },
}

/// One base address register's size, kind and current address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    pub kind: BarKind,
    /// A power of two: at least 16 for memory, 4 for I/O.
    pub size: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigSpaceError {
    #[error("BAR {index} does not exist (0-5; a 64-bit BAR needs two slots)")]
    BadBarIndex { index: usize },
    #[error("BAR {index} is already in use")]
    BarInUse { index: usize },
    #[error("BAR size {size:#x} must be a power of two, at least {min:#x}")]
    BadBarSize { size: u64, min: u64 },
    #[error("BAR address {address:#x} is not aligned to its size {size:#x}")]
    MisalignedBar { address: u64, size: u64 },
    #[error("no room for a {len}-byte capability in configuration space")]
    NoCapabilityRoom { len: usize },
}

/// A type-0 configuration header and device-specific area.
#[derive(Clone)]
pub struct ConfigSpace {
    data: [u8; CONFIG_SPACE_SIZE],
    /// Bits the guest may change.
    wmask: [u8; CONFIG_SPACE_SIZE],
    /// Bits the guest clears by writing 1.
    w1c: [u8; CONFIG_SPACE_SIZE],
    bars: [Option<Bar>; 6],
    /// The expansion ROM's size, when the device has one.
    rom: Option<u64>,
    /// Offset of the last capability's next pointer (0 before the first).
    last_cap_next: usize,
    /// Next free byte for a capability.
    cap_free: usize,
}

impl ConfigSpace {
    /// A header with the given ids and class (`class` = base class, subclass,
    /// programming interface as in the config space, e.g. 0x060000 for a host bridge).
    pub fn new(vendor: u16, device: u16, class: u32, revision: u8) -> ConfigSpace {
        let mut c = ConfigSpace {
            data: [0; CONFIG_SPACE_SIZE],
            wmask: [0; CONFIG_SPACE_SIZE],
            w1c: [0; CONFIG_SPACE_SIZE],
            bars: [None; 6],
            rom: None,
            last_cap_next: 0,
            cap_free: CAPABILITIES_START,
        };
        c.set_u16(VENDOR_ID, vendor);
        c.set_u16(DEVICE_ID, device);
        c.data[REVISION_ID] = revision;
        c.data[CLASS_PROG_IF] = class as u8;
        c.data[CLASS_PROG_IF + 1] = (class >> 8) as u8;
        c.data[CLASS_PROG_IF + 2] = (class >> 16) as u8;
        c.wmask[COMMAND..COMMAND + 2].copy_from_slice(&COMMAND_WRITABLE.to_le_bytes());
        c.w1c[STATUS..STATUS + 2].copy_from_slice(&STATUS_W1C.to_le_bytes());
        c.wmask[CACHE_LINE_SIZE] = 0xff;
        c.wmask[LATENCY_TIMER] = 0xff;
        c.wmask[INTERRUPT_LINE] = 0xff;
        c
    }

    /// Set the subsystem vendor and device ids.
    pub fn set_subsystem(&mut self, vendor: u16, device: u16) {
        self.set_u16(SUBSYSTEM_VENDOR_ID, vendor);
        self.set_u16(SUBSYSTEM_ID, device);
    }

    /// Set the header-type byte (bit 7: multi-function).
    pub fn set_header_type(&mut self, v: u8) {
        self.data[HEADER_TYPE] = v;
    }

    /// Use INTx pin `pin` (1 = INTA#) routed to `line` (the IRQ the guest sees).
    pub fn set_interrupt(&mut self, pin: u8, line: u8) {
        self.data[INTERRUPT_PIN] = pin;
        self.data[INTERRUPT_LINE] = line;
    }

    /// Set device-specific bytes at `offset` and which of their bits the
    /// guest may change (`mask`, same length); out of range is ignored.
    pub fn set_register(&mut self, offset: usize, value: &[u8], mask: &[u8]) {
        let end = offset + value.len();
        if end > CONFIG_SPACE_SIZE || mask.len() != value.len() {
            return;
        }
        self.data[offset..end].copy_from_slice(value);
        self.wmask[offset..end].copy_from_slice(mask);
    }

    fn set_u16(&mut self, at: usize, v: u16) {
        self.data[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn set_u32(&mut self, at: usize, v: u32) {
        self.data[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn u32_at(&self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.data[at..at + 4]);
        u32::from_le_bytes(b)
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        u16::from_le_bytes([self.data[COMMAND], self.data[COMMAND + 1]])
    }

    /// Declare BAR `index` with `bar`'s kind and size, at `address` (from a
    /// `BarAllocator`).
    pub fn add_bar(
        &mut self,
        index: usize,
        bar: Bar,
        address: u64,
    ) -> Result<(), ConfigSpaceError> {
        let wide = matches!(bar.kind, BarKind::Memory64 { .. });
        if index >= 6 || (wide && index >= 5) {
            return Err(ConfigSpaceError::BadBarIndex { index });
        }
        if self.bars[index].is_some() || (wide && self.bars[index + 1].is_some()) {
            return Err(ConfigSpaceError::BarInUse { index });
        }
        let min = if bar.kind == BarKind::Io { 4 } else { 16 };
        if !bar.size.is_power_of_two() || bar.size < min || (!wide && bar.size > 1 << 31) {
            return Err(ConfigSpaceError::BadBarSize {
                size: bar.size,
                min,
            });
        }
        if address & (bar.size - 1) != 0 || (!wide && address > u64::from(u32::MAX)) {
            return Err(ConfigSpaceError::MisalignedBar {
                address,
                size: bar.size,
            });
        }
        let (flags, flag_bits): (u32, u32) = match bar.kind {
            BarKind::Io => (0x1, 0x3),
            BarKind::Memory32 { prefetchable } => (u32::from(prefetchable) << 3, 0xf),
            BarKind::Memory64 { prefetchable } => ((u32::from(prefetchable) << 3) | 0x4, 0xf),
        };
        let at = BAR0 + 4 * index;
        let low_mask = !((bar.size - 1) as u32) & !flag_bits;
        self.set_u32(at, (address as u32 & low_mask) | flags);
        self.wmask[at..at + 4].copy_from_slice(&low_mask.to_le_bytes());
        self.bars[index] = Some(bar);
        if wide {
            let high_mask = !((bar.size - 1) >> 32) as u32;
            self.set_u32(at + 4, (address >> 32) as u32);
            self.wmask[at + 4..at + 8].copy_from_slice(&high_mask.to_le_bytes());
            self.bars[index + 1] = None;
        }
        Ok(())
    }

    /// BAR `index`'s declaration and current address, if it is one.
    pub fn bar(&self, index: usize) -> Option<(Bar, u64)> {
        let bar = (*self.bars.get(index)?)?;
        let at = BAR0 + 4 * index;
        let low = u64::from(self.u32_at(at));
        let addr = match bar.kind {
            BarKind::Io => low & !0x3,
            BarKind::Memory32 { .. } => low & !0xf,
            BarKind::Memory64 { .. } => (low & !0xf) | (u64::from(self.u32_at(at + 4)) << 32),
        };
        Some((bar, addr))
    }

    /// Declare an expansion ROM of `size` bytes (a power of two, at least
    /// 2 KiB), disabled and unplaced until the guest programs offset 0x30.
    pub fn add_rom(&mut self, size: u64) -> Result<(), ConfigSpaceError> {
        if !size.is_power_of_two() || !(0x800..=1 << 24).contains(&size) {
            return Err(ConfigSpaceError::BadBarSize { size, min: 0x800 });
        }
        let mask = !((size - 1) as u32) | 1;
        self.wmask[EXPANSION_ROM..EXPANSION_ROM + 4].copy_from_slice(&mask.to_le_bytes());
        self.rom = Some(size);
        Ok(())
    }

    /// The BARs that decode now: declared, with their space enabled in the
    /// command register (and the ROM's enable bit), at an address that is
    /// not zero and not the sizing pattern's wrap past the top.
    pub fn bar_regions(&self) -> Vec<BarRegion> {
        let cmd = self.command();
        let mut out = Vec::new();
        for index in 0..6 {
            let Some((bar, address)) = self.bar(index) else {
                continue;
            };
            let (enabled, limit) = match bar.kind {
                BarKind::Io => (cmd & COMMAND_IO_SPACE != 0, 1 << 16),
                BarKind::Memory32 { .. } => (cmd & COMMAND_MEMORY_SPACE != 0, 1 << 32),
                BarKind::Memory64 { .. } => (cmd & COMMAND_MEMORY_SPACE != 0, 1 << 52),
            };
            if enabled && address != 0 && address + bar.size < limit {
                out.push(BarRegion {
                    index: index as u8,
                    kind: bar.kind,
                    address,
                    size: bar.size,
                });
            }
        }
        if let Some(size) = self.rom {
            let v = self.u32_at(EXPANSION_ROM);
            let address = u64::from(v & !0x7ff);
            if v & 1 != 0
                && cmd & COMMAND_MEMORY_SPACE != 0
                && address != 0
                && address + size < 1 << 32
            {
                out.push(BarRegion {
                    index: ROM_BAR,
                    kind: BarKind::Memory32 {
                        prefetchable: false,
                    },
                    address,
                    size,
                });
            }
        }
        out
    }

    /// Append a capability with id `id` and body `body` (the bytes after the
    /// id and next pointer); `write_mask` (same length as `body`, or empty for
    /// read-only) says which body bits the guest may change. Returns the
    /// capability's offset.
    pub fn add_capability(
        &mut self,
        id: u8,
        body: &[u8],
        write_mask: &[u8],
    ) -> Result<usize, ConfigSpaceError> {
        let len = body.len() + 2;
        let at = self.cap_free;
        if at + len > CONFIG_SPACE_SIZE
            || !(write_mask.is_empty() || write_mask.len() == body.len())
        {
            return Err(ConfigSpaceError::NoCapabilityRoom { len });
        }
        self.data[at] = id;
        self.data[at + 1] = 0;
        self.data[at + 2..at + len].copy_from_slice(body);
        if !write_mask.is_empty() {
            self.wmask[at + 2..at + len].copy_from_slice(write_mask);
        }
        if self.last_cap_next == 0 {
            self.data[CAPABILITIES_POINTER] = at as u8;
            let status =
                u16::from_le_bytes([self.data[STATUS], self.data[STATUS + 1]]) | STATUS_CAP_LIST;
            self.set_u16(STATUS, status);
        } else {
            self.data[self.last_cap_next] = at as u8;
        }
        self.last_cap_next = at + 1;
        self.cap_free = (at + len + 3) & !3;
        Ok(at)
    }

    /// The raw bytes (for a device's own view of its capabilities).
    pub fn bytes(&self) -> &[u8; CONFIG_SPACE_SIZE] {
        &self.data
    }

    /// Save the 256 bytes for a snapshot.
    pub fn save_state(&self, w: &mut StateWriter) {
        w.raw(&self.data);
    }

    /// Restore what `save_state` saved into a space declared the same way:
    /// only bits the guest could have changed may differ from this one's
    /// (ids, class, BAR flags and capabilities must match).
    pub fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let saved = r.raw(CONFIG_SPACE_SIZE, "PCI configuration space")?;
        for (at, (&new, &old)) in saved.iter().zip(self.data.iter()).enumerate() {
            let changeable = self.wmask[at] | self.w1c[at];
            if (new ^ old) & !changeable != 0 {
                return Err(StateError::Invalid(format!(
                    "PCI configuration byte {at:#04x} is {new:#04x}, this device has {old:#04x} (a different device?)"
                )));
            }
        }
        self.data.copy_from_slice(saved);
        Ok(())
    }

    /// Read `data.len()` bytes at `offset`; out-of-range reads as all ones.
    pub fn read(&self, offset: u16, data: &mut [u8]) {
        let start = usize::from(offset);
        match self.data.get(start..start + data.len()) {
            Some(src) => data.copy_from_slice(src),
            None => data.fill(0xff),
        }
    }

    /// Write `data` at `offset` through the write and write-1-to-clear masks;
    /// out-of-range writes are ignored.
    pub fn write(&mut self, offset: u16, data: &[u8]) {
        let start = usize::from(offset);
        if start + data.len() > CONFIG_SPACE_SIZE {
            return;
        }
        for (i, &v) in data.iter().enumerate() {
            let at = start + i;
            let m = self.wmask[at];
            let mut b = (self.data[at] & !m) | (v & m);
            b &= !(v & self.w1c[at]);
            self.data[at] = b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd32(c: &ConfigSpace, off: u16) -> u32 {
        let mut b = [0u8; 4];
        c.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn bar_sizing_protocol() {
        let mut c = ConfigSpace::new(0x1af4, 0x1041, 0x020000, 1);
        c.add_bar(
            0,
            Bar {
                kind: BarKind::Memory32 {
                    prefetchable: false,
                },
                size: 0x1000,
            },
            0xc000_0000,
        )
        .unwrap();
        c.add_bar(
            1,
            Bar {
                kind: BarKind::Io,
                size: 0x20,
            },
            0xc020,
        )
        .unwrap();
        c.add_bar(
            2,
            Bar {
                kind: BarKind::Memory64 { prefetchable: true },
                size: 0x4000,
            },
            0x1_0000_0000,
        )
        .unwrap();
        assert_eq!(rd32(&c, 0x10), 0xc000_0000);
        assert_eq!(rd32(&c, 0x14), 0xc021);
        assert_eq!(rd32(&c, 0x18), 0x0000_000c);
        assert_eq!(rd32(&c, 0x1c), 0x1);
        // Sizing: write all ones, read back ~(size-1) with the flag bits.
        for bar in 0..6u16 {
            c.write(0x10 + 4 * bar, &[0xff; 4]);
        }
        assert_eq!(rd32(&c, 0x10), 0xffff_f000);
        assert_eq!(rd32(&c, 0x14), 0xffff_ffe1);
        assert_eq!(rd32(&c, 0x18), 0xffff_c00c);
        assert_eq!(rd32(&c, 0x1c), 0xffff_ffff);
        // Unused BARs are hard-wired to zero.
        assert_eq!(rd32(&c, 0x20), 0);
        assert_eq!(rd32(&c, 0x24), 0);
        // Restore an address and read it back decoded.
        c.write(0x10, &0xd000_0000u32.to_le_bytes());
        c.write(0x18, &0x8000_0000u32.to_le_bytes());
        c.write(0x1c, &0x2u32.to_le_bytes());
        assert_eq!(c.bar(0).unwrap().1, 0xd000_0000);
        assert_eq!(c.bar(2).unwrap().1, 0x2_8000_0000);
        assert!(c.bar(3).is_none());
    }

    #[test]
    fn bad_bars_are_refused() {
        let mut c = ConfigSpace::new(1, 2, 0, 0);
        let mem = Bar {
            kind: BarKind::Memory32 {
                prefetchable: false,
            },
            size: 0x1000,
        };
        assert_eq!(
            c.add_bar(6, mem, 0),
            Err(ConfigSpaceError::BadBarIndex { index: 6 })
        );
        assert!(c
            .add_bar(
                0,
                Bar {
                    size: 0x1800,
                    ..mem
                },
                0
            )
            .is_err());
        assert!(c.add_bar(0, mem, 0x800).is_err());
        c.add_bar(0, mem, 0x1000).unwrap();
        assert_eq!(
            c.add_bar(0, mem, 0x1000),
            Err(ConfigSpaceError::BarInUse { index: 0 })
        );
        let wide = Bar {
            kind: BarKind::Memory64 {
                prefetchable: false,
            },
            size: 0x1000,
        };
        assert!(c.add_bar(5, wide, 0).is_err());
    }

    #[test]
    fn read_only_ids_and_writable_command() {
        let mut c = ConfigSpace::new(0x8086, 0x1237, 0x060000, 2);
        c.write(0, &[0; 4]);
        assert_eq!(rd32(&c, 0), 0x1237_8086);
        assert_eq!(rd32(&c, 8), 0x0600_0002);
        c.write(4, &[0xff, 0xff]);
        assert_eq!(c.command(), 0x0547);
        c.write(0x3c, &[11]);
        assert_eq!(c.bytes()[0x3c], 11);
    }

    #[test]
    fn status_error_bits_clear_on_write_one() {
        let mut c = ConfigSpace::new(1, 2, 0, 0);
        c.data[STATUS + 1] = 0xf9;
        c.write(STATUS as u16, &[0x00, 0x08]);
        assert_eq!(c.data[STATUS + 1], 0xf1);
        c.write(STATUS as u16, &[0xff, 0xff]);
        assert_eq!(c.data[STATUS + 1], 0);
    }

    #[test]
    fn capability_list_is_linked() {
        let mut c = ConfigSpace::new(1, 2, 0, 0);
        let a = c.add_capability(0x05, &[0; 12], &[]).unwrap();
        let b = c
            .add_capability(0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], &[0xff; 10])
            .unwrap();
        assert_eq!(c.bytes()[STATUS] & 0x10, 0x10);
        assert_eq!(usize::from(c.bytes()[CAPABILITIES_POINTER]), a);
        assert_eq!(c.bytes()[a], 0x05);
        assert_eq!(usize::from(c.bytes()[a + 1]), b);
        assert_eq!(c.bytes()[b + 1], 0);
        assert_eq!(b % 4, 0);
        // Body writes follow the mask: read-only first, writable second.
        c.write(a as u16 + 2, &[0xaa]);
        assert_eq!(c.bytes()[a + 2], 0);
        c.write(b as u16 + 2, &[0xaa]);
        assert_eq!(c.bytes()[b + 2], 0xaa);
        assert!(c.add_capability(0x09, &[0; 250], &[]).is_err());
    }

    #[test]
    fn out_of_range_access_is_harmless() {
        let mut c = ConfigSpace::new(1, 2, 0, 0);
        let mut b = [0u8; 4];
        c.read(254, &mut b);
        assert_eq!(b, [0xff; 4]);
        c.write(254, &[1, 2, 3, 4]);
    }
}
