//! RFLAGS, and the helpers that set the arithmetic flags the way each
//! instruction family defines them. Every handler goes through these methods,
//! so the representation can become lazy without touching handlers.

use kite_hypervisor::x86::*;

/// Arithmetic flags CF PF AF ZF SF OF.
pub const ARITH: u64 = RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF;

/// What the arithmetic flags were last computed from (lazy flags). One
/// byte with these discriminants: the code-generating tier stores it
/// directly (see `layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Lazy {
    /// `bits` holds CF PF AF ZF SF OF.
    None,
    /// `a + b + cin = res`.
    Add,
    /// `a - b - cin = res`.
    Sub,
    /// AND OR XOR TEST: CF OF AF clear.
    Logic,
    /// `a + 1 = res`, CF is `cin`.
    Inc,
    /// `a - 1 = res`, CF is `cin`.
    Dec,
}

/// RFLAGS. The arithmetic flags are lazy: the ALU helpers record the
/// operation, operands and result, and the flags are computed (exactly)
/// only when something reads them.
#[derive(Debug, Clone, Copy)]
pub struct Flags {
    /// RFLAGS; its arithmetic bits are stale while `lazy` is not `None`.
    bits: u64,
    lazy: Lazy,
    /// Operand size in bits of the lazy operation.
    size: u32,
    /// Carry/borrow in (ADD/SUB), or the preserved CF (INC/DEC).
    cin: bool,
    /// Operands and result, masked to `size`.
    a: u64,
    b: u64,
    res: u64,
}

impl PartialEq for Flags {
    fn eq(&self, other: &Self) -> bool {
        self.rflags() == other.rflags()
    }
}

impl Eq for Flags {}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            bits: RFLAGS_FIXED,
            lazy: Lazy::None,
            size: 64,
            cin: false,
            a: 0,
            b: 0,
            res: 0,
        }
    }
}

/// Where the lazy-flag fields sit in `Flags` and the `Lazy` values, for
/// generated code that records an ALU result exactly as `Flags::record`
/// does (jit/translate.rs). `cin` is a `bool` (one byte, 0 or 1), `size` a
/// `u32`, `a` `b` `res` `u64`s already masked to `size` bits; `bits` the
/// RFLAGS word (its arithmetic bits are the flags while `lazy` is `NONE`,
/// as `set_arith` leaves them).
pub mod layout {
    use super::{Flags, Lazy};
    pub const BITS: usize = core::mem::offset_of!(Flags, bits);
    pub const LAZY: usize = core::mem::offset_of!(Flags, lazy);
    pub const SIZE: usize = core::mem::offset_of!(Flags, size);
    pub const CIN: usize = core::mem::offset_of!(Flags, cin);
    pub const A: usize = core::mem::offset_of!(Flags, a);
    pub const B: usize = core::mem::offset_of!(Flags, b);
    pub const RES: usize = core::mem::offset_of!(Flags, res);
    pub const NONE: u8 = Lazy::None as u8;
    pub const ADD: u8 = Lazy::Add as u8;
    pub const SUB: u8 = Lazy::Sub as u8;
    pub const LOGIC: u8 = Lazy::Logic as u8;
    pub const INC: u8 = Lazy::Inc as u8;
    pub const DEC: u8 = Lazy::Dec as u8;
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

/// PF: set when the low byte has an even number of ones.
#[inline]
fn parity(v: u64) -> bool {
    let x = (v ^ (v >> 4)) & 0xf;
    (0x6996u16 >> x) & 1 == 0
}

impl Flags {
    /// The arithmetic flags of the lazy operation (only while lazy).
    #[inline]
    fn lazy_cf(&self) -> bool {
        match self.lazy {
            Lazy::None => self.bits & RFLAGS_CF != 0,
            Lazy::Add => {
                (self.a as u128 + self.b as u128 + self.cin as u128) > u128::from(mask(self.size))
            }
            Lazy::Sub => (self.a as u128) < (self.b as u128 + self.cin as u128),
            Lazy::Logic => false,
            Lazy::Inc | Lazy::Dec => self.cin,
        }
    }

    #[inline]
    fn lazy_of(&self) -> bool {
        let sb = sign_bit(self.size);
        let (a, b, r) = (self.a, self.b, self.res);
        match self.lazy {
            Lazy::None => self.bits & RFLAGS_OF != 0,
            Lazy::Add | Lazy::Inc => ((a ^ r) & (b ^ r) & sb) != 0,
            Lazy::Sub | Lazy::Dec => ((a ^ b) & (a ^ r) & sb) != 0,
            Lazy::Logic => false,
        }
    }

