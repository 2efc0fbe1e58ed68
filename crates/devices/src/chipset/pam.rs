//! Programmable Attribute Map: what backs the thirteen segments of
//! 0xc0000-0xfffff, as the i440FX's PAM0-PAM6 registers (0x59-0x5f) say.
//! Each nibble holds RE (bit 0: reads go to RAM) and WE (bit 1: writes go
//! to RAM); otherwise the access goes to the PCI/ISA side (the BIOS ROM for
//! 0xe0000-0xfffff). PAM0's high nibble is 0xf0000-0xfffff; PAM1-6 have
//! two 16 KiB segments each, low nibble first, from 0xc0000.

/// One PAM segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PamSegment {
    pub base: u64,
    pub size: u64,
}

/// The segments, by index: 0 is 0xf0000 (64 KiB), 1-12 are 0xc0000 + 16 KiB steps.
pub const PAM_SEGMENTS: usize = 13;

/// What a segment's accesses reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PamMode {
    pub read_ram: bool,
    pub write_ram: bool,
}

impl PamMode {
    pub fn from_nibble(n: u8) -> PamMode {
        PamMode {
            read_ram: n & 1 != 0,
            write_ram: n & 2 != 0,
        }
    }
}

impl PamSegment {
    pub fn get(index: usize) -> Option<PamSegment> {
        match index {
            0 => Some(PamSegment {
                base: 0xf_0000,
                size: 0x1_0000,
            }),
            1..=12 => Some(PamSegment {
                base: 0xc_0000 + (index as u64 - 1) * 0x4000,
                size: 0x4000,
            }),
            _ => None,
        }
    }

    /// The register (0-6, PAM0-PAM6) and nibble shift that control segment `index`.
    fn control(index: usize) -> (usize, u32) {
        match index {
            0 => (0, 4),
            i => (1 + (i - 1) / 2, if (i - 1) % 2 == 0 { 0 } else { 4 }),
        }
    }

    /// Segment `index`'s mode in the seven PAM registers `pam`.
    pub fn mode(index: usize, pam: &[u8; 7]) -> PamMode {
        let (reg, shift) = PamSegment::control(index);
        PamMode::from_nibble(pam[reg] >> shift)
    }
}

/// Applies a segment's mode to guest-physical memory (the machine's memory
/// map); called for every segment whose mode changed.
pub trait PamMapper: Send + Sync {
    fn set(&self, index: usize, segment: PamSegment, mode: PamMode);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_nibbles() {
        assert_eq!(PamSegment::get(0).unwrap().base, 0xf0000);
        assert_eq!(PamSegment::get(1).unwrap().base, 0xc0000);
        assert_eq!(PamSegment::get(12).unwrap().base, 0xec000);
        assert!(PamSegment::get(13).is_none());
        let mut pam = [0u8; 7];
        pam[0] = 0x30;
        pam[6] = 0x13;
        assert_eq!(
            PamSegment::mode(0, &pam),
            PamMode {
                read_ram: true,
                write_ram: true
            }
        );
        // PAM6: 0xe8000 (low nibble 3), 0xec000 (high nibble 1).
        assert!(PamSegment::mode(11, &pam).write_ram);
        assert!(PamSegment::mode(12, &pam).read_ram && !PamSegment::mode(12, &pam).write_ram);
        assert!(!PamSegment::mode(1, &pam).read_ram);
    }
}
