//! The saved state of one 8259A (the VM state holds master and slave), in
//! the chip's programming model. Knows nothing of how an engine models it.

use super::codec::{DecodeResult, Reader, Writer};

/// One 8259A.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PicState {
    pub irr: u8,
    pub isr: u8,
    /// Mask (OCW1).
    pub imr: u8,
    /// Input levels of IR0-7 last seen (edge detection).
    pub lines: u8,
    /// Vector base (ICW2 bits 7:3).
    pub vector_base: u8,
    /// The IR with the lowest priority (0-7; 7 after ICW1).
    pub lowest_priority: u8,
    /// Next odd-port write is OCW1 (0), ICW2 (1), ICW3 (2) or ICW4 (3).
    pub init_step: u8,
    pub needs_icw4: bool,
    /// ICW1 single mode.
    pub single: bool,
    /// ICW1 LTIM: every input level triggered.
    pub level_triggered: bool,
    pub auto_eoi: bool,
    pub rotate_on_auto_eoi: bool,
    pub special_mask: bool,
    pub special_fully_nested: bool,
    /// OCW3: reads of the even port return the ISR (else the IRR).
    pub read_isr: bool,
    /// OCW3 poll command armed.
    pub poll: bool,
    /// Edge/level control register (bit set = level).
    pub elcr: u8,
    /// Which ELCR bits exist.
    pub elcr_mask: u8,
}

impl PicState {
    pub(crate) fn encode(&self, w: &mut Writer) {
        for v in [
            self.irr,
            self.isr,
            self.imr,
            self.lines,
            self.vector_base,
            self.lowest_priority,
            self.init_step,
        ] {
            w.u8(v);
        }
        for b in [
            self.needs_icw4,
            self.single,
            self.level_triggered,
            self.auto_eoi,
            self.rotate_on_auto_eoi,
            self.special_mask,
            self.special_fully_nested,
            self.read_isr,
            self.poll,
        ] {
            w.bool(b);
        }
        w.u8(self.elcr);
        w.u8(self.elcr_mask);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> DecodeResult<PicState> {
        Ok(PicState {
            irr: r.u8("pic irr")?,
            isr: r.u8("pic isr")?,
            imr: r.u8("pic imr")?,
            lines: r.u8("pic lines")?,
            vector_base: r.u8("pic vector base")? & 0xf8,
            lowest_priority: r.u8_max(7, "pic lowest priority")?,
            init_step: r.u8_max(3, "pic init step")?,
            needs_icw4: r.bool("pic icw4")?,
            single: r.bool("pic single")?,
            level_triggered: r.bool("pic ltim")?,
            auto_eoi: r.bool("pic aeoi")?,
            rotate_on_auto_eoi: r.bool("pic rotate")?,
            special_mask: r.bool("pic special mask")?,
            special_fully_nested: r.bool("pic sfnm")?,
            read_isr: r.bool("pic read select")?,
            poll: r.bool("pic poll")?,
            elcr: r.u8("pic elcr")?,
            elcr_mask: r.u8("pic elcr mask")?,
        })
    }
}
