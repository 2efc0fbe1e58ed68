//! x87 kernels that run the guest's operation on the host's x87 unit.
//!
//! Each kernel loads (FLDENV) the guest's control word and the guest's
//! condition codes C0..C3 into the host unit (empty stack, TOP = 0, no
//! exception flags), so bits the operation leaves unchanged come back
//! unchanged and bits it clears come back cleared, exactly as on the
//! hardware, also when an unmasked exception stops it. It loads the operands (80-bit images
//! or the guest's memory operand bits), executes the same x87 instruction,
//! stores the result(s) as 80-bit images, and reports the status word: the
//! C0..C3 bits right after the operation and the exception flags it raised.
//! It then resets the host x87 unit (FNINIT) and restores the host FCW in
//! the same `asm!` block, so the host state is never disturbed. Results,
//! including the transcendental instructions, are bit-exact with the host
//! processor.

use core::arch::asm;

/// What a kernel produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Out {
    /// First result (80-bit image, or the memory image of a store).
    pub r: [u8; 16],
    /// Second result (FPTAN's 1.0, FSINCOS's cosine, FXTRACT's significand).
    pub r2: [u8; 16],
    /// Status word right after the operation (C0..C3 and C1 round-up).
    pub sw_op: u16,
    /// Exception flags (bits 5:0) raised by the whole kernel.
    pub exc: u16,
}

impl Out {
    pub fn c_bits(&self) -> u16 {
        self.sw_op & 0x4700
    }

    /// The host's TOP right after the operation. Each kernel starts from
    /// an empty stack (TOP = 0), so this tells whether the operation
    /// pushed or popped, i.e. whether the hardware completed it.
    pub fn top(&self) -> u16 {
        (self.sw_op >> 11) & 7
    }
}

/// A kernel: (guest FCW, guest FSW, a, b) -> Out. Only C0..C3 of the FSW
/// are used. `a` is ST(0)'s image; `b` the other operand (80-bit image or
/// memory bits).
pub type Kernel = fn(u16, u16, &[u8; 16], &[u8; 16]) -> Out;

/// The 28-byte FLDENV image (32-bit protected-mode format) the kernels
/// start from: the guest's FCW, the guest's C0..C3 with TOP = 0 and no
/// exception flags, every register empty.
#[inline]
fn start_env(cw: u16, sw: u16) -> [u16; 14] {
    let mut e = [0u16; 14];
    e[0] = cw;
    e[2] = sw & 0x4700;
    e[4] = 0xffff;
    e
}

macro_rules! x87 {
    ($($name:ident = [$($op:expr),+ $(,)?] [$($post:expr),* $(,)?];)*) => {$(
        pub fn $name(cw: u16, sw: u16, a: &[u8; 16], b: &[u8; 16]) -> Out {
            let mut o = Out::default();
            let cwg: u16 = (cw & 0x0f3f) | 0x40;
            let cwm: u16 = cwg | 0x3f;
            let start = start_env(cwg, sw);
            let mut env = [0u16; 2];
            // SAFETY: the asm touches only the buffers passed by pointer and
            // the x87 registers (declared clobbered). Unmasked exceptions
            // never trap: the status is read and cleared (FNSTSW, FNCLEX,
            // both non-waiting) right after the operation, and the host x87
            // unit is left reset (FNINIT) with its original control word.
            unsafe {
                asm!(
                    "fnstcw word ptr [{env}]",
                    "fninit",
                    "fldenv [{start}]",
                    $($op,)+
                    "fnstsw word ptr [{s1}]",
                    "fnclex",
                    "fldcw word ptr [{cwm}]",
                    $($post,)*
                    "fninit",
                    "fldcw word ptr [{env}]",
                    "/* {a} {b} {r} {r2} */",
                    env = in(reg) env.as_mut_ptr(),
                    start = in(reg) start.as_ptr(),
                    cwm = in(reg) &cwm as *const u16,
                    a = in(reg) a.as_ptr(),
                    b = in(reg) b.as_ptr(),
                    r = in(reg) o.r.as_mut_ptr(),
                    r2 = in(reg) o.r2.as_mut_ptr(),
                    s1 = in(reg) &mut o.sw_op as *mut u16,
                    out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                    out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
                    options(nostack),
                );
            }
            o.exc = o.sw_op & 0x3f;
            let _ = env;
            o
        }
    )*};
}

