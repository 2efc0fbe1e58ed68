//! Floating-point kernels that run the guest's SSE instruction on the host.
//!
//! Each kernel loads the guest's MXCSR control bits (rounding mode, DAZ, FTZ)
//! into the host MXCSR with every exception masked and every flag clear,
//! executes the same instruction on copies of the guest operands, and
//! returns the result and the exception flags it raised; the host MXCSR is
//! restored inside the same `asm!` block. Results, NaN propagation,
//! denormal handling and flags are therefore bit-exact with hardware.
//! Needs an x86-64 host with SSE4.1 (ROUNDPS, DPPS).

use core::arch::asm;

/// Does the host have SSE4.1 (ROUNDPS, DPPS)? Every other kernel needs
/// only SSE2/SSE3, which all x86-64 hosts this engine targets have.
pub fn has_sse41() -> bool {
    std::is_x86_feature_detected!("sse4.1")
}

/// `(dst, src, guest mxcsr) -> (result, raised exception flags)`.
pub type Kernel = fn(u128, u128, u32) -> (u128, u32);

/// The MXCSR a kernel runs with: the guest's control bits, every exception
/// masked, no flags.
#[inline]
fn run_csr(mxcsr: u32) -> u32 {
    (mxcsr & 0xffc0) | 0x1f80
}

macro_rules! k2 {
    ($($name:ident = $op:literal;)*) => {$(
        pub fn $name(a: u128, b: u128, mxcsr: u32) -> (u128, u32) {
            let mut x = a;
            let mut csr = run_csr(mxcsr);
            let mut save = 0u32;
            // SAFETY: the asm reads and writes only the locals passed by
            // pointer and xmm0/xmm1 (declared clobbered), and restores the
            // host MXCSR before it ends.
            unsafe {
                asm!(
                    "stmxcsr [{save}]",
                    "ldmxcsr [{csr}]",
                    "movdqu xmm0, [{x}]",
                    "movdqu xmm1, [{y}]",
                    concat!($op, " xmm0, xmm1"),
                    "movdqu [{x}], xmm0",
                    "stmxcsr [{csr}]",
                    "ldmxcsr [{save}]",
                    save = in(reg) &mut save as *mut u32,
                    csr = in(reg) &mut csr as *mut u32,
                    x = in(reg) &mut x as *mut u128,
                    y = in(reg) &b as *const u128,
                    out("xmm0") _,
                    out("xmm1") _,
                    options(nostack),
                );
            }
            (x, csr & 0x3f)
        }
    )*};
}

macro_rules! k2i {
    ($($name:ident = $op:literal;)*) => {$(
        pub fn $name<const I: u8>(a: u128, b: u128, mxcsr: u32) -> (u128, u32) {
            let mut x = a;
            let mut csr = run_csr(mxcsr);
            let mut save = 0u32;
            // SAFETY: as in `k2`.
            unsafe {
                asm!(
                    "stmxcsr [{save}]",
                    "ldmxcsr [{csr}]",
                    "movdqu xmm0, [{x}]",
                    "movdqu xmm1, [{y}]",
                    concat!($op, " xmm0, xmm1, {imm}"),
                    "movdqu [{x}], xmm0",
                    "stmxcsr [{csr}]",
                    "ldmxcsr [{save}]",
                    save = in(reg) &mut save as *mut u32,
                    csr = in(reg) &mut csr as *mut u32,
                    x = in(reg) &mut x as *mut u128,
                    y = in(reg) &b as *const u128,
                    imm = const I,
                    out("xmm0") _,
                    out("xmm1") _,
                    options(nostack),
                );
            }
            (x, csr & 0x3f)
        }
    )*};
}

k2! {
    addps = "addps"; addpd = "addpd"; addss = "addss"; addsd = "addsd";
    subps = "subps"; subpd = "subpd"; subss = "subss"; subsd = "subsd";
    mulps = "mulps"; mulpd = "mulpd"; mulss = "mulss"; mulsd = "mulsd";
    divps = "divps"; divpd = "divpd"; divss = "divss"; divsd = "divsd";
    sqrtps = "sqrtps"; sqrtpd = "sqrtpd"; sqrtss = "sqrtss"; sqrtsd = "sqrtsd";
    minps = "minps"; minpd = "minpd"; minss = "minss"; minsd = "minsd";
    maxps = "maxps"; maxpd = "maxpd"; maxss = "maxss"; maxsd = "maxsd";
    rcpps = "rcpps"; rcpss = "rcpss"; rsqrtps = "rsqrtps"; rsqrtss = "rsqrtss";
    addsubps = "addsubps"; addsubpd = "addsubpd";
    haddps = "haddps"; haddpd = "haddpd"; hsubps = "hsubps"; hsubpd = "hsubpd";
    cvtps2pd = "cvtps2pd"; cvtpd2ps = "cvtpd2ps"; cvtss2sd = "cvtss2sd"; cvtsd2ss = "cvtsd2ss";
    cvtdq2ps = "cvtdq2ps"; cvtps2dq = "cvtps2dq"; cvttps2dq = "cvttps2dq";
    cvtdq2pd = "cvtdq2pd"; cvtpd2dq = "cvtpd2dq"; cvttpd2dq = "cvttpd2dq";
}

