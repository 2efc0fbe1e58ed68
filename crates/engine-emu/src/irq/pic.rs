//! The 8259A programmable interrupt controller pair of a PC (master at ports
//! 0x20-0x21, slave at 0xa0-0xa1 cascaded on the master's IR2) and the ELCR
//! edge/level control registers at 0x4d0-0x4d1.
//!
//! Pure state machine: no locking, no time. Follows the 8259A data sheet:
//! ICW1-ICW4 initialisation, OCW1 mask, OCW2 EOI/rotation commands, OCW3
//! register read select, poll and special mask mode, edge and level
//! triggering (LTIM or ELCR), automatic EOI, spurious IR7 when a request
//! vanishes before the acknowledge cycle. Special fully nested mode and
//! buffered mode are accepted but have no effect.

/// One 8259A chip.
#[derive(Debug, Clone)]
pub struct Pic8259 {
    /// Interrupt request register.
    irr: u8,
    /// In-service register.
    isr: u8,
    /// Interrupt mask register (OCW1).
    imr: u8,
    /// Current input levels of IR0-IR7, for edge detection and level mode.
    lines: u8,
    /// Vector base (ICW2, bits 7:3).
    base: u8,
    /// The IR line with the lowest priority (rotation); 7 after ICW1.
    lowest: u8,
    /// Next write to the odd port is ICW2 (1), ICW3 (2), ICW4 (3), or OCW1 (0).
    init_step: u8,
    /// ICW1 said ICW4 follows.
    needs_icw4: bool,
    /// ICW1 single mode (no ICW3).
    single: bool,
    /// ICW1 LTIM: all inputs level triggered.
    ltim: bool,
    /// ICW4 AEOI.
    auto_eoi: bool,
    /// OCW2 rotate in automatic EOI mode.
    rotate_on_aeoi: bool,
    /// OCW3 special mask mode.
    special_mask: bool,
    /// OCW3 read register select: true = ISR, false = IRR.
    read_isr: bool,
    /// OCW3 poll command armed for the next read.
    poll: bool,
    /// Edge/level control register (bit set = level triggered).
    elcr: u8,
    /// Which ELCR bits exist on this chip.
    elcr_mask: u8,
    /// Inputs that follow their line like level inputs whatever the mode:
    /// the master's IR2 follows the slave's INT, so a slave request that
    /// vanishes before the acknowledge leaves no stale cascade request.
    always_level: u8,
}

impl Pic8259 {
    /// A chip in its power-on state; `elcr_mask` tells which IRs may be level triggered.
    pub fn new(elcr_mask: u8, always_level: u8) -> Self {
        Pic8259 {
            irr: 0,
            isr: 0,
            imr: 0xff,
            lines: 0,
            base: 0,
            lowest: 7,
            init_step: 0,
            needs_icw4: false,
            single: false,
            ltim: false,
            auto_eoi: false,
            rotate_on_aeoi: false,
            special_mask: false,
            read_isr: false,
            poll: false,
            elcr: 0,
            elcr_mask,
            always_level,
        }
    }

    fn level_mask(&self) -> u8 {
        if self.ltim {
            0xff
        } else {
            self.elcr | self.always_level
        }
    }

    /// Drive input IR`irq` (0-7) to `level`.
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        let bit = 1u8 << (irq & 7);
        if self.level_mask() & bit != 0 {
            if level {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
            }
        } else if level && self.lines & bit == 0 {
            // Rising edge: latch the request until acknowledged.
            self.irr |= bit;
        }
        if level {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
    }

    /// Priority rank of IR`irq` (0 = highest) under the current rotation.
    fn rank(&self, irq: u8) -> u8 {
        irq.wrapping_sub(self.lowest).wrapping_sub(1) & 7
    }

    /// The highest-priority IR set in `mask`, if any.
    fn highest(&self, mask: u8) -> Option<u8> {
        (0..8u8)
            .map(|r| (r + self.lowest + 1) & 7)
            .find(|irq| mask & (1 << irq) != 0)
    }

