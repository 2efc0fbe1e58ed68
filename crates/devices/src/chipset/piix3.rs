//! The PIIX3 PCI-to-ISA bridge at 00:01.0 (8086:7000, class 06:01:00, a
//! multi-function device: the IDE controller is function 1). It carries the
//! PIRQ route control registers (0x60-0x63, reset 0x80 = disabled) that
//! firmware programs and that PCI IRQ routing tables describe; Kite routes
//! PCI interrupts to IOAPIC pins as the ACPI `_PRT` says, so the registers
//! hold what the guest writes for guests that read them back. The ELCR
//! (ports 0x4d0/0x4d1) belongs to the interrupt controllers below the API.

use crate::pci::config_space::ConfigSpace;
use crate::pci::PciDevice;
use crate::state::{Snapshot, StateError, StateReader, StateWriter};

pub const PIIX3_VENDOR: u16 = 0x8086;
pub const PIIX3_ISA_DEVICE: u16 = 0x7000;
const CLASS_ISA_BRIDGE: u32 = 0x06_01_00;
const PIRQ_ROUTE: usize = 0x60;
/// Top of memory register and miscellaneous control, as after reset.
const TOM: usize = 0x69;
const MISC_STATUS: usize = 0x6a;
/// Motherboard device IRQ routing (0x70-0x71) and APIC base (0x80).
const MBIRQ: usize = 0x70;
const APIC_BASE: usize = 0x80;

pub struct Piix3Isa {
    config: ConfigSpace,
}

impl Default for Piix3Isa {
    fn default() -> Self {
        Self::new()
    }
}

impl Piix3Isa {
    pub fn new() -> Piix3Isa {
        let mut config = ConfigSpace::new(PIIX3_VENDOR, PIIX3_ISA_DEVICE, CLASS_ISA_BRIDGE, 0);
        config.set_subsystem(0x1af4, 0x1100);
        // Multi-function: the IDE controller answers at function 1.
        config.set_header_type(0x80);
        config.set_register(PIRQ_ROUTE, &[0x80; 4], &[0x8f; 4]);
        config.set_register(TOM, &[0x02], &[0xfe]);
        config.set_register(MISC_STATUS, &[0x00, 0x00], &[0xff, 0xff]);
        config.set_register(MBIRQ, &[0x80, 0x80], &[0xcf, 0xcf]);
        config.set_register(APIC_BASE, &[0x00], &[0x7f]);
        Piix3Isa { config }
    }

    /// The IRQ PIRQ `n` (0-3 for A-D) is routed to, when enabled.
    pub fn pirq(&self, n: usize) -> Option<u8> {
        let v = *self.config.bytes().get(PIRQ_ROUTE + n)?;
        (v & 0x80 == 0).then_some(v & 0x0f)
    }
}

impl Snapshot for Piix3Isa {
    fn save_state(&self, w: &mut StateWriter) {
        self.config.save_state(w);
    }
    fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.config.restore_state(r)
    }
}

impl PciDevice for Piix3Isa {
    fn read_config(&mut self, offset: u16, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn write_config(&mut self, offset: u16, data: &[u8]) {
        self.config.write(offset, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_pirq_routing() {
        let mut p = Piix3Isa::new();
        let mut id = [0u8; 4];
        p.read_config(0, &mut id);
        assert_eq!(id, [0x86, 0x80, 0x00, 0x70]);
        let mut h = [0u8];
        p.read_config(0x0e, &mut h);
        assert_eq!(h[0], 0x80);
        assert_eq!(p.pirq(0), None);
        // SeaBIOS routes PIRQA-D to 10, 10, 11, 11.
        p.write_config(0x60, &[10, 10, 11, 11]);
        assert_eq!(p.pirq(0), Some(10));
        assert_eq!(p.pirq(3), Some(11));
        p.write_config(0x61, &[0xff]);
        assert_eq!(p.pirq(1), None);
        let mut v = [0u8];
        p.read_config(0x61, &mut v);
        assert_eq!(v[0], 0x8f);
    }
}