k2i! {
    cmpps = "cmpps"; cmppd = "cmppd"; cmpss = "cmpss"; cmpsd = "cmpsd";
    roundps = "roundps"; roundpd = "roundpd"; roundss = "roundss"; roundsd = "roundsd";
    dpps = "dpps"; dppd = "dppd";
}

/// Sixteen instantiations of an immediate kernel: imm = 16 * row + column.
macro_rules! row {
    ($f:ident, $h:literal) => {
        [
            $f::<{ $h * 16 }> as Kernel,
            $f::<{ $h * 16 + 1 }>,
            $f::<{ $h * 16 + 2 }>,
            $f::<{ $h * 16 + 3 }>,
            $f::<{ $h * 16 + 4 }>,
            $f::<{ $h * 16 + 5 }>,
            $f::<{ $h * 16 + 6 }>,
            $f::<{ $h * 16 + 7 }>,
            $f::<{ $h * 16 + 8 }>,
            $f::<{ $h * 16 + 9 }>,
            $f::<{ $h * 16 + 10 }>,
            $f::<{ $h * 16 + 11 }>,
            $f::<{ $h * 16 + 12 }>,
            $f::<{ $h * 16 + 13 }>,
            $f::<{ $h * 16 + 14 }>,
            $f::<{ $h * 16 + 15 }>,
        ]
    };
}

macro_rules! table256 {
    ($f:ident) => {
        [
            row!($f, 0),
            row!($f, 1),
            row!($f, 2),
            row!($f, 3),
            row!($f, 4),
            row!($f, 5),
            row!($f, 6),
            row!($f, 7),
            row!($f, 8),
            row!($f, 9),
            row!($f, 10),
            row!($f, 11),
            row!($f, 12),
            row!($f, 13),
            row!($f, 14),
            row!($f, 15),
        ]
    };
}

static CMPPS: [Kernel; 16] = row!(cmpps, 0);
static CMPPD: [Kernel; 16] = row!(cmppd, 0);
static CMPSS: [Kernel; 16] = row!(cmpss, 0);
static CMPSD: [Kernel; 16] = row!(cmpsd, 0);
static ROUNDPS: [Kernel; 16] = row!(roundps, 0);
static ROUNDPD: [Kernel; 16] = row!(roundpd, 0);
static ROUNDSS: [Kernel; 16] = row!(roundss, 0);
static ROUNDSD: [Kernel; 16] = row!(roundsd, 0);
static DPPS: [[Kernel; 16]; 16] = table256!(dpps);
static DPPD: [[Kernel; 16]; 16] = table256!(dppd);

/// Which immediate-taking operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImmOp {
    Cmpps,
    Cmppd,
    Cmpss,
    Cmpsd,
    Roundps,
    Roundpd,
    Roundss,
    Roundsd,
    Dpps,
    Dppd,
}

/// The kernel of an immediate-taking operation for `imm`. Legacy-SSE
/// compares use imm[2:0], ROUND* imm[3:0].
pub fn imm_kernel(op: ImmOp, imm: u8) -> Kernel {
    let (c, r) = (usize::from(imm & 7), usize::from(imm & 15));
    let (hi, lo) = (usize::from(imm >> 4), usize::from(imm & 15));
    match op {
        ImmOp::Cmpps => CMPPS[c],
        ImmOp::Cmppd => CMPPD[c],
        ImmOp::Cmpss => CMPSS[c],
        ImmOp::Cmpsd => CMPSD[c],
        ImmOp::Roundps => ROUNDPS[r],
        ImmOp::Roundpd => ROUNDPD[r],
        ImmOp::Roundss => ROUNDSS[r],
        ImmOp::Roundsd => ROUNDSD[r],
        ImmOp::Dpps => DPPS[hi][lo],
        ImmOp::Dppd => DPPD[hi][lo],
    }
}

macro_rules! from_int {
    ($($name:ident = $op:literal, $mod:literal;)*) => {$(
        /// Integer source to the low element of `a`.
        pub fn $name(a: u128, v: u64, mxcsr: u32) -> (u128, u32) {
            let mut x = a;
            let mut csr = run_csr(mxcsr);
            let mut save = 0u32;
            // SAFETY: as in `k2`.
            unsafe {
                asm!(
                    "stmxcsr [{save}]",
                    "ldmxcsr [{csr}]",
                    "movdqu xmm0, [{x}]",
                    concat!($op, " xmm0, {v:", $mod, "}"),
                    "movdqu [{x}], xmm0",
                    "stmxcsr [{csr}]",
                    "ldmxcsr [{save}]",
                    save = in(reg) &mut save as *mut u32,
                    csr = in(reg) &mut csr as *mut u32,
                    x = in(reg) &mut x as *mut u128,
                    v = in(reg) v,
                    out("xmm0") _,
                    options(nostack),
                );
            }
            (x, csr & 0x3f)
        }
    )*};
}