    /// The IR the chip would present on INT now, if any.
    pub fn pending(&self) -> Option<u8> {
        let req = self.highest(self.irr & !self.imr)?;
        // In special mask mode, masked in-service levels do not block.
        let isr = if self.special_mask {
            self.isr & !self.imr
        } else {
            self.isr
        };
        match self.highest(isr) {
            Some(cur) if self.rank(cur) <= self.rank(req) => None,
            _ => Some(req),
        }
    }

    /// INT output level.
    pub fn output(&self) -> bool {
        self.pending().is_some()
    }

    /// Acknowledge cycle for IR`irq` (as chosen by `pending`): IRR to ISR.
    fn intack(&mut self, irq: u8) {
        let bit = 1u8 << irq;
        if self.level_mask() & bit == 0 {
            self.irr &= !bit;
        }
        if self.auto_eoi {
            if self.rotate_on_aeoi {
                self.lowest = irq;
            }
        } else {
            self.isr |= bit;
        }
    }

    /// Acknowledge whatever is pending; returns the IR number, or 7 (spurious,
    /// no ISR bit set) when the request vanished.
    pub fn acknowledge(&mut self) -> (u8, bool) {
        match self.pending() {
            Some(irq) => {
                self.intack(irq);
                (irq, true)
            }
            None => (7, false),
        }
    }

    pub fn vector_base(&self) -> u8 {
        self.base
    }

    pub fn irr(&self) -> u8 {
        self.irr
    }

    pub fn isr(&self) -> u8 {
        self.isr
    }

    pub fn imr(&self) -> u8 {
        self.imr
    }

    pub fn elcr(&self) -> u8 {
        self.elcr
    }

    pub fn set_elcr(&mut self, val: u8) {
        self.elcr = val & self.elcr_mask;
        // A line switched to level mode reflects its input at once.
        let level = self.level_mask();
        self.irr = (self.irr & !level) | (self.lines & level);
    }

    /// Write to the even port (ICW1, OCW2, OCW3).
    pub fn write_command(&mut self, val: u8) {
        if val & 0x10 != 0 {
            // ICW1: restart initialisation.
            self.needs_icw4 = val & 0x01 != 0;
            self.single = val & 0x02 != 0;
            self.ltim = val & 0x08 != 0;
            self.init_step = 1;
            self.isr = 0;
            self.imr = 0;
            self.lowest = 7;
            self.special_mask = false;
            self.read_isr = false;
            self.poll = false;
            self.auto_eoi = false;
            self.rotate_on_aeoi = false;
            // The edge sense circuit is reset: edge inputs must see a new
            // low-to-high transition; level inputs still request.
            self.irr = self.lines & self.level_mask();
        } else if val & 0x08 != 0 {
            // OCW3.
            if val & 0x04 != 0 {
                self.poll = true;
            }
            if val & 0x02 != 0 {
                self.read_isr = val & 0x01 != 0;
            }
            match val & 0x60 {
                0x40 => self.special_mask = false,
                0x60 => self.special_mask = true,
                _ => {}
            }
        } else {
            // OCW2.
            let level = val & 7;
            match val >> 5 {
                // Non-specific EOI, with or without rotation.
                0b001 | 0b101 => {
                    let isr = if self.special_mask {
                        self.isr & !self.imr
                    } else {
                        self.isr
                    };
                    if let Some(irq) = self.highest(isr) {
                        self.isr &= !(1 << irq);
                        if val >> 5 == 0b101 {
                            self.lowest = irq;
                        }
                    }
                }
                // Specific EOI.
                0b011 => self.isr &= !(1 << level),
                // Rotate on specific EOI.
                0b111 => {
                    self.isr &= !(1 << level);
                    self.lowest = level;
                }
                // Set priority.
                0b110 => self.lowest = level,
                0b100 => self.rotate_on_aeoi = true,
                0b000 => self.rotate_on_aeoi = false,
                _ => {}
            }
        }
    }

