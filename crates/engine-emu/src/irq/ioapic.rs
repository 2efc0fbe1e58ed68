//! The 82093AA I/O APIC: 24 pins, each routed by a redirection table entry to
//! local APICs as an interrupt [`Message`].
//!
//! Pure state machine: register access through the memory-mapped index/data
//! window (IOREGSEL at +0x00, IOWIN at +0x10) plus the EOI register at +0x40
//! of later I/O APICs; deliveries are appended to an outbox the caller sends.
//!
//! Pin levels are *logical*: `true` means "asserted" whatever the polarity bit
//! says (the board describes every line to the guest as active high; the
//! polarity bit is stored and read back but does not invert the line).

use super::message::{merge_reg_bytes, read_reg_bytes, DeliveryMode, Destination, Message};

/// Number of pins (redirection entries).
pub const IOAPIC_PINS: usize = 24;
/// Guest-physical base of the I/O APIC window.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Size of the window.
pub const IOAPIC_SIZE: u64 = 0x1000;
/// Version register: version 0x11, maximum redirection entry 23.
pub const IOAPIC_VERSION: u32 = 0x11 | ((IOAPIC_PINS as u32 - 1) << 16);

const REG_ID: u8 = 0x00;
const REG_VERSION: u8 = 0x01;
const REG_ARB: u8 = 0x02;
const REG_REDIR: u8 = 0x10;

const OFF_SELECT: u64 = 0x00;
const OFF_WINDOW: u64 = 0x10;
const OFF_EOI: u64 = 0x40;

const MASKED: u64 = 1 << 16;
const LEVEL: u64 = 1 << 15;
const REMOTE_IRR: u64 = 1 << 14;
const LOGICAL: u64 = 1 << 11;
/// Bits the guest may write: vector, delivery mode, destination mode,
/// polarity, trigger mode, mask, destination.
const WRITABLE: u64 = 0xff00_0000_0001_afff;

/// The I/O APIC.
#[derive(Debug, Clone)]
pub struct Ioapic {
    id: u32,
    select: u8,
    redir: [u64; IOAPIC_PINS],
    /// Asserted pins.
    lines: u32,
}

impl Default for Ioapic {
    fn default() -> Self {
        Self::new()
    }
}

impl Ioapic {
    /// Power-on state: id 0, every entry masked.
    pub fn new() -> Self {
        Ioapic {
            id: 0,
            select: 0,
            redir: [MASKED; IOAPIC_PINS],
            lines: 0,
        }
    }

    /// A redirection entry (for tests and state dumps); None if out of range.
    pub fn entry(&self, pin: usize) -> Option<u64> {
        self.redir.get(pin).copied()
    }

    fn deliver(&mut self, pin: usize, out: &mut Vec<Message>) {
        let Some(e) = self.redir.get_mut(pin) else {
            return;
        };
        if *e & MASKED != 0 {
            return;
        }
        let level = *e & LEVEL != 0;
        if level {
            if *e & REMOTE_IRR != 0 {
                return;
            }
            *e |= REMOTE_IRR;
        }
        out.push(Message {
            vector: *e as u8,
            mode: DeliveryMode::from_bits((*e >> 8) as u32),
            dest: Destination::Field {
                dest: (*e >> 56) as u32,
                logical: *e & LOGICAL != 0,
                wide: false,
            },
            level,
        });
    }

