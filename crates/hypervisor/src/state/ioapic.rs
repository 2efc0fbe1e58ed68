//! The saved I/O APIC: id, register select, the redirection table (with its
//! remote-IRR bits) and the input pin levels. Knows nothing of engines.

use super::codec::{DecodeResult, Reader, Writer};

/// Redirection entries (pins).
pub const IOAPIC_PINS: usize = 24;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoapicState {
    /// The 4-bit I/O APIC id (ID register bits 27:24).
    pub id: u8,
    /// IOREGSEL.
    pub select: u8,
    pub redir: [u64; IOAPIC_PINS],
    /// Asserted input pins (bit n = pin n).
    pub lines: u32,
}

impl IoapicState {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u8(self.id);
        w.u8(self.select);
        for &e in &self.redir {
            w.u64(e);
        }
        w.u32(self.lines);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> DecodeResult<IoapicState> {
        let mut s = IoapicState {
            id: r.u8_max(15, "ioapic id")?,
            select: r.u8("ioapic select")?,
            ..Default::default()
        };
        for e in s.redir.iter_mut() {
            *e = r.u64("ioapic redirection entry")?;
        }
        s.lines = r.u32("ioapic lines")? & ((1 << IOAPIC_PINS) - 1);
        Ok(s)
    }
}