    /// Write to the odd port (ICW2-ICW4 during initialisation, else OCW1).
    pub fn write_data(&mut self, val: u8) {
        match self.init_step {
            1 => {
                self.base = val & 0xf8;
                self.init_step = if !self.single {
                    2
                } else if self.needs_icw4 {
                    3
                } else {
                    0
                };
            }
            2 => self.init_step = if self.needs_icw4 { 3 } else { 0 },
            3 => {
                self.auto_eoi = val & 0x02 != 0;
                self.init_step = 0;
            }
            _ => self.imr = val,
        }
    }

    /// Poll command read: 0x80 | IR if a request is pending (and acknowledges it), else 0.
    fn poll_read(&mut self) -> u8 {
        self.poll = false;
        match self.pending() {
            Some(irq) => {
                self.intack(irq);
                0x80 | irq
            }
            None => 0,
        }
    }

    /// Read the even port: poll result, IRR or ISR per OCW3.
    pub fn read_command(&mut self) -> u8 {
        if self.poll {
            self.poll_read()
        } else if self.read_isr {
            self.isr
        } else {
            self.irr
        }
    }

    /// Read the odd port: poll result or IMR.
    pub fn read_data(&mut self) -> u8 {
        if self.poll {
            self.poll_read()
        } else {
            self.imr
        }
    }
}

/// The master/slave pair of a PC, slave INT on master IR2.
#[derive(Debug, Clone)]
pub struct PicPair {
    pub master: Pic8259,
    pub slave: Pic8259,
}

impl Default for PicPair {
    fn default() -> Self {
        Self::new()
    }
}

impl PicPair {
    pub fn new() -> Self {
        PicPair {
            // IRQ 0, 1, 2 (timer, keyboard, cascade) and 8, 13 are always edge on a PC.
            master: Pic8259::new(0xf8, 0x04),
            slave: Pic8259::new(0xde, 0),
        }
    }

    fn cascade(&mut self) {
        let out = self.slave.output();
        self.master.set_irq(2, out);
    }

    /// Drive ISA IRQ `irq` (0-15; 2 is the cascade and ignored).
    pub fn set_irq(&mut self, irq: u32, level: bool) {
        match irq {
            0 | 1 | 3..=7 => self.master.set_irq(irq as u8, level),
            8..=15 => self.slave.set_irq((irq - 8) as u8, level),
            _ => {}
        }
        self.cascade();
    }

    /// INTR to the CPU.
    pub fn output(&self) -> bool {
        self.master.output()
    }

    /// What the pair would answer an acknowledge with now (master IR and,
    /// through the cascade, slave IR): tells a new request from an old one.
    pub fn request(&self) -> Option<(u8, Option<u8>)> {
        let irq = self.master.pending()?;
        Some((irq, if irq == 2 { self.slave.pending() } else { None }))
    }

    /// INTA cycle: the vector the pair puts on the bus (spurious IRQ7/IRQ15
    /// vectors when the request vanished).
    pub fn acknowledge(&mut self) -> u8 {
        let (irq, real) = self.master.acknowledge();
        let vector = if real && irq == 2 {
            let (sirq, _) = self.slave.acknowledge();
            self.slave.base | sirq
        } else {
            self.master.base | irq
        };
        self.cascade();
        vector
    }

    /// Port read (ports 0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1); None if not ours.
    pub fn read(&mut self, port: u16) -> Option<u8> {
        let v = match port {
            0x20 => self.master.read_command(),
            0x21 => self.master.read_data(),
            0xa0 => self.slave.read_command(),
            0xa1 => self.slave.read_data(),
            0x4d0 => self.master.elcr(),
            0x4d1 => self.slave.elcr(),
            _ => return None,
        };
        self.cascade();
        Some(v)
    }

    /// Port write; false if not ours.
    pub fn write(&mut self, port: u16, val: u8) -> bool {
        match port {
            0x20 => self.master.write_command(val),
            0x21 => self.master.write_data(val),
            0xa0 => self.slave.write_command(val),
            0xa1 => self.slave.write_data(val),
            0x4d0 => self.master.set_elcr(val),
            0x4d1 => self.slave.set_elcr(val),
            _ => return false,
        }
        self.cascade();
        true
    }