    /// Drive pin `pin` to logical level `level`; deliveries go to `out`.
    pub fn set_irq(&mut self, pin: u32, level: bool, out: &mut Vec<Message>) {
        let Some(&e) = self.redir.get(pin as usize) else {
            return;
        };
        let bit = 1u32 << pin;
        let was = self.lines & bit != 0;
        if level {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
        if !level {
            return;
        }
        if e & LEVEL != 0 || !was {
            self.deliver(pin as usize, out);
        }
    }

    /// End of interrupt for `vector` (local APIC EOI broadcast or the EOI
    /// register): clear remote IRR of matching level entries and deliver
    /// again those whose line is still asserted.
    pub fn eoi(&mut self, vector: u8, out: &mut Vec<Message>) {
        for pin in 0..IOAPIC_PINS {
            let e = self.redir[pin];
            if e as u8 == vector && e & LEVEL != 0 && e & REMOTE_IRR != 0 {
                self.redir[pin] &= !REMOTE_IRR;
                if self.lines & (1 << pin) != 0 {
                    self.deliver(pin, out);
                }
            }
        }
    }

    fn read_register(&self) -> u32 {
        match self.select {
            REG_ID => self.id << 24,
            REG_VERSION => IOAPIC_VERSION,
            REG_ARB => self.id << 24,
            s if s >= REG_REDIR => {
                let idx = usize::from(s - REG_REDIR);
                match self.redir.get(idx / 2) {
                    Some(e) if idx % 2 == 0 => *e as u32,
                    Some(e) => (*e >> 32) as u32,
                    None => 0,
                }
            }
            _ => 0,
        }
    }

    fn write_register(&mut self, value: u32, out: &mut Vec<Message>) {
        match self.select {
            REG_ID => self.id = (value >> 24) & 0x0f,
            s if s >= REG_REDIR => {
                let idx = usize::from(s - REG_REDIR);
                let pin = idx / 2;
                let Some(e) = self.redir.get_mut(pin) else {
                    return;
                };
                let new = if idx % 2 == 0 {
                    (*e & !0xffff_ffff) | u64::from(value)
                } else {
                    (*e & 0xffff_ffff) | (u64::from(value) << 32)
                };
                let mut new = (new & WRITABLE) | (*e & REMOTE_IRR);
                // Switching a pin to edge clears a stuck remote IRR (Linux
                // relies on this to recover level entries).
                if new & LEVEL == 0 {
                    new &= !REMOTE_IRR;
                }
                *e = new;
                if new & LEVEL != 0 && self.lines & (1 << pin) != 0 {
                    self.deliver(pin, out);
                }
            }
            _ => {}
        }
    }

    /// MMIO read at byte offset `offset` of the window. Any size and
    /// alignment is accepted; bytes outside a register read as zero.
    pub fn mmio_read(&self, offset: u64, data: &mut [u8]) {
        let reg = offset & !0xf;
        let within = (offset & 0xf) as usize;
        let value = match reg {
            OFF_SELECT => u32::from(self.select),
            OFF_WINDOW => self.read_register(),
            _ => 0,
        };
        read_reg_bytes(value, within, data);
    }

    /// MMIO write at byte offset `offset` of the window; deliveries go to `out`.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8], out: &mut Vec<Message>) {
        let reg = offset & !0xf;
        let within = (offset & 0xf) as usize;
        match reg {
            OFF_SELECT => {
                self.select = merge_reg_bytes(u32::from(self.select), within, data) as u8;
            }
            OFF_WINDOW => {
                let value = merge_reg_bytes(self.read_register(), within, data);
                self.write_register(value, out);
            }
            OFF_EOI => {
                let value = merge_reg_bytes(0, within, data);
                self.eoi(value as u8, out);
            }
            _ => {}
        }
    }
}

mod state;

#[cfg(test)]
mod tests {
    use super::*;

    fn write32(io: &mut Ioapic, reg: u8, val: u32, out: &mut Vec<Message>) {
        io.mmio_write(0, &u32::from(reg).to_le_bytes(), out);
        io.mmio_write(0x10, &val.to_le_bytes(), out);
    }

