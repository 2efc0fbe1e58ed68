//! The PIIX3 IDE function (PCI 8086:7010, class 01.01, programming
//! interface 0x80: legacy ports only, bus master): its configuration space
//! (BARs 0-3 absent, BAR4 = 16 bytes of bus-master I/O, the IDE timing
//! registers at 0x40-0x57 with both channels' decode enabled at reset) and
//! the bus-master BAR forwarded to the two channels.
//!
//! It must not know what the channels do with commands; the legacy ports
//! are mapped by whoever builds the machine (`ChannelPorts`).

use std::sync::{Arc, Mutex};

use super::channel::IdeChannel;
use crate::bus::lock;
use crate::pci::{Bar, BarKind, BarRegion, ConfigSpace, PciDevice};
use crate::state::{Snapshot, StateError, StateReader, StateWriter};

pub const VENDOR_INTEL: u16 = 0x8086;
pub const DEVICE_PIIX3_IDE: u16 = 0x7010;
/// Mass storage, IDE, legacy mode with bus mastering.
pub const CLASS_IDE: u32 = 0x010180;
/// BAR4: the bus-master registers.
pub const BM_BAR: u8 = 4;
pub const BM_BAR_SIZE: u64 = 16;
/// The device-specific registers kept here: IDETIM (0x40, 0x42), SIDETIM
/// (0x44), UDMA control and timing (0x48-0x4b), IDE I/O config (0x54).
const TIMING_START: usize = 0x40;
const TIMING_END: usize = 0x58;

/// The IDE function with its two channels.
pub struct IdeController {
    config: ConfigSpace,
    timing: [u8; TIMING_END - TIMING_START],
    channels: [Arc<Mutex<IdeChannel>>; 2],
}

impl IdeController {
    pub fn new(primary: Arc<Mutex<IdeChannel>>, secondary: Arc<Mutex<IdeChannel>>) -> Self {
        let mut config = ConfigSpace::new(VENDOR_INTEL, DEVICE_PIIX3_IDE, CLASS_IDE, 0);
        // BAR4 starts unplaced; firmware or the OS puts it in the I/O window.
        let bar = Bar {
            kind: BarKind::Io,
            size: BM_BAR_SIZE,
        };
        if let Err(e) = config.add_bar(usize::from(BM_BAR), bar, 0) {
            log::error!("ide: bus-master BAR not declared: {e}");
        }
        let mut c = IdeController {
            config,
            timing: [0; TIMING_END - TIMING_START],
            channels: [primary, secondary],
        };
        c.reset_timing();
        c
    }

    /// IDETIM decode enable (bit 15) set for both channels, as at reset.
    fn reset_timing(&mut self) {
        self.timing = [0; TIMING_END - TIMING_START];
        self.timing[1] = 0x80;
        self.timing[3] = 0x80;
        self.apply_decode();
    }

    fn apply_decode(&self) {
        for (i, ch) in self.channels.iter().enumerate() {
            lock(ch).decode = self.timing[2 * i + 1] & 0x80 != 0;
        }
    }

    /// Channel 0 (primary) or 1 (secondary).
    pub fn channel(&self, index: usize) -> Option<&Arc<Mutex<IdeChannel>>> {
        self.channels.get(index)
    }
}

impl IdeController {
    pub(super) fn channels_ref(&self) -> [Arc<Mutex<IdeChannel>>; 2] {
        self.channels.clone()
    }
}

impl Snapshot for IdeController {
    fn save_state(&self, w: &mut StateWriter) {
        self.config.save_state(w);
        w.raw(&self.timing);
        self.save_channels(w);
    }

    fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let mut config = self.config.clone();
        config.restore_state(r)?;
        let mut timing = [0u8; TIMING_END - TIMING_START];
        timing.copy_from_slice(r.raw(TIMING_END - TIMING_START, "IDE timing registers")?);
        self.restore_channels(r)?;
        self.config = config;
        self.timing = timing;
        self.apply_decode();
        Ok(())
    }

    fn set_images_active(&mut self, active: bool) -> Result<(), String> {
        let channels = self.channels_ref();
        let guards: Vec<_> = channels.iter().map(|ch| crate::bus::lock(ch)).collect();
        let images = guards
            .iter()
            .flat_map(|ch| ch.drives.iter().flatten())
            .filter_map(|d| d.image.as_ref());
        crate::storage::DiskImage::set_all_active(images, active).map_err(|e| e.to_string())
    }
}

impl PciDevice for IdeController {
    fn read_config(&mut self, offset: u16, data: &mut [u8]) {
        let start = usize::from(offset);
        if start >= TIMING_START && start + data.len() <= TIMING_END {
            let at = start - TIMING_START;
            data.copy_from_slice(&self.timing[at..at + data.len()]);
        } else {
            self.config.read(offset, data);
        }
    }

    fn write_config(&mut self, offset: u16, data: &[u8]) {
        let start = usize::from(offset);
        if start >= TIMING_START && start + data.len() <= TIMING_END {
            let at = start - TIMING_START;
            self.timing[at..at + data.len()].copy_from_slice(data);
            self.apply_decode();
        } else {
            self.config.write(offset, data);
        }
    }

    fn bar_regions(&self) -> Vec<BarRegion> {
        self.config.bar_regions()
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        if bar != BM_BAR {
            data.fill(0xff);
            return;
        }
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset + i as u64;
            *b = match self.channels.get((at / 8) as usize) {
                Some(ch) => lock(ch).bus_master_read(at % 8),
                None => 0xff,
            };
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        if bar != BM_BAR {
            return;
        }
        for (i, &b) in data.iter().enumerate() {
            let at = offset + i as u64;
            if let Some(ch) = self.channels.get((at / 8) as usize) {
                lock(ch).bus_master_write(at % 8, b);
            }
        }
    }
}