/// The six arithmetic operations in five source forms: ST(i) (80-bit),
/// m32fp, m64fp, m16int, m32int. The result is `a OP b` (SUBR/DIVR: b OP a).
macro_rules! arith {
    ($($st:ident, $m32:ident, $m64:ident, $i16:ident, $i32:ident = $op:literal, $iop:literal;)*) => {$(
        x87! {
            $st = ["fld tbyte ptr [{b}]", "fld tbyte ptr [{a}]", concat!($op, " st, st(1)")] [
                   "fstp tbyte ptr [{r}]"];
            $m32 = ["fld tbyte ptr [{a}]", concat!($op, " dword ptr [{b}]")] [
                    "fstp tbyte ptr [{r}]"];
            $m64 = ["fld tbyte ptr [{a}]", concat!($op, " qword ptr [{b}]")] [
                    "fstp tbyte ptr [{r}]"];
            $i16 = ["fld tbyte ptr [{a}]", concat!($iop, " word ptr [{b}]")] [
                    "fstp tbyte ptr [{r}]"];
            $i32 = ["fld tbyte ptr [{a}]", concat!($iop, " dword ptr [{b}]")] [
                    "fstp tbyte ptr [{r}]"];
        }
    )*};
}

arith! {
    add_st, add_m32, add_m64, add_i16, add_i32 = "fadd", "fiadd";
    sub_st, sub_m32, sub_m64, sub_i16, sub_i32 = "fsub", "fisub";
    subr_st, subr_m32, subr_m64, subr_i16, subr_i32 = "fsubr", "fisubr";
    mul_st, mul_m32, mul_m64, mul_i16, mul_i32 = "fmul", "fimul";
    div_st, div_m32, div_m64, div_i16, div_i32 = "fdiv", "fidiv";
    divr_st, divr_m32, divr_m64, divr_i16, divr_i32 = "fdivr", "fidivr";
}

