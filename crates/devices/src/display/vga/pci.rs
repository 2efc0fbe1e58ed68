//! The VGA's PCI function, as QEMU's `VGA` device: 1234:1111, class 0x0300,
//! revision 2, subsystem 1af4:1100. BAR 0 is the framebuffer (video memory,
//! prefetchable, handed to the root as host memory); BAR 2 is 4 KiB of MMIO:
//! 0x400-0x41f mirror ports 0x3C0-0x3DF, 0x500-0x515 the dispi registers
//! (index * 2), 0x600-0x607 QEMU's extended registers (area size,
//! framebuffer endianness). The expansion ROM serves the VGA BIOS bytes the
//! caller read.
//!
//! It must not know where BARs end up (the root maps them).

use std::sync::{Arc, Mutex};

use super::{VgaError, VgaState};
use crate::bus::lock;
use crate::pci::{Bar, BarKind, BarRam, BarRegion, ConfigSpace, PciDevice, ROM_BAR};
use crate::state::{Snapshot, StateError, StateReader, StateWriter};

pub const VENDOR: u16 = 0x1234;
pub const DEVICE: u16 = 0x1111;
pub const CLASS_VGA: u32 = 0x030000;
pub const REVISION: u8 = 2;
pub const SUBSYSTEM_VENDOR: u16 = 0x1af4;
pub const SUBSYSTEM: u16 = 0x1100;
/// BAR 2's size.
pub const MMIO_BAR_SIZE: u64 = 0x1000;

const MMIO_VGA: u64 = 0x400;
const MMIO_DISPI: u64 = 0x500;
const MMIO_DISPI_END: u64 = 0x516;
const MMIO_QEXT: u64 = 0x600;
/// The extended area's size, as register 0x600 reports it.
const QEXT_SIZE: u32 = 8;
const FB_LITTLE_ENDIAN: u32 = 0x1e1e_1e1e;
const FB_BIG_ENDIAN: u32 = 0xbebe_bebe;

/// The VGA as PCI function.
pub struct VgaPci {
    state: Arc<Mutex<VgaState>>,
    vram: Arc<BarRam>,
    config: ConfigSpace,
    /// The ROM bytes, zero-padded to the ROM BAR's size.
    rom: Vec<u8>,
    endianness: u32,
    big_endian_log: super::LogLimit,
}

impl VgaPci {
    pub fn new(
        state: Arc<Mutex<VgaState>>,
        lfb_address: u64,
        mmio_address: u64,
        rom: Option<Vec<u8>>,
    ) -> Result<VgaPci, VgaError> {
        let vram = lock(&state).vram.clone();
        let mut config = ConfigSpace::new(VENDOR, DEVICE, CLASS_VGA, REVISION);
        config.set_subsystem(SUBSYSTEM_VENDOR, SUBSYSTEM);
        config.add_bar(
            0,
            Bar {
                kind: BarKind::Memory32 { prefetchable: true },
                size: vram.len() as u64,
            },
            lfb_address,
        )?;
        config.add_bar(
            2,
            Bar {
                kind: BarKind::Memory32 {
                    prefetchable: false,
                },
                size: MMIO_BAR_SIZE,
            },
            mmio_address,
        )?;
        let rom = match rom {
            Some(bytes) if !bytes.is_empty() => {
                if bytes.len() > 1 << 24 {
                    return Err(VgaError::RomTooLarge(bytes.len()));
                }
                let size = bytes.len().next_power_of_two().max(0x800);
                config.add_rom(size as u64)?;
                let mut padded = bytes;
                padded.resize(size, 0);
                padded
            }
            _ => Vec::new(),
        };
        Ok(VgaPci {
            state,
            vram,
            config,
            rom,
            endianness: FB_LITTLE_ENDIAN,
            big_endian_log: super::LogLimit::default(),
        })
    }

    fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        let len = data.len() as u64;
        if offset.checked_add(len).is_none() {
            return;
        }
        match offset {
            o if o >= MMIO_VGA && o + len <= MMIO_VGA + 0x20 => {
                let mut st = lock(&self.state);
                for (i, b) in data.iter_mut().enumerate() {
                    *b = st.port_read(0x3c0 + (o - MMIO_VGA) as u16 + i as u16);
                }
            }
            o if o >= MMIO_DISPI && o + len <= MMIO_DISPI_END => {
                let st = lock(&self.state);
                for (i, b) in data.iter_mut().enumerate() {
                    let rel = o - MMIO_DISPI + i as u64;
                    let v = st.dispi_read((rel / 2) as u16);
                    *b = v.to_le_bytes()[(rel % 2) as usize];
                }
            }
            o if o >= MMIO_QEXT && o + len <= MMIO_QEXT + 8 => {
                let regs = [QEXT_SIZE.to_le_bytes(), self.endianness.to_le_bytes()].concat();
                let at = (o - MMIO_QEXT) as usize;
                data.copy_from_slice(&regs[at..at + data.len()]);
            }
            _ => {}
        }
    }

    fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        let len = data.len() as u64;
        if offset.checked_add(len).is_none() {
            return;
        }
        match offset {
            o if o >= MMIO_VGA && o + len <= MMIO_VGA + 0x20 => {
                let mut st = lock(&self.state);
                for (i, b) in data.iter().enumerate() {
                    st.port_write(0x3c0 + (o - MMIO_VGA) as u16 + i as u16, *b);
                }
            }
            o if o >= MMIO_DISPI
                && o + len <= MMIO_DISPI_END
                && o.is_multiple_of(2)
                && len.is_multiple_of(2) =>
            {
                let mut st = lock(&self.state);
                for (i, pair) in data.chunks_exact(2).enumerate() {
                    let index = ((o - MMIO_DISPI) / 2) as u16 + i as u16;
                    st.dispi_write(index, u16::from_le_bytes([pair[0], pair[1]]));
                }
            }
            o if o == MMIO_QEXT + 4 && len == 4 => {
                let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                if v == FB_BIG_ENDIAN {
                    if let Some(n) = self.big_endian_log.allow() {
                        log::warn!(
                            "vga: big-endian framebuffer requested ({n} times); only little-endian is drawn"
                        );
                    }
                }
                if v == FB_BIG_ENDIAN || v == FB_LITTLE_ENDIAN {
                    self.endianness = v;
                }
            }
            _ => {}
        }
    }
}

impl Snapshot for VgaPci {
    fn save_state(&self, w: &mut StateWriter) {
        self.config.save_state(w);
        w.u32(self.endianness);
        lock(&self.state).save_state(w);
    }

    fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let mut config = self.config.clone();
        config.restore_state(r)?;
        let endianness = r.u32("VGA framebuffer endianness")?;
        if endianness != FB_LITTLE_ENDIAN && endianness != FB_BIG_ENDIAN {
            return Err(StateError::invalid(format!(
                "VGA framebuffer endianness {endianness:#x}"
            )));
        }
        let mut st = lock(&self.state);
        st.restore_state(r)?;
        self.config = config;
        self.endianness = endianness;
        st.lfb_mapped = self.config.bar_regions().iter().any(|b| b.index == 0);
        Ok(())
    }
}

impl PciDevice for VgaPci {
    fn read_config(&mut self, offset: u16, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn write_config(&mut self, offset: u16, data: &[u8]) {
        self.config.write(offset, data);
        let mapped = self.config.bar_regions().iter().any(|r| r.index == 0);
        lock(&self.state).lfb_mapped = mapped;
    }

    fn bar_regions(&self) -> Vec<BarRegion> {
        self.config.bar_regions()
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        match bar {
            0 => {
                let ok = usize::try_from(offset)
                    .map(|o| self.vram.read(o, data))
                    .unwrap_or(false);
                if !ok {
                    data.fill(0xff);
                }
            }
            2 => self.mmio_read(offset, data),
            ROM_BAR => {
                for (i, b) in data.iter_mut().enumerate() {
                    let at = offset.saturating_add(i as u64);
                    *b = usize::try_from(at)
                        .ok()
                        .and_then(|a| self.rom.get(a))
                        .copied()
                        .unwrap_or(0xff);
                }
            }
            _ => data.fill(0xff),
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        match bar {
            0 => {
                if let Ok(o) = usize::try_from(offset) {
                    if self.vram.write(o, data) {
                        lock(&self.state).dirty.mark_range(o, data.len());
                    }
                }
            }
            2 => self.mmio_write(offset, data),
            _ => {}
        }
    }

    fn bar_ram(&self, bar: u8) -> Option<Arc<BarRam>> {
        (bar == 0).then(|| self.vram.clone())
    }
}