    fn read32(io: &mut Ioapic, reg: u8) -> u32 {
        let mut out = Vec::new();
        io.mmio_write(0, &u32::from(reg).to_le_bytes(), &mut out);
        let mut d = [0u8; 4];
        io.mmio_read(0x10, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn version_id_and_arbitration() {
        let mut io = Ioapic::new();
        let mut out = Vec::new();
        assert_eq!(read32(&mut io, 1), 0x0017_0011);
        write32(&mut io, 0, 0x0200_0000, &mut out);
        assert_eq!(read32(&mut io, 0), 0x0200_0000);
        assert_eq!(read32(&mut io, 2), 0x0200_0000);
        // Version is read-only.
        write32(&mut io, 1, 0, &mut out);
        assert_eq!(read32(&mut io, 1), 0x0017_0011);
        // Unknown registers read zero.
        assert_eq!(read32(&mut io, 0x0f), 0);
        assert_eq!(read32(&mut io, 0xff), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn redirection_entries_read_back_without_ro_bits() {
        let mut io = Ioapic::new();
        let mut out = Vec::new();
        assert_eq!(read32(&mut io, 0x10 + 2 * 23), 0x1_0000, "masked at reset");
        write32(&mut io, 0x10 + 2 * 5, 0xffff_ffff, &mut out);
        write32(&mut io, 0x11 + 2 * 5, 0xffff_ffff, &mut out);
        assert_eq!(read32(&mut io, 0x10 + 2 * 5), 0x0001_afff);
        assert_eq!(read32(&mut io, 0x11 + 2 * 5), 0xff00_0000);
    }

    #[test]
    fn edge_pin_delivers_on_rising_edge_only() {
        let mut io = Ioapic::new();
        let mut out = Vec::new();
        write32(&mut io, 0x11 + 2 * 4, 0x0100_0000, &mut out);
        write32(&mut io, 0x10 + 2 * 4, 0x0000_0834, &mut out); // logical, vector 0x34
        io.set_irq(4, true, &mut out);
        io.set_irq(4, true, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0],
            Message {
                vector: 0x34,
                mode: DeliveryMode::Fixed,
                dest: Destination::Field {
                    dest: 1,
                    logical: true,
                    wide: false
                },
                level: false
            }
        );
        io.set_irq(4, false, &mut out);
        io.set_irq(4, true, &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn masked_edge_is_dropped() {
        let mut io = Ioapic::new();
        let mut out = Vec::new();
        io.set_irq(3, true, &mut out);
        io.set_irq(3, false, &mut out);
        write32(&mut io, 0x10 + 2 * 3, 0x33, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn level_remote_irr_and_eoi_redelivery() {
        let mut io = Ioapic::new();
        let mut out = Vec::new();
        write32(&mut io, 0x10 + 2 * 10, 0x0000_8041, &mut out);
        io.set_irq(10, true, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].level);
        assert_ne!(read32(&mut io, 0x10 + 2 * 10) & (1 << 14), 0, "remote IRR");
        // Still asserted, remote IRR set: nothing new.
        io.set_irq(10, true, &mut out);
        assert_eq!(out.len(), 1);
        // EOI with the line still high: delivered again.
        io.eoi(0x41, &mut out);
        assert_eq!(out.len(), 2);
        // Deassert, then EOI via the EOI register: remote IRR clears, no delivery.
        io.set_irq(10, false, &mut out);
        io.mmio_write(0x40, &[0x41, 0, 0, 0], &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(read32(&mut io, 0x10 + 2 * 10) & (1 << 14), 0);
        // EOI for another vector leaves other entries alone.
        io.set_irq(10, true, &mut out);
        io.eoi(0x42, &mut out);
        assert_eq!(out.len(), 3);
        assert_ne!(read32(&mut io, 0x10 + 2 * 10) & (1 << 14), 0);
    }

    #[test]
    fn unmasking_asserted_level_pin_delivers() {
        let mut io = Ioapic::new();
        let mut out = Vec::new();
        write32(&mut io, 0x10 + 2 * 16, 0x0001_8050, &mut out);
        io.set_irq(16, true, &mut out);
        assert!(out.is_empty());
        write32(&mut io, 0x10 + 2 * 16, 0x0000_8050, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].vector, 0x50);
    }

    #[test]
    fn switching_to_edge_clears_remote_irr() {
        let mut io = Ioapic::new();
        let mut out = Vec::new();
        write32(&mut io, 0x10 + 2 * 9, 0x0000_8061, &mut out);
        io.set_irq(9, true, &mut out);
        write32(&mut io, 0x10 + 2 * 9, 0x0001_0061, &mut out);
        assert_eq!(read32(&mut io, 0x10 + 2 * 9) & (1 << 14), 0);
    }

    #[test]
    fn nmi_and_out_of_range_pins() {
        let mut io = Ioapic::new();
        let mut out = Vec::new();
        write32(&mut io, 0x12, 0x0000_0400, &mut out); // pin 1
        io.set_irq(1, true, &mut out);
        assert_eq!(out[0].mode, DeliveryMode::Nmi);
        io.set_irq(24, true, &mut out);
        io.set_irq(u32::MAX, true, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn odd_sizes_and_offsets_never_panic() {
        let mut io = Ioapic::new();
        let mut out = Vec::new();
        for off in [0u64, 1, 3, 0xf, 0x10, 0x13, 0x3f, 0x40, 0x41, 0xffc, 0xfff] {
            for len in [0usize, 1, 2, 3, 4, 8, 16] {
                let mut d = vec![0xa5u8; len];
                io.mmio_read(off, &mut d);
                io.mmio_write(off, &d, &mut out);
            }
        }
        // A byte write to IOREGSEL selects the register.
        io.mmio_write(0, &[1], &mut out);
        let mut d = [0u8; 2];
        io.mmio_read(0x10, &mut d);
        assert_eq!(d, [0x11, 0x00]);
    }
}
