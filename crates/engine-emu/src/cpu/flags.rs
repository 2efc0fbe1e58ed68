//! RFLAGS, and the helpers that set the arithmetic flags the way each
//! instruction family defines them. Every handler goes through these methods,
//! so the representation can become lazy without touching handlers.

use kite_hypervisor::x86::*;

/// Arithmetic flags CF PF AF ZF SF OF.
pub const ARITH: u64 = RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF;

/// RFLAGS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    bits: u64,
}

impl Default for Flags {
    fn default() -> Self {
        Flags { bits: RFLAGS_FIXED }
    }
}

/// Mask of an operand of `bits` bits.
#[inline]
pub fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Sign bit of an operand of `bits` bits.
#[inline]
pub fn sign_bit(bits: u32) -> u64 {
    1u64 << (bits - 1)
}

#[inline]
fn parity(v: u64) -> bool {
    (v as u8).count_ones().is_multiple_of(2)
}

impl Flags {
    /// The architectural RFLAGS value.
    #[inline]
    pub fn rflags(&self) -> u64 {
        self.bits
    }

    /// Load RFLAGS (the caller has applied privilege masks); bit 1 stays set,
    /// reserved bits clear.
    #[inline]
    pub fn set_rflags(&mut self, v: u64) {
        self.bits = (v & 0x003f_7fd5) | RFLAGS_FIXED;
    }

    #[inline]
    pub fn get(&self, m: u64) -> bool {
        self.bits & m != 0
    }

    #[inline]
    pub fn set(&mut self, m: u64, on: bool) {
        if on {
            self.bits |= m;
        } else {
            self.bits &= !m;
        }
    }

    #[inline]
    pub fn cf(&self) -> bool {
        self.get(RFLAGS_CF)
    }
    #[inline]
    pub fn zf(&self) -> bool {
        self.get(RFLAGS_ZF)
    }
    #[inline]
    pub fn sf(&self) -> bool {
        self.get(RFLAGS_SF)
    }
    #[inline]
    pub fn of(&self) -> bool {
        self.get(RFLAGS_OF)
    }
    #[inline]
    pub fn pf(&self) -> bool {
        self.get(RFLAGS_PF)
    }
    #[inline]
    pub fn af(&self) -> bool {
        self.get(RFLAGS_AF)
    }
    #[inline]
    pub fn df(&self) -> bool {
        self.get(RFLAGS_DF)
    }
    #[inline]
    pub fn if_(&self) -> bool {
        self.get(RFLAGS_IF)
    }

    /// Set CF PF AF ZF SF OF at once from explicit values.
    #[inline]
    pub fn set_arith(&mut self, cf: bool, pf: bool, af: bool, zf: bool, sf: bool, of: bool) {
        let mut b = self.bits & !ARITH;
        b |= (cf as u64) * RFLAGS_CF;
        b |= (pf as u64) * RFLAGS_PF;
        b |= (af as u64) * RFLAGS_AF;
        b |= (zf as u64) * RFLAGS_ZF;
        b |= (sf as u64) * RFLAGS_SF;
        b |= (of as u64) * RFLAGS_OF;
        self.bits = b;
    }

    /// ZF, SF, PF from a result; CF and OF cleared; AF cleared (AND, OR, XOR,
    /// TEST leave AF undefined: hardware clears it).
    #[inline]
    pub fn set_logic(&mut self, res: u64, bits: u32) {
        let r = res & mask(bits);
        self.set_arith(
            false,
            parity(r),
            false,
            r == 0,
            r & sign_bit(bits) != 0,
            false,
        );
    }

    /// Flags of `a + b + carry = res` (ADD, ADC).
    #[inline]
    pub fn set_add(&mut self, a: u64, b: u64, carry: bool, res: u64, bits: u32) {
        let m = mask(bits);
        let (a, b, r) = (a & m, b & m, res & m);
        let cf = if bits == 64 {
            (a as u128 + b as u128 + carry as u128) >> 64 != 0
        } else {
            (a + b + carry as u64) > m
        };
        let sb = sign_bit(bits);
        let of = ((a ^ r) & (b ^ r) & sb) != 0;
        let af = ((a ^ b ^ r) & 0x10) != 0;
        self.set_arith(cf, parity(r), af, r == 0, r & sb != 0, of);
    }

    /// Flags of `a - b - borrow = res` (SUB, SBB, CMP, NEG as 0 - b).
    #[inline]
    pub fn set_sub(&mut self, a: u64, b: u64, borrow: bool, res: u64, bits: u32) {
        let m = mask(bits);
        let (a, b, r) = (a & m, b & m, res & m);
        let cf = (a as u128) < (b as u128 + borrow as u128);
        let sb = sign_bit(bits);
        let of = ((a ^ b) & (a ^ r) & sb) != 0;
        let af = ((a ^ b ^ r) & 0x10) != 0;
        self.set_arith(cf, parity(r), af, r == 0, r & sb != 0, of);
    }

    /// INC: as ADD a,1 but CF unchanged.
    #[inline]
    pub fn set_inc(&mut self, a: u64, res: u64, bits: u32) {
        let cf = self.cf();
        self.set_add(a, 1, false, res, bits);
        self.set(RFLAGS_CF, cf);
    }

    /// DEC: as SUB a,1 but CF unchanged.
    #[inline]
    pub fn set_dec(&mut self, a: u64, res: u64, bits: u32) {
        let cf = self.cf();
        self.set_sub(a, 1, false, res, bits);
        self.set(RFLAGS_CF, cf);
    }

    /// ZF SF PF from a result, leaving the others.
    #[inline]
    pub fn set_szp(&mut self, res: u64, bits: u32) {
        let r = res & mask(bits);
        self.set(RFLAGS_ZF, r == 0);
        self.set(RFLAGS_SF, r & sign_bit(bits) != 0);
        self.set(RFLAGS_PF, parity(r));
    }

    /// Evaluate a condition code (the low 4 bits of Jcc/SETcc/CMOVcc).
    #[inline]
    pub fn cond(&self, cc: u8) -> bool {
        let r = match cc >> 1 {
            0 => self.of(),
            1 => self.cf(),
            2 => self.zf(),
            3 => self.cf() || self.zf(),
            4 => self.sf(),
            5 => self.pf(),
            6 => self.sf() != self.of(),
            _ => self.zf() || (self.sf() != self.of()),
        };
        r ^ (cc & 1 != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sub_flags() {
        let mut f = Flags::default();
        f.set_add(0xff, 1, false, 0x100, 8);
        assert!(f.cf() && f.zf() && f.af() && !f.of() && !f.sf());
        f.set_add(0x7f, 1, false, 0x80, 8);
        assert!(!f.cf() && f.of() && f.sf());
        f.set_sub(0, 1, false, u64::MAX, 64);
        assert!(f.cf() && f.sf() && !f.of() && !f.zf());
        f.set_sub(0x8000_0000, 1, false, 0x7fff_ffff, 32);
        assert!(f.of() && !f.cf());
        f.set_add(u64::MAX, 0, true, 0, 64);
        assert!(f.cf() && f.zf());
        f.set_sub(5, 5, true, u64::MAX, 64);
        assert!(f.cf());
    }

    #[test]
    fn conditions() {
        let mut f = Flags::default();
        f.set_sub(1, 2, false, 1u64.wrapping_sub(2), 32);
        assert!(f.cond(0x2)); // B
        assert!(f.cond(0xc)); // L
        assert!(!f.cond(0x4)); // E
        assert!(f.cond(0x5)); // NE
    }
}
