//! PCI configuration mechanism #1: a dword address register at 0xcf8 (enable
//! bit 31, bus, device, function, register) and a data window at 0xcfc-0xcff
//! taking byte, word and dword accesses. Map it at 0xcf8 with length 8.
//!
//! Byte accesses to 0xcf9 are the PIIX reset control register, not part of
//! the address register; this device forwards them to its `ResetControl`.

use super::root::{PciAddress, PciRoot};
use crate::acpi::ResetControl;
use crate::bus::{lock, PioDevice};
use crate::state::{Snapshot, StateError, StateReader, StateWriter};
use std::sync::{Arc, Mutex};

const ENABLE: u32 = 1 << 31;

/// Ports 0xcf8-0xcff.
pub struct PciConfigIo {
    address: u32,
    root: Arc<Mutex<PciRoot>>,
    reset: Option<ResetControl>,
}

impl PciConfigIo {
    /// Config access to `root`; `reset` answers byte accesses to 0xcf9.
    pub fn new(root: Arc<Mutex<PciRoot>>, reset: Option<ResetControl>) -> PciConfigIo {
        PciConfigIo {
            address: 0,
            root,
            reset,
        }
    }

    /// The function and byte offset the address register selects for an
    /// access at data-port offset `port_off` (0-3), if enabled and on bus 0.
    fn target(&self, port_off: u16, len: usize) -> Option<(PciAddress, u16)> {
        if self.address & ENABLE == 0 || (self.address >> 16) & 0xff != 0 {
            return None;
        }
        // An access must stay inside the dword the window shows.
        if usize::from(port_off) + len > 4 {
            return None;
        }
        let addr = PciAddress {
            device: ((self.address >> 11) & 0x1f) as u8,
            function: ((self.address >> 8) & 0x7) as u8,
        };
        Some((addr, (self.address & 0xfc) as u16 + port_off))
    }
}

impl Snapshot for PciConfigIo {
    fn save_state(&self, w: &mut StateWriter) {
        w.u32(self.address);
        w.u8(self.reset.as_ref().map_or(0, |r| r.value()));
        lock(&self.root).save_state(w);
    }

    fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let address = r.u32("PCI config address")?;
        let reset = r.u8("reset control")?;
        lock(&self.root).restore_state(r)?;
        self.address = address & !0x7f00_0003;
        if let Some(rc) = self.reset.as_mut() {
            rc.set_value(reset);
        }
        Ok(())
    }

    fn set_images_active(&mut self, active: bool) -> Result<(), String> {
        lock(&self.root).set_images_active(active)
    }
}