    #[inline]
    fn lazy_af(&self) -> bool {
        match self.lazy {
            Lazy::None => self.bits & RFLAGS_AF != 0,
            Lazy::Logic => false,
            _ => ((self.a ^ self.b ^ self.res) & 0x10) != 0,
        }
    }

    /// The arithmetic flag bits (CF PF AF ZF SF OF) as RFLAGS bits.
    #[inline]
    fn arith_bits(&self) -> u64 {
        if self.lazy == Lazy::None {
            return self.bits & ARITH;
        }
        let r = self.res;
        ((self.lazy_cf() as u64) * RFLAGS_CF)
            | ((parity(r) as u64) * RFLAGS_PF)
            | ((self.lazy_af() as u64) * RFLAGS_AF)
            | (((r == 0) as u64) * RFLAGS_ZF)
            | (((r & sign_bit(self.size) != 0) as u64) * RFLAGS_SF)
            | ((self.lazy_of() as u64) * RFLAGS_OF)
    }

    /// Compute the lazy flags into `bits`.
    #[inline]
    fn materialize(&mut self) {
        if self.lazy != Lazy::None {
            self.bits = (self.bits & !ARITH) | self.arith_bits();
            self.lazy = Lazy::None;
        }
    }

    /// Compute the lazy flags into the RFLAGS word now (generated code
    /// does it before an instruction that sets only some flags natively).
    pub fn materialize_now(&mut self) {
        self.materialize();
    }

    #[inline]
    fn record(&mut self, lazy: Lazy, a: u64, b: u64, cin: bool, res: u64, bits: u32) {
        let m = mask(bits);
        self.lazy = lazy;
        self.size = bits;
        self.cin = cin;
        self.a = a & m;
        self.b = b & m;
        self.res = res & m;
    }

    /// The architectural RFLAGS value.
    #[inline]
    pub fn rflags(&self) -> u64 {
        (self.bits & !ARITH) | self.arith_bits()
    }

    /// Load RFLAGS (the caller has applied privilege masks); bit 1 stays set,
    /// reserved bits clear.
    #[inline]
    pub fn set_rflags(&mut self, v: u64) {
        self.lazy = Lazy::None;
        self.bits = (v & 0x003f_7fd5) | RFLAGS_FIXED;
    }

    #[inline]
    pub fn get(&self, m: u64) -> bool {
        if m & ARITH == 0 || self.lazy == Lazy::None {
            self.bits & m != 0
        } else {
            self.rflags() & m != 0
        }
    }

    #[inline]
    pub fn set(&mut self, m: u64, on: bool) {
        if m & ARITH != 0 {
            self.materialize();
        }
        if on {
            self.bits |= m;
        } else {
            self.bits &= !m;
        }
    }

    #[inline]
    pub fn cf(&self) -> bool {
        self.lazy_cf()
    }
    #[inline]
    pub fn zf(&self) -> bool {
        if self.lazy == Lazy::None {
            self.bits & RFLAGS_ZF != 0
        } else {
            self.res == 0
        }
    }
    #[inline]
    pub fn sf(&self) -> bool {
        if self.lazy == Lazy::None {
            self.bits & RFLAGS_SF != 0
        } else {
            self.res & sign_bit(self.size) != 0
        }
    }
    #[inline]
    pub fn of(&self) -> bool {
        self.lazy_of()
    }
    #[inline]
    pub fn pf(&self) -> bool {
        if self.lazy == Lazy::None {
            self.bits & RFLAGS_PF != 0
        } else {
            parity(self.res)
        }
    }
    #[inline]
    pub fn af(&self) -> bool {
        self.lazy_af()
    }
    #[inline]
    pub fn df(&self) -> bool {
        self.bits & RFLAGS_DF != 0
    }
    #[inline]
    pub fn if_(&self) -> bool {
        self.bits & RFLAGS_IF != 0
    }

    /// Set CF PF AF ZF SF OF at once from explicit values.
    #[inline]
    pub fn set_arith(&mut self, cf: bool, pf: bool, af: bool, zf: bool, sf: bool, of: bool) {
        self.lazy = Lazy::None;
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
        self.record(Lazy::Logic, 0, 0, false, res, bits);
    }

    /// Flags of `a + b + carry = res` (ADD, ADC).
    #[inline]
    pub fn set_add(&mut self, a: u64, b: u64, carry: bool, res: u64, bits: u32) {
        self.record(Lazy::Add, a, b, carry, res, bits);
    }

    /// Flags of `a - b - borrow = res` (SUB, SBB, CMP, NEG as 0 - b).
    #[inline]
    pub fn set_sub(&mut self, a: u64, b: u64, borrow: bool, res: u64, bits: u32) {
        self.record(Lazy::Sub, a, b, borrow, res, bits);
    }

