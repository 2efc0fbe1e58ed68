//! The 80-bit extended-precision register format: raw fields, the byte
//! image used in memory (FLD/FSTP m80, FSAVE, FXSAVE), tags and the FXAM
//! classes. Arithmetic on these values runs on the host's x87 unit (see
//! `host.rs`), which makes every result bit-exact with hardware.

/// An 80-bit extended-precision register, raw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct F80 {
    /// Significand with the explicit integer bit (bit 63).
    pub mant: u64,
    /// Sign (bit 15) and biased exponent (bits 14:0).
    pub se: u16,
}

/// Tag values (2 bits per register in the full tag word).
pub const TAG_VALID: u16 = 0;
pub const TAG_ZERO: u16 = 1;
pub const TAG_SPECIAL: u16 = 2;
pub const TAG_EMPTY: u16 = 3;

impl F80 {
    /// The QNaN "real indefinite" a masked invalid operation produces.
    pub const INDEFINITE: F80 = F80 {
        mant: 0xc000_0000_0000_0000,
        se: 0xffff,
    };
    pub const ZERO: F80 = F80 { mant: 0, se: 0 };
    pub const ONE: F80 = F80 {
        mant: 1 << 63,
        se: 0x3fff,
    };

    pub fn from_bytes(b: &[u8]) -> F80 {
        let mut m = [0u8; 8];
        m.copy_from_slice(&b[..8]);
        F80 {
            mant: u64::from_le_bytes(m),
            se: u16::from_le_bytes([b[8], b[9]]),
        }
    }

    pub fn to_bytes(self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[..8].copy_from_slice(&self.mant.to_le_bytes());
        b[8..].copy_from_slice(&self.se.to_le_bytes());
        b
    }

    /// The value as a 16-byte buffer (the layout the host kernels take).
    pub fn to_buf(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..10].copy_from_slice(&self.to_bytes());
        b
    }

    pub fn sign(self) -> bool {
        self.se & 0x8000 != 0
    }

    pub fn exp(self) -> u16 {
        self.se & 0x7fff
    }

    /// The tag a register holding this value gets.
    pub fn tag(self) -> u16 {
        let e = self.exp();
        if e == 0x7fff {
            TAG_SPECIAL
        } else if e == 0 {
            if self.mant == 0 {
                TAG_ZERO
            } else {
                TAG_SPECIAL
            }
        } else if self.mant >> 63 == 0 {
            TAG_SPECIAL
        } else {
            TAG_VALID
        }
    }

    /// FXAM's class as C3 C2 C0 (C1 is the sign): 0 unsupported, C0 NaN,
    /// C2 normal, C2|C0 infinity, C3 zero, C3|C2 denormal.
    pub fn fxam_class(self) -> (bool, bool, bool) {
        let e = self.exp();
        let j = self.mant >> 63 != 0;
        let frac = self.mant << 1;
        match (e, j) {
            (0x7fff, true) if frac == 0 => (false, true, true),
            (0x7fff, true) => (false, false, true),
            (0x7fff, false) => (false, false, false),
            (0, _) if self.mant == 0 => (true, false, false),
            (0, _) => (true, true, false),
            (_, true) => (false, true, false),
            (_, false) => (false, false, false),
        }
    }

    /// A NaN (including pseudo-NaNs).
    pub fn is_nan(self) -> bool {
        self.exp() == 0x7fff && self.mant << 1 != 0
    }
}