x87! {
    // Compares of ST(0) with the operand: C3 C2 C0 in sw_op.
    com_st = ["fld tbyte ptr [{b}]", "fld tbyte ptr [{a}]", "fcom st(1)"] [];
    ucom_st = ["fld tbyte ptr [{b}]", "fld tbyte ptr [{a}]", "fucom st(1)"] [];
    com_m32 = ["fld tbyte ptr [{a}]", "fcom dword ptr [{b}]"] [];
    com_m64 = ["fld tbyte ptr [{a}]", "fcom qword ptr [{b}]"] [];
    com_i16 = ["fld tbyte ptr [{a}]", "ficom word ptr [{b}]"] [];
    com_i32 = ["fld tbyte ptr [{a}]", "ficom dword ptr [{b}]"] [];
    tst = ["fld tbyte ptr [{a}]", "ftst"] [];

    // Loads: the memory operand to an 80-bit image.
    ld_m32 = ["fld dword ptr [{b}]"] ["fstp tbyte ptr [{r}]"];
    ld_m64 = ["fld qword ptr [{b}]"] ["fstp tbyte ptr [{r}]"];
    ild_16 = ["fild word ptr [{b}]"] ["fstp tbyte ptr [{r}]"];
    ild_32 = ["fild dword ptr [{b}]"] ["fstp tbyte ptr [{r}]"];
    ild_64 = ["fild qword ptr [{b}]"] ["fstp tbyte ptr [{r}]"];
    bld = ["fbld tbyte ptr [{b}]"] ["fstp tbyte ptr [{r}]"];

    // Stores: ST(0) to the memory image in r.
    st_m32 = ["fld tbyte ptr [{a}]", "fstp dword ptr [{r}]"] [];
    st_m64 = ["fld tbyte ptr [{a}]", "fstp qword ptr [{r}]"] [];
    ist_16 = ["fld tbyte ptr [{a}]", "fistp word ptr [{r}]"] [];
    ist_32 = ["fld tbyte ptr [{a}]", "fistp dword ptr [{r}]"] [];
    ist_64 = ["fld tbyte ptr [{a}]", "fistp qword ptr [{r}]"] [];
    istt_16 = ["fld tbyte ptr [{a}]", "fisttp word ptr [{r}]"] [];
    istt_32 = ["fld tbyte ptr [{a}]", "fisttp dword ptr [{r}]"] [];
    istt_64 = ["fld tbyte ptr [{a}]", "fisttp qword ptr [{r}]"] [];
    bstp = ["fld tbyte ptr [{a}]", "fbstp tbyte ptr [{r}]"] [];

    // Constants (rounded per FCW.RC as the hardware does).
    c_one = ["fld1"] ["fstp tbyte ptr [{r}]"];
    c_l2t = ["fldl2t"] ["fstp tbyte ptr [{r}]"];
    c_l2e = ["fldl2e"] ["fstp tbyte ptr [{r}]"];
    c_pi = ["fldpi"] ["fstp tbyte ptr [{r}]"];
    c_lg2 = ["fldlg2"] ["fstp tbyte ptr [{r}]"];
    c_ln2 = ["fldln2"] ["fstp tbyte ptr [{r}]"];
    c_zero = ["fldz"] ["fstp tbyte ptr [{r}]"];

    // Operations on ST(0).
    sqrt = ["fld tbyte ptr [{a}]", "fsqrt"] ["fstp tbyte ptr [{r}]"];
    rndint = ["fld tbyte ptr [{a}]", "frndint"] ["fstp tbyte ptr [{r}]"];
    f2xm1 = ["fld tbyte ptr [{a}]", "f2xm1"] ["fstp tbyte ptr [{r}]"];
    sin = ["fld tbyte ptr [{a}]", "fsin"] ["fstp tbyte ptr [{r}]"];
    cos = ["fld tbyte ptr [{a}]", "fcos"] ["fstp tbyte ptr [{r}]"];
    // Two results: r = the new ST(1), r2 = the new ST(0).
    ptan = ["fld tbyte ptr [{a}]", "fptan"] [
            "fstp tbyte ptr [{r2}]", "fstp tbyte ptr [{r}]"];
    sincos = ["fld tbyte ptr [{a}]", "fsincos"] [
              "fstp tbyte ptr [{r2}]", "fstp tbyte ptr [{r}]"];
    xtract = ["fld tbyte ptr [{a}]", "fxtract"] [
              "fstp tbyte ptr [{r2}]", "fstp tbyte ptr [{r}]"];

    // Operations on ST(0) = a and ST(1) = b; r is the new ST(0)
    // (FSCALE, FPREM, FPREM1) or the popped result (FPATAN, FYL2X, FYL2XP1).
    scale = ["fld tbyte ptr [{b}]", "fld tbyte ptr [{a}]", "fscale"] [
             "fstp tbyte ptr [{r}]"];
    prem = ["fld tbyte ptr [{b}]", "fld tbyte ptr [{a}]", "fprem"] [
            "fstp tbyte ptr [{r}]"];
    prem1 = ["fld tbyte ptr [{b}]", "fld tbyte ptr [{a}]", "fprem1"] [
             "fstp tbyte ptr [{r}]"];
    patan = ["fld tbyte ptr [{b}]", "fld tbyte ptr [{a}]", "fpatan"] [
             "fstp tbyte ptr [{r}]"];
    yl2x = ["fld tbyte ptr [{b}]", "fld tbyte ptr [{a}]", "fyl2x"] [
            "fstp tbyte ptr [{r}]"];
    yl2xp1 = ["fld tbyte ptr [{b}]", "fld tbyte ptr [{a}]", "fyl2xp1"] [
              "fstp tbyte ptr [{r}]"];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f64buf(v: f64) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&v.to_bits().to_le_bytes());
        b
    }

    fn to_f64(img: &[u8; 16]) -> f64 {
        let o = st_m64(0x37f, 0, img, &[0; 16]);
        let mut b = [0u8; 8];
        b.copy_from_slice(&o.r[..8]);
        f64::from_bits(u64::from_le_bytes(b))
    }

    #[test]
    fn extended_precision_arithmetic() {
        let one = ld_m64(0x37f, 0, &[0; 16], &f64buf(1.0)).r;
        assert_eq!(&one[..10], &[0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f]);
        let three = ld_m64(0x37f, 0, &[0; 16], &f64buf(3.0)).r;
        // 1/3 in 64-bit precision: 0xAAAA...AAAB, exponent 0x3ffd (round to nearest).
        let q = div_st(0x37f, 0, &one, &three);
        assert_eq!(
            u64::from_le_bytes(q.r[..8].try_into().unwrap()),
            0xaaaa_aaaa_aaaa_aaab
        );
        assert_eq!(u16::from_le_bytes([q.r[8], q.r[9]]), 0x3ffd);
        assert_eq!(q.exc, 0x20);
        assert_ne!(q.sw_op & 0x200, 0, "C1: rounded up");
        // Round toward zero (RC=11): ...AAAA.
        let q = div_st(0x37f | 0xc00, 0, &one, &three);
        assert_eq!(
            u64::from_le_bytes(q.r[..8].try_into().unwrap()),
            0xaaaa_aaaa_aaaa_aaaa
        );
        // Precision control 53 bits: the result is the double 1/3.
        let q = div_st(0x27f, 0, &one, &three);
        assert_eq!(to_f64(&q.r), 1.0 / 3.0);
        let s = sqrt(0x37f, 0, &f64buf_img(2.0), &[0; 16]);
        assert_eq!(to_f64(&s.r), 2f64.sqrt());
    }

    fn f64buf_img(v: f64) -> [u8; 16] {
        ld_m64(0x37f, 0, &[0; 16], &f64buf(v)).r
    }
}
