//! The I/O APIC to and from the engine-neutral `IoapicState`. Knows the
//! chip's fields, nothing of how a snapshot is stored.

use kite_hypervisor::state::IoapicState;

use super::{Ioapic, IOAPIC_PINS, REMOTE_IRR, WRITABLE};

impl Ioapic {
    pub fn save(&self) -> IoapicState {
        let mut redir = [0u64; 24];
        for (d, s) in redir.iter_mut().zip(self.redir.iter()) {
            *d = *s;
        }
        IoapicState {
            id: (self.id & 0x0f) as u8,
            select: self.select,
            redir,
            lines: self.lines,
        }
    }

    /// Load `s` (bits the guest could not have set stay clear). Nothing is
    /// delivered: interrupts in flight are in the local APICs' state.
    pub fn restore(&mut self, s: &IoapicState) {
        self.id = u32::from(s.id & 0x0f);
        self.select = s.select;
        for (d, e) in self.redir.iter_mut().zip(s.redir.iter()) {
            *d = *e & (WRITABLE | REMOTE_IRR);
        }
        self.lines = s.lines & ((1u64 << IOAPIC_PINS) - 1) as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioapic_round_trips_with_remote_irr() {
        let mut a = Ioapic::new();
        let mut out = Vec::new();
        // Pin 9: level, vector 0x39, to APIC 0; id 2.
        for (sel, v) in [(0x00u32, 0x0200_0000u32), (0x22, 0xa039), (0x23, 0)] {
            a.mmio_write(0, &sel.to_le_bytes(), &mut out);
            a.mmio_write(0x10, &v.to_le_bytes(), &mut out);
        }
        a.set_irq(9, true, &mut out);
        assert_eq!(out.len(), 1);
        let s = a.save();
        assert_eq!(s.id, 2);
        assert!(s.redir[9] & REMOTE_IRR != 0);
        assert_eq!(s.lines, 1 << 9);
        let mut b = Ioapic::new();
        b.restore(&s);
        assert_eq!(b.save(), s);
        // Still asserted after the EOI: delivered again, as the original.
        let (mut oa, mut ob) = (Vec::new(), Vec::new());
        a.eoi(0x39, &mut oa);
        b.eoi(0x39, &mut ob);
        assert_eq!(oa.len(), 1);
        assert_eq!(oa.len(), ob.len());
    }
}
