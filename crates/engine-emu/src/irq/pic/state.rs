//! The 8259A to and from the engine-neutral `PicState`. Knows the chip's
//! fields, nothing of how a snapshot is stored.

use kite_hypervisor::state::PicState;

use super::Pic8259;

impl Pic8259 {
    pub fn save(&self) -> PicState {
        PicState {
            irr: self.irr,
            isr: self.isr,
            imr: self.imr,
            lines: self.lines,
            vector_base: self.base,
            lowest_priority: self.lowest,
            init_step: self.init_step,
            needs_icw4: self.needs_icw4,
            single: self.single,
            level_triggered: self.ltim,
            auto_eoi: self.auto_eoi,
            rotate_on_auto_eoi: self.rotate_on_aeoi,
            special_mask: self.special_mask,
            special_fully_nested: false,
            read_isr: self.read_isr,
            poll: self.poll,
            elcr: self.elcr,
            elcr_mask: self.elcr_mask,
        }
    }

    /// Load `s`. Which ELCR bits exist is this chip's own wiring: bits the
    /// chip does not have stay clear. (Special fully nested mode is
    /// accepted and has no effect, as when programmed.)
    pub fn restore(&mut self, s: &PicState) {
        self.irr = s.irr;
        self.isr = s.isr;
        self.imr = s.imr;
        self.lines = s.lines;
        self.base = s.vector_base & 0xf8;
        self.lowest = s.lowest_priority & 7;
        self.init_step = s.init_step.min(3);
        self.needs_icw4 = s.needs_icw4;
        self.single = s.single;
        self.ltim = s.level_triggered;
        self.auto_eoi = s.auto_eoi;
        self.rotate_on_aeoi = s.rotate_on_auto_eoi;
        self.special_mask = s.special_mask;
        self.read_isr = s.read_isr;
        self.poll = s.poll;
        self.elcr = s.elcr & self.elcr_mask;
    }
}

#[cfg(test)]
mod tests {
    use super::super::PicPair;

    #[test]
    fn pic_pair_round_trips_with_requests_in_service() {
        let mut a = PicPair::new();
        // Linux's initialisation: ICW1-4 on both, then masks.
        for (port, v) in [
            (0x20, 0x11),
            (0x21, 0x30),
            (0x21, 0x04),
            (0x21, 0x01),
            (0xa0, 0x11),
            (0xa1, 0x38),
            (0xa1, 0x02),
            (0xa1, 0x01),
            (0x21, 0xf8),
            (0xa1, 0xfe),
            (0x4d1, 0x0c),
        ] {
            assert!(a.write(port, v));
        }
        a.set_irq(1, true);
        assert_eq!(a.acknowledge(), 0x31);
        a.set_irq(0, true);
        a.set_irq(8, true);
        let (m, s) = (a.master.save(), a.slave.save());
        assert_eq!(m.vector_base, 0x30);
        assert_eq!(m.isr, 0x02);
        let mut b = PicPair::new();
        b.master.restore(&m);
        b.slave.restore(&s);
        assert_eq!((b.master.save(), b.slave.save()), (m, s));
        // The restored pair goes on as the original: IRQ0 first, then IRQ8.
        assert_eq!(b.acknowledge(), a.acknowledge());
        assert_eq!(b.acknowledge(), a.acknowledge());
        assert_eq!(b.master.elcr(), a.master.elcr());
        assert_eq!(b.slave.elcr(), a.slave.elcr());
    }
}