macro_rules! to_int {
    ($($name:ident = $op:literal, $mod:literal;)*) => {$(
        /// The low element of `b` to an integer.
        pub fn $name(b: u128, mxcsr: u32) -> (u64, u32) {
            let mut csr = run_csr(mxcsr);
            let mut save = 0u32;
            let r: u64;
            // SAFETY: as in `k2`.
            unsafe {
                asm!(
                    "stmxcsr [{save}]",
                    "ldmxcsr [{csr}]",
                    "movdqu xmm1, [{y}]",
                    "xor {r:e}, {r:e}",
                    concat!($op, " {r:", $mod, "}, xmm1"),
                    "stmxcsr [{csr}]",
                    "ldmxcsr [{save}]",
                    save = in(reg) &mut save as *mut u32,
                    csr = in(reg) &mut csr as *mut u32,
                    y = in(reg) &b as *const u128,
                    r = out(reg) r,
                    out("xmm1") _,
                    options(nostack),
                );
            }
            (r, csr & 0x3f)
        }
    )*};
}

from_int! {
    cvtsi2ss_32 = "cvtsi2ss", "e"; cvtsi2ss_64 = "cvtsi2ss", "r";
    cvtsi2sd_32 = "cvtsi2sd", "e"; cvtsi2sd_64 = "cvtsi2sd", "r";
}

to_int! {
    cvtss2si_32 = "cvtss2si", "e"; cvtss2si_64 = "cvtss2si", "r";
    cvttss2si_32 = "cvttss2si", "e"; cvttss2si_64 = "cvttss2si", "r";
    cvtsd2si_32 = "cvtsd2si", "e"; cvtsd2si_64 = "cvtsd2si", "r";
    cvttsd2si_32 = "cvttsd2si", "e"; cvttsd2si_64 = "cvttsd2si", "r";
}

/// Ordered/unordered compare of the low elements: (ZF, PF, CF, flags).
macro_rules! comi {
    ($($name:ident = $op:literal;)*) => {$(
        pub fn $name(a: u128, b: u128, mxcsr: u32) -> (bool, bool, bool, u32) {
            let mut csr = run_csr(mxcsr);
            let mut save = 0u32;
            let (z, p, c): (u8, u8, u8);
            // SAFETY: as in `k2`.
            unsafe {
                asm!(
                    "stmxcsr [{save}]",
                    "ldmxcsr [{csr}]",
                    "movdqu xmm0, [{x}]",
                    "movdqu xmm1, [{y}]",
                    concat!($op, " xmm0, xmm1"),
                    "setz {z}",
                    "setp {p}",
                    "setc {c}",
                    "stmxcsr [{csr}]",
                    "ldmxcsr [{save}]",
                    save = in(reg) &mut save as *mut u32,
                    csr = in(reg) &mut csr as *mut u32,
                    x = in(reg) &a as *const u128,
                    y = in(reg) &b as *const u128,
                    z = out(reg_byte) z,
                    p = out(reg_byte) p,
                    c = out(reg_byte) c,
                    out("xmm0") _,
                    out("xmm1") _,
                    options(nostack),
                );
            }
            (z != 0, p != 0, c != 0, csr & 0x3f)
        }
    )*};
}

comi! {
    comiss = "comiss"; ucomiss = "ucomiss"; comisd = "comisd"; ucomisd = "ucomisd";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_follow_rounding_mode_and_flags() {
        let one = u128::from(1.0f64.to_bits());
        let three = u128::from(3.0f64.to_bits());
        let (r, f) = divsd(one, three, 0x1f80);
        assert_eq!(r as u64, (1.0f64 / 3.0).to_bits());
        assert_eq!(f, 0x20); // PE
                             // Round up gives one ulp more (1/3 rounds down to nearest).
        let (ru, _) = divsd(one, three, 0x5f80);
        assert_eq!(ru as u64, (1.0f64 / 3.0).to_bits() + 1);
        let (_, f) = divsd(one, 0, 0x1f80);
        assert_eq!(f, 0x4); // ZE
        let (r, f) = cvttsd2si_32(u128::from(1e20f64.to_bits()), 0x1f80);
        assert_eq!((r as u32, f), (0x8000_0000, 1));
        let (z, p, c, f) = ucomisd(one, u128::from(f64::NAN.to_bits()), 0x1f80);
        assert!(z && p && c && f == 0);
        let (r, _) = imm_kernel(ImmOp::Roundsd, 1)(0, u128::from(2.5f64.to_bits()), 0x1f80);
        assert_eq!(f64::from_bits(r as u64), 2.0);
    }
}