    pub fn owns(port: u16) -> bool {
        matches!(port, 0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1)
    }
}

mod state;

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequence Linux's init_8259A() writes (vectors 0x30/0x38, normal EOI).
    fn linux_init(p: &mut PicPair, auto_eoi: bool) {
        for (port, val) in [
            (0x21, 0xff),
            (0xa1, 0xff),
            (0x20, 0x11),
            (0x21, 0x30),
            (0x21, 0x04),
            (0x21, if auto_eoi { 0x03 } else { 0x01 }),
            (0xa0, 0x11),
            (0xa1, 0x38),
            (0xa1, 0x02),
            (0xa1, 0x01),
            (0x21, 0x00),
            (0xa1, 0x00),
        ] {
            assert!(p.write(port, val));
        }
    }

    #[test]
    fn init_sets_vector_bases_and_masks() {
        let mut p = PicPair::new();
        linux_init(&mut p, false);
        assert_eq!(p.master.vector_base(), 0x30);
        assert_eq!(p.slave.vector_base(), 0x38);
        assert_eq!(p.read(0x21), Some(0));
        p.write(0x21, 0xfb);
        assert_eq!(p.read(0x21), Some(0xfb));
        assert!(!p.output());
    }

    #[test]
    fn edge_irq_ack_and_eoi() {
        let mut p = PicPair::new();
        linux_init(&mut p, false);
        p.set_irq(1, true);
        p.set_irq(1, false);
        assert!(p.output(), "edge latched in IRR");
        assert_eq!(p.acknowledge(), 0x31);
        assert!(!p.output());
        // ISR readable via OCW3.
        p.write(0x20, 0x0b);
        assert_eq!(p.read(0x20), Some(0x02));
        // A new IRQ1 edge while in service waits for EOI.
        p.set_irq(1, true);
        p.set_irq(1, false);
        assert!(!p.output());
        p.write(0x20, 0x20);
        assert!(p.output());
        assert_eq!(p.acknowledge(), 0x31);
    }

    #[test]
    fn higher_priority_nests_lower_waits() {
        let mut p = PicPair::new();
        linux_init(&mut p, false);
        p.set_irq(4, true);
        assert_eq!(p.acknowledge(), 0x34);
        p.set_irq(3, true);
        assert!(p.output(), "IRQ3 outranks IRQ4 in service");
        assert_eq!(p.acknowledge(), 0x33);
        p.set_irq(5, true);
        assert!(!p.output());
        p.write(0x20, 0x20); // EOI IRQ3
        assert!(!p.output(), "IRQ4 still in service");
        p.write(0x20, 0x20); // EOI IRQ4
        assert_eq!(p.acknowledge(), 0x35);
    }

    #[test]
    fn masked_irq_not_presented() {
        let mut p = PicPair::new();
        linux_init(&mut p, false);
        p.write(0x21, 0x01);
        p.set_irq(0, true);
        assert!(!p.output());
        p.write(0x21, 0x00);
        assert!(p.output());
        assert_eq!(p.acknowledge(), 0x30);
    }

    #[test]
    fn slave_cascade_and_eoi_both() {
        let mut p = PicPair::new();
        linux_init(&mut p, false);
        p.set_irq(12, true);
        p.set_irq(12, false);
        assert!(p.output());
        assert_eq!(p.acknowledge(), 0x3c);
        assert!(!p.output());
        p.write(0xa0, 0x0b);
        assert_eq!(p.read(0xa0), Some(0x10));
        p.write(0x20, 0x0b);
        assert_eq!(p.read(0x20), Some(0x04));
        p.write(0xa0, 0x20);
        p.write(0x20, 0x20);
        assert_eq!(p.read(0x20), Some(0));
        p.set_irq(14, true);
        assert_eq!(p.acknowledge(), 0x3e);
    }

    #[test]
    fn level_triggered_via_elcr() {
        let mut p = PicPair::new();
        linux_init(&mut p, false);
        p.write(0x4d1, 0xff);
        assert_eq!(p.read(0x4d1), Some(0xde), "IRQ8 and IRQ13 stay edge");
        p.set_irq(11, true);
        assert_eq!(p.acknowledge(), 0x3b);
        p.write(0xa0, 0x20);
        p.write(0x20, 0x20);
        assert!(p.output(), "level still asserted requests again");
        p.set_irq(11, false);
        assert!(!p.output(), "deasserted level request vanishes");
    }

    #[test]
    fn spurious_irq7_when_request_vanished() {
        let mut p = PicPair::new();
        linux_init(&mut p, false);
        p.write(0x4d0, 0x20);
        p.set_irq(5, true);
        assert!(p.output());
        p.set_irq(5, false);
        assert_eq!(p.acknowledge(), 0x37);
        p.write(0x20, 0x0b);
        assert_eq!(p.read(0x20), Some(0), "spurious sets no ISR bit");
        // Spurious from the slave: IRQ15 vector, master ISR2 set.
        p.write(0x4d1, 0x08);
        p.set_irq(11, true);
        assert!(p.output());
        // Vanish the slave request after the master latched the cascade edge.
        p.slave.set_irq(3, false);
        let v = p.acknowledge();
        assert_eq!(v, 0x3f);
    }

    #[test]
    fn auto_eoi_leaves_isr_clear() {
        let mut p = PicPair::new();
        linux_init(&mut p, true);
        p.set_irq(3, true);
        assert_eq!(p.acknowledge(), 0x33);
        p.write(0x20, 0x0b);
        assert_eq!(p.read(0x20), Some(0));
        p.set_irq(3, false);
        p.set_irq(3, true);
        assert!(p.output());
    }

    #[test]
    fn specific_eoi_and_rotation() {
        let mut p = PicPair::new();
        linux_init(&mut p, false);
        p.set_irq(6, true);
        assert_eq!(p.acknowledge(), 0x36);
        // Specific EOI for IRQ6 (Linux: 0x60 + irq).
        p.write(0x20, 0x66);
        p.write(0x20, 0x0b);
        assert_eq!(p.read(0x20), Some(0));
        // Set priority: IRQ4 lowest -> IRQ5 highest.
        p.write(0x20, 0xc4);
        p.set_irq(0, true);
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), 0x35);
        // Rotate on non-specific EOI: IRQ5 becomes lowest, IRQ6 highest.
        p.write(0x20, 0xa0);
        assert_eq!(p.acknowledge(), 0x30);
    }

    #[test]
    fn poll_command() {
        let mut p = PicPair::new();
        linux_init(&mut p, false);
        p.write(0x20, 0x0c);
        assert_eq!(p.read(0x20), Some(0));
        p.set_irq(4, true);
        p.write(0x20, 0x0c);
        assert_eq!(p.read(0x20), Some(0x84));
        p.write(0x20, 0x0b);
        assert_eq!(p.read(0x20), Some(0x10), "poll acknowledges");
    }

    #[test]
    fn reinit_requires_new_edge() {
        let mut p = PicPair::new();
        linux_init(&mut p, false);
        p.set_irq(1, true);
        linux_init(&mut p, false);
        assert!(!p.output());
        p.set_irq(1, false);
        p.set_irq(1, true);
        assert!(p.output());
    }

    #[test]
    fn special_mask_mode_allows_lower_priority() {
        let mut p = PicPair::new();
        linux_init(&mut p, false);
        p.set_irq(3, true);
        assert_eq!(p.acknowledge(), 0x33);
        p.write(0x21, 0x08); // mask the in-service IRQ3
        p.write(0x20, 0x68); // set special mask mode
        p.set_irq(5, true);
        assert!(p.output());
        assert_eq!(p.acknowledge(), 0x35);
    }

    #[test]
    fn foreign_ports_not_claimed() {
        let mut p = PicPair::new();
        assert_eq!(p.read(0x22), None);
        assert!(!p.write(0x60, 1));
    }
}