    /// INC: as ADD a,1 but CF unchanged.
    #[inline]
    pub fn set_inc(&mut self, a: u64, res: u64, bits: u32) {
        let cf = self.cf();
        self.record(Lazy::Inc, a, 1, cf, res, bits);
    }

    /// DEC: as SUB a,1 but CF unchanged.
    #[inline]
    pub fn set_dec(&mut self, a: u64, res: u64, bits: u32) {
        let cf = self.cf();
        self.record(Lazy::Dec, a, 1, cf, res, bits);
    }

    /// SHL SHR SAR with a nonzero count: ZF SF PF from the result, CF and OF
    /// as given, AF set (as the host does).
    #[inline]
    pub fn set_shift(&mut self, res: u64, bits: u32, cf: bool, of: bool) {
        let r = res & mask(bits);
        self.set_arith(cf, parity(r), true, r == 0, r & sign_bit(bits) != 0, of);
    }

    /// CF and OF only (rotates).
    #[inline]
    pub fn set_cf_of(&mut self, cf: bool, of: bool) {
        self.materialize();
        self.bits = (self.bits & !(RFLAGS_CF | RFLAGS_OF))
            | ((cf as u64) * RFLAGS_CF)
            | ((of as u64) * RFLAGS_OF);
    }

    /// ZF SF PF from a result, leaving the others.
    #[inline]
    pub fn set_szp(&mut self, res: u64, bits: u32) {
        self.materialize();
        let r = res & mask(bits);
        self.set(RFLAGS_ZF, r == 0);
        self.set(RFLAGS_SF, r & sign_bit(bits) != 0);
        self.set(RFLAGS_PF, parity(r));
    }

    /// Evaluate a condition code (the low 4 bits of Jcc/SETcc/CMOVcc).
    #[inline(always)]
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

    /// Every flag read through the lazy form equals the eager definition.
    #[test]
    fn lazy_flags_match_eager_definitions() {
        let vals = [
            0u64,
            1,
            0x7f,
            0x80,
            0xff,
            0x7fff,
            0x8000,
            0xffff,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x7fff_ffff_ffff_ffff,
            0x8000_0000_0000_0000,
            u64::MAX,
            0x1234_5678_9abc_def0,
        ];
        for bits in [8u32, 16, 32, 64] {
            let m = mask(bits);
            let sb = sign_bit(bits);
            for &a in &vals {
                for &b in &vals {
                    for c in [false, true] {
                        let (a, b) = (a & m, b & m);
                        let mut f = Flags::default();
                        let r = a.wrapping_add(b).wrapping_add(c as u64) & m;
                        f.set_add(a, b, c, r, bits);
                        let cf = (a as u128 + b as u128 + c as u128) > m as u128;
                        assert_eq!(f.cf(), cf);
                        assert_eq!(f.of(), ((a ^ r) & (b ^ r) & sb) != 0);
                        assert_eq!(f.zf(), r == 0);
                        assert_eq!(f.sf(), r & sb != 0);
                        assert_eq!(f.pf(), (r as u8).count_ones().is_multiple_of(2));
                        assert_eq!(f.af(), (a ^ b ^ r) & 0x10 != 0);
                        let want = f.rflags();
                        let mut g = f;
                        g.set(RFLAGS_DF, true);
                        assert_eq!(g.rflags(), want | RFLAGS_DF);
                        let r = a.wrapping_sub(b).wrapping_sub(c as u64) & m;
                        f.set_sub(a, b, c, r, bits);
                        assert_eq!(f.cf(), (a as u128) < b as u128 + c as u128);
                        assert_eq!(f.of(), ((a ^ b) & (a ^ r) & sb) != 0);
                        for cc in 0..16u8 {
                            let mut e = Flags::default();
                            e.set_rflags(f.rflags());
                            assert_eq!(e.cond(cc), f.cond(cc), "cc {cc}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn inc_dec_keep_cf_and_logic_clears() {
        let mut f = Flags::default();
        f.set_sub(0, 1, false, u64::MAX, 64); // CF=1
        f.set_inc(0xff, 0, 8);
        assert!(f.cf() && f.zf() && f.af() && !f.of());
        f.set_dec(0x80, 0x7f, 8);
        assert!(f.cf() && f.of() && !f.sf());
        f.set_logic(0x80, 8);
        assert_eq!(f.rflags() & ARITH, RFLAGS_SF);
        f.set(RFLAGS_CF, true);
        assert_eq!(f.rflags() & ARITH, RFLAGS_SF | RFLAGS_CF);
        f.set_szp(0, 16);
        assert_eq!(f.rflags() & ARITH, RFLAGS_ZF | RFLAGS_PF | RFLAGS_CF);
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
