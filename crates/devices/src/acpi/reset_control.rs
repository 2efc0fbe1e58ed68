//! The PIIX reset control register at port 0xcf9, also the FADT's
//! RESET_REG: writing a value with bit 2 (RST_CPU) set, e.g. 0x06 or 0x0e,
//! resets the machine.
//!
//! It shares its dword with the PCI config address register, so `PciConfigIo`
//! forwards byte accesses at 0xcf9 here; without PCI, map it alone at 0xcf9.

use super::power_event::{PowerEvent, PowerEventSink};
use crate::bus::PioDevice;
use std::sync::Arc;

/// Bit 2: reset the CPU now.
const RST_CPU: u8 = 0x04;
/// Bits that read back: system reset (hard) and full reset.
const STORED: u8 = 0x0a;

/// The value the FADT tells the OS to write to reset.
pub const RESET_VALUE: u8 = 0x06;
/// The port of the reset control register.
pub const RESET_PORT: u16 = 0xcf9;

pub struct ResetControl {
    value: u8,
    sink: Arc<dyn PowerEventSink>,
}

impl ResetControl {
    pub fn new(sink: Arc<dyn PowerEventSink>) -> ResetControl {
        ResetControl { value: 0, sink }
    }
}

impl ResetControl {
    /// The stored bits (for a snapshot).
    pub fn value(&self) -> u8 {
        self.value
    }

    /// Restore the stored bits (only those that read back are kept).
    pub fn set_value(&mut self, v: u8) {
        self.value = v & STORED;
    }
}

impl PioDevice for ResetControl {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        data.fill(0);
        if let (0, Some(b)) = (offset, data.first_mut()) {
            *b = self.value;
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        if let (0, Some(&v)) = (offset, data.first()) {
            self.value = v & STORED;
            if v & RST_CPU != 0 {
                log::info!("guest requested reset through port 0xcf9 ({v:#04x})");
                self.sink.power_event(PowerEvent::Reset);
            }
        }
    }
}
