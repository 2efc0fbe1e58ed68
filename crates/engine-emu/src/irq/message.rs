//! The interrupt message every source (IOAPIC redirection entry, MSI, IPI)
//! sends to the local APICs, and the decoding of Intel-format MSIs into it.

/// Delivery mode (IOAPIC redirection entry bits 10:8, MSI data bits 10:8,
/// ICR bits 10:8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    Init,
    StartUp,
    ExtInt,
    /// Reserved encoding (3): ignored.
    Reserved,
}

impl DeliveryMode {
    pub fn from_bits(bits: u32) -> Self {
        match bits & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 => DeliveryMode::Init,
            6 => DeliveryMode::StartUp,
            7 => DeliveryMode::ExtInt,
            _ => DeliveryMode::Reserved,
        }
    }
}

/// Which local APICs a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Physical or logical destination field. `wide` is true for a 32-bit
    /// x2APIC destination (ICR in x2APIC mode), false for an 8-bit xAPIC
    /// one (IOAPIC, MSI, xAPIC ICR), where 0xff means broadcast.
    Field {
        dest: u32,
        logical: bool,
        wide: bool,
    },
    /// ICR shorthand "self" (the sender's id).
    OnlySelf(u32),
    /// ICR shorthand "all including self".
    All,
    /// ICR shorthand "all excluding self" (the sender's id).
    AllBut(u32),
}

/// An interrupt on its way to local APICs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    pub vector: u8,
    pub mode: DeliveryMode,
    pub dest: Destination,
    /// Level-triggered (sets TMR; EOI is broadcast back to the IOAPIC).
    pub level: bool,
}

/// MSI address window (Intel SDM vol 3, 11.11.1).
pub const MSI_ADDRESS_BASE: u64 = 0xfee0_0000;

impl Message {
    /// Decode an Intel-format MSI; None if the address is not in the
    /// 0xfeexxxxx window or the delivery mode is reserved.
    pub fn from_msi(address: u64, data: u32) -> Option<Message> {
        if address & 0xffff_ffff_fff0_0000 != MSI_ADDRESS_BASE {
            return None;
        }
        let dest = ((address >> 12) & 0xff) as u32;
        let logical = address & (1 << 2) != 0;
        let redirection_hint = address & (1 << 3) != 0;
        let mut mode = DeliveryMode::from_bits(data >> 8);
        if mode == DeliveryMode::Reserved {
            return None;
        }
        // With RH=1 and logical destination, the message goes to the
        // lowest-priority processor of the set.
        if redirection_hint && logical && mode == DeliveryMode::Fixed {
            mode = DeliveryMode::LowestPriority;
        }
        Some(Message {
            vector: data as u8,
            mode,
            dest: Destination::Field {
                dest,
                logical,
                wide: false,
            },
            level: data & (1 << 15) != 0,
        })
    }
}

/// Read `data.len()` bytes of a 32-bit register starting at byte `offset`
/// inside it; bytes past the register read as zero.
pub fn read_reg_bytes(value: u32, offset: usize, data: &mut [u8]) {
    let bytes = value.to_le_bytes();
    for (i, b) in data.iter_mut().enumerate() {
        *b = offset
            .checked_add(i)
            .and_then(|idx| bytes.get(idx))
            .copied()
            .unwrap_or(0);
    }
}

/// Merge a write of `data` at byte `offset` into the 32-bit register value
/// `old`; bytes past the register are dropped.
pub fn merge_reg_bytes(old: u32, offset: usize, data: &[u8]) -> u32 {
    let mut bytes = old.to_le_bytes();
    for (i, b) in data.iter().enumerate() {
        if let Some(slot) = offset.checked_add(i).and_then(|idx| bytes.get_mut(idx)) {
            *slot = *b;
        }
    }
    u32::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msi_decode_fixed_physical() {
        let m = Message::from_msi(0xfee0_3000, 0x0041).unwrap();
        assert_eq!(m.vector, 0x41);
        assert_eq!(m.mode, DeliveryMode::Fixed);
        assert_eq!(
            m.dest,
            Destination::Field {
                dest: 3,
                logical: false,
                wide: false
            }
        );
        assert!(!m.level);
    }

    #[test]
    fn msi_decode_logical_lowest_and_nmi() {
        let m = Message::from_msi(0xfee0_100c, 0x0051).unwrap();
        assert_eq!(m.mode, DeliveryMode::LowestPriority);
        assert_eq!(
            m.dest,
            Destination::Field {
                dest: 1,
                logical: true,
                wide: false
            }
        );
        let n = Message::from_msi(0xfee0_0000, 0x0400).unwrap();
        assert_eq!(n.mode, DeliveryMode::Nmi);
    }

    #[test]
    fn msi_outside_window_or_reserved_mode_rejected() {
        assert!(Message::from_msi(0xfec0_0000, 0x41).is_none());
        assert!(Message::from_msi(0x1_fee0_0000, 0x41).is_none());
        assert!(Message::from_msi(0xfee0_0000, 0x341).is_none());
    }

    #[test]
    fn register_byte_helpers() {
        let mut d = [0u8; 8];
        read_reg_bytes(0x1122_3344, 0, &mut d);
        assert_eq!(d, [0x44, 0x33, 0x22, 0x11, 0, 0, 0, 0]);
        let mut d = [0u8; 2];
        read_reg_bytes(0x1122_3344, 2, &mut d);
        assert_eq!(d, [0x22, 0x11]);
        read_reg_bytes(0x1122_3344, usize::MAX, &mut d);
        assert_eq!(d, [0, 0]);
        assert_eq!(merge_reg_bytes(0x1122_3344, 1, &[0xaa]), 0x1122_aa44);
        assert_eq!(merge_reg_bytes(0x1122_3344, 3, &[0xaa, 0xbb]), 0xaa22_3344);
    }
}