impl PioDevice for PciConfigIo {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        match (offset, data.len()) {
            (0, 4) => data.copy_from_slice(&self.address.to_le_bytes()),
            (1, 1) => match self.reset.as_mut() {
                Some(r) => r.read(0, data),
                None => data.fill(0xff),
            },
            (4..=7, len) => match self.target(offset - 4, len) {
                // Buses other than 0 have nothing on them: all ones.
                Some((addr, reg)) => lock(&self.root).config_read(addr, reg, data),
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        match (offset, data.len()) {
            (0, 4) => {
                let mut b = [0u8; 4];
                b.copy_from_slice(data);
                // Bits 30:24 are reserved and bits 1:0 read as zero.
                self.address = u32::from_le_bytes(b) & 0x80ff_fffc;
            }
            (1, 1) => {
                if let Some(r) = self.reset.as_mut() {
                    r.write(0, data);
                }
            }
            (4..=7, len) => {
                if let Some((addr, reg)) = self.target(offset - 4, len) {
                    lock(&self.root).config_write(addr, reg, data);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::{PowerEvent, PowerEventSink};
    use crate::pci::{Bar, BarKind, ConfigSpace, PciDevice};
    use std::sync::mpsc;

    struct TestNic(ConfigSpace);
    impl Snapshot for TestNic {
        fn save_state(&self, w: &mut StateWriter) {
            self.0.save_state(w);
        }
        fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
            self.0.restore_state(r)
        }
    }
    impl PciDevice for TestNic {
        fn read_config(&mut self, offset: u16, data: &mut [u8]) {
            self.0.read(offset, data);
        }
        fn write_config(&mut self, offset: u16, data: &[u8]) {
            self.0.write(offset, data);
        }
    }

    fn cfg_addr(dev: u32, func: u32, reg: u32) -> u32 {
        ENABLE | (dev << 11) | (func << 8) | reg
    }

    fn read32(io: &mut PciConfigIo, addr: u32) -> u32 {
        io.write(0, &addr.to_le_bytes());
        let mut b = [0u8; 4];
        io.read(4, &mut b);
        u32::from_le_bytes(b)
    }

    fn setup() -> (PciConfigIo, Arc<Mutex<PciRoot>>) {
        let root = Arc::new(Mutex::new(PciRoot::new()));
        let mut c = ConfigSpace::new(0x1af4, 0x1041, 0x02_00_00, 1);
        c.add_bar(
            0,
            Bar {
                kind: BarKind::Memory32 {
                    prefetchable: false,
                },
                size: 0x4000,
            },
            0xc000_0000,
        )
        .unwrap();
        c.set_interrupt(1, 10);
        let at = lock(&root)
            .add_device(Arc::new(Mutex::new(TestNic(c))))
            .unwrap();
        assert_eq!(
            at,
            PciAddress {
                device: 1,
                function: 0
            }
        );
        (PciConfigIo::new(root.clone(), None), root)
    }

    #[test]
    fn probe_finds_host_bridge_and_device_only() {
        let (mut io, _) = setup();
        assert_eq!(read32(&mut io, cfg_addr(0, 0, 0)), 0x1237_8086);
        assert_eq!(read32(&mut io, cfg_addr(0, 0, 8)) >> 8, 0x06_00_00);
        assert_eq!(read32(&mut io, cfg_addr(1, 0, 0)), 0x1041_1af4);
        let mut found = vec![];
        for dev in 0..32 {
            for func in 0..8 {
                if read32(&mut io, cfg_addr(dev, func, 0)) != 0xffff_ffff {
                    found.push((dev, func));
                }
            }
        }
        assert_eq!(found, vec![(0, 0), (1, 0)]);
        // Bus 1 and a disabled address read as all ones.
        assert_eq!(read32(&mut io, cfg_addr(0, 0, 0) | (1 << 16)), 0xffff_ffff);
        assert_eq!(read32(&mut io, cfg_addr(0, 0, 0) & !ENABLE), 0xffff_ffff);
        // The address register reads back.
        let mut b = [0u8; 4];
        io.read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), cfg_addr(0, 0, 0) & !ENABLE);
    }

    #[test]
    fn byte_and_word_access_through_the_window() {
        let (mut io, _) = setup();
        io.write(0, &cfg_addr(1, 0, 0).to_le_bytes());
        let mut w = [0u8; 2];
        io.read(6, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x1041);
        let mut b = [0u8; 1];
        io.read(5, &mut b);
        assert_eq!(b[0], 0x1a);
        // Interrupt line/pin at 0x3c/0x3d.
        io.write(0, &cfg_addr(1, 0, 0x3c).to_le_bytes());
        io.read(5, &mut b);
        assert_eq!(b[0], 1);
        io.write(4, &[5]);
        io.read(4, &mut b);
        assert_eq!(b[0], 5);
        // A word that would cross the dword reads as all ones.
        io.read(7, &mut w);
        assert_eq!(w, [0xff, 0xff]);
    }

    #[test]
    fn bar_sizing_through_ports() {
        let (mut io, _) = setup();
        let bar0 = cfg_addr(1, 0, 0x10);
        assert_eq!(read32(&mut io, bar0), 0xc000_0000);
        io.write(0, &bar0.to_le_bytes());
        io.write(4, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(read32(&mut io, bar0), 0xffff_c000);
        io.write(4, &0xc000_0000u32.to_le_bytes());
        assert_eq!(read32(&mut io, bar0), 0xc000_0000);
        // Enable memory decoding through the command register.
        io.write(0, &cfg_addr(1, 0, 4).to_le_bytes());
        io.write(4, &[0x06, 0x00]);
        assert_eq!(read32(&mut io, cfg_addr(1, 0, 4)) & 0xffff, 0x0006);
    }

    #[test]
    fn cf9_byte_is_reset_control() {
        let root = Arc::new(Mutex::new(PciRoot::new()));
        let (tx, rx) = mpsc::channel::<PowerEvent>();
        let sink: Arc<dyn PowerEventSink> = Arc::new(tx);
        let mut io = PciConfigIo::new(root, Some(ResetControl::new(sink)));
        io.write(0, &cfg_addr(0, 0, 0).to_le_bytes());
        io.write(1, &[0x02]);
        assert!(rx.try_recv().is_err());
        io.write(1, &[0x06]);
        assert_eq!(rx.try_recv(), Ok(PowerEvent::Reset));
        // The address register was not disturbed by the byte access.
        assert_eq!(read32(&mut io, cfg_addr(0, 0, 0)), 0x1237_8086);
    }
}
