//! x87 tests running real instruction bytes through the engine, checked
//! against known bit patterns and the host's f64 arithmetic.

use iced_x86::code_asm::*;
use kite_hypervisor::x86;

use super::{sw, F80};
use crate::cpu::fpu::testing::{vector, TestCpu, DATA};

fn f64_at(t: &TestCpu, addr: u64) -> f64 {
    f64::from_bits(t.read_u64(addr))
}

#[test]
fn long_double_arithmetic_is_exact() {
    let mut t = TestCpu::new();
    t.write(DATA, &3u32.to_le_bytes());
    t.run(|a| {
        a.fninit().unwrap();
        a.fld1().unwrap();
        a.fidiv(dword_ptr(DATA)).unwrap(); // 1/3 in 64-bit precision
        a.fld(st0).unwrap();
        a.fstp(tword_ptr(DATA + 0x10)).unwrap();
        a.fld1().unwrap();
        a.fadd_2(st0, st0).unwrap(); // 2
        a.fsqrt().unwrap();
        a.fst(qword_ptr(DATA + 0x20)).unwrap();
        a.fmulp(st1, st0).unwrap(); // sqrt2 / 3
        a.fistp(dword_ptr(DATA + 0x30)).unwrap(); // rounds to 0
    })
    .unwrap();
    let third = F80::from_bytes(&t.read(DATA + 0x10, 10));
    assert_eq!(
        third,
        F80 {
            mant: 0xaaaa_aaaa_aaaa_aaab,
            se: 0x3ffd
        }
    );
    assert_eq!(f64_at(&t, DATA + 0x20), 2f64.sqrt());
    assert_eq!(t.read_u64(DATA + 0x30) as u32, 0);
    assert_eq!(t.cpu.fpu.ftw, 0xffff, "stack balanced and empty");
    assert_ne!(t.cpu.fpu.fsw & sw::PE, 0);
}

#[test]
fn compare_and_fcomi_flags() {
    let mut t = TestCpu::new();
    t.write(DATA, &1.5f64.to_bits().to_le_bytes());
    t.write(DATA + 8, &f64::NAN.to_bits().to_le_bytes());
    t.run(|a| {
        a.fninit().unwrap();
        a.fld(qword_ptr(DATA)).unwrap();
        a.fld1().unwrap();
        a.fcom_2(st0, st1).unwrap();
        a.fnstsw(ax).unwrap();
        a.fcomi(st0, st1).unwrap();
    })
    .unwrap();
    // 1 < 1.5: C0 set, C3 C2 clear; CF set, ZF PF clear.
    let swv = t.cpu.gpr[0] as u16;
    assert_eq!(swv & (sw::C0 | sw::C2 | sw::C3), sw::C0);
    assert_eq!((swv >> 11) & 7, 6, "TOP after two loads");
    assert!(t.cpu.flags.cf() && !t.cpu.flags.zf() && !t.cpu.flags.pf());
    t.run(|a| {
        a.fld(qword_ptr(DATA + 8)).unwrap();
        a.fucomip(st0, st1).unwrap();
    })
    .unwrap();
    assert!(t.cpu.flags.cf() && t.cpu.flags.zf() && t.cpu.flags.pf());
    assert_eq!(t.cpu.fpu.fsw & sw::IE, 0, "FUCOMI of a QNaN is quiet");
}

#[test]
fn stack_underflow_overflow_and_mf() {
    let mut t = TestCpu::new();
    t.run(|a| {
        a.fninit().unwrap();
        a.fadd_2(st0, st1).unwrap(); // both empty: underflow
    })
    .unwrap();
    assert_eq!(t.cpu.fpu.fsw & (sw::IE | sw::SF | sw::C1), sw::IE | sw::SF);
    assert_eq!(t.cpu.fpu.st(0), F80::INDEFINITE);
    // Nine pushes overflow: C1 set, ST(0) gets the indefinite.
    t.run(|a| {
        a.fninit().unwrap();
        for _ in 0..9 {
            a.fldz().unwrap();
        }
    })
    .unwrap();
    assert_eq!(
        t.cpu.fpu.fsw & (sw::IE | sw::SF | sw::C1),
        sw::IE | sw::SF | sw::C1
    );
    assert_eq!(t.cpu.fpu.st(0), F80::INDEFINITE);
    // Unmasked zero divide: ES set, destination kept; the next waiting
    // instruction raises #MF (CR0.NE), FNCLEX clears it.
    t.write(DATA, &0x37bu16.to_le_bytes());
    let r = t.run(|a| {
        a.fninit().unwrap();
        a.fldcw(word_ptr(DATA)).unwrap();
        a.fld1().unwrap();
        a.fldz().unwrap();
        a.fdivp(st1, st0).unwrap();
    });
    assert!(r.is_ok());
    assert_ne!(t.cpu.fpu.fsw & sw::ES, 0);
    assert_eq!((t.cpu.fpu.st(0), t.cpu.fpu.st(1)), (F80::ZERO, F80::ONE));
    assert_eq!(t.cpu.fpu.top, 6, "no pop");
    assert_eq!(vector(t.run(|a| a.wait().unwrap())), Some(x86::MF));
    t.run(|a| {
        a.fnclex().unwrap();
        a.wait().unwrap();
    })
    .unwrap();
    // CR0.TS: x87 instructions raise #NM.
    t.cpu.cr0 |= x86::CR0_TS;
    assert_eq!(vector(t.run(|a| a.fld1().unwrap())), Some(x86::NM));
}

#[test]
fn conversions_constants_and_transcendentals() {
    let mut t = TestCpu::new();
    t.write(DATA, &(-1234567890123i64).to_le_bytes());
    t.write(DATA + 8, &0.5f64.to_bits().to_le_bytes());
    t.run(|a| {
        a.fninit().unwrap();
        a.fild(qword_ptr(DATA)).unwrap();
        a.fbstp(tword_ptr(DATA + 0x10)).unwrap();
        a.fbld(tword_ptr(DATA + 0x10)).unwrap();
        a.fistp(qword_ptr(DATA + 0x20)).unwrap();
        a.fldpi().unwrap();
        a.fstp(qword_ptr(DATA + 0x28)).unwrap();
        a.fld(qword_ptr(DATA + 8)).unwrap();
        a.fsin().unwrap();
        a.fstp(qword_ptr(DATA + 0x30)).unwrap();
        a.fld(qword_ptr(DATA + 8)).unwrap();
        a.fld1().unwrap();
        a.fpatan().unwrap(); // atan(0.5 / 1)
        a.fstp(qword_ptr(DATA + 0x38)).unwrap();
        a.fld(qword_ptr(DATA + 8)).unwrap();
        a.fisttp(word_ptr(DATA + 0x40)).unwrap();
        a.fld(qword_ptr(DATA + 8)).unwrap();
        a.fxam().unwrap();
        a.fnstsw(ax).unwrap();
    })
    .unwrap();
    // Packed BCD: 1234567890123 with the sign byte 0x80.
    assert_eq!(
        t.read(DATA + 0x10, 10),
        vec![0x23, 0x01, 0x89, 0x67, 0x45, 0x23, 0x01, 0, 0, 0x80]
    );
    assert_eq!(t.read_u64(DATA + 0x20) as i64, -1234567890123);
    assert_eq!(f64_at(&t, DATA + 0x28), std::f64::consts::PI);
    assert!((f64_at(&t, DATA + 0x30) - 0.5f64.sin()).abs() < 1e-16);
    assert!((f64_at(&t, DATA + 0x38) - 0.5f64.atan()).abs() < 1e-16);
    assert_eq!(t.read(DATA + 0x40, 2), vec![0, 0]);
    // FXAM of +0.5: normal (C2), positive.
    assert_eq!(
        t.cpu.gpr[0] as u16 & (sw::C0 | sw::C1 | sw::C2 | sw::C3),
        sw::C2
    );
}

#[test]
fn fxsave_fxrstor_and_xsave_round_trip() {
    let mut t = TestCpu::new();
    t.cpu.fpu.xmm[9] = 0x1122_3344_5566_7788_99aa_bbcc_ddee_ff00;
    t.cpu.fpu.mxcsr = 0x3f80;
    t.run(|a| {
        a.fninit().unwrap();
        a.fldpi().unwrap();
        a.fld1().unwrap();
        a.fxsave64(ptr(DATA + 0x200)).unwrap();
    })
    .unwrap();
    let img = t.read(DATA + 0x200, 512);
    assert_eq!(u16::from_le_bytes([img[0], img[1]]), 0x37f);
    assert_eq!((u16::from_le_bytes([img[2], img[3]]) >> 11) & 7, 6);
    assert_eq!(img[4], 0b1100_0000, "abridged tags: R6 R7 valid");
    assert_eq!(&img[32..42], &F80::ONE.to_bytes());
    assert_eq!(u32::from_le_bytes(img[24..28].try_into().unwrap()), 0x3f80);
    assert_eq!(
        u128::from_le_bytes(img[160 + 9 * 16..176 + 9 * 16].try_into().unwrap()),
        t.cpu.fpu.xmm[9]
    );
    let saved = t.cpu.fpu;
    t.run(|a| {
        a.fninit().unwrap();
        a.pxor(xmm9, xmm9).unwrap();
        a.fxrstor64(ptr(DATA + 0x200)).unwrap();
    })
    .unwrap();
    assert_eq!(t.cpu.fpu.regs, saved.regs);
    assert_eq!(
        (t.cpu.fpu.top, t.cpu.fpu.ftw, t.cpu.fpu.xmm[9]),
        (6, saved.ftw, saved.xmm[9])
    );
    // Misaligned: #GP.
    assert_eq!(
        vector(t.run(|a| a.fxsave(ptr(DATA + 0x208)).unwrap())),
        Some(x86::GP)
    );
    // XSAVE needs CR4.OSXSAVE.
    t.cpu.gpr[0] = 3;
    t.cpu.gpr[2] = 0;
    assert_eq!(
        vector(t.run(|a| a.xsave(ptr(DATA + 0x400)).unwrap())),
        Some(x86::UD)
    );
    t.cpu.cr4 |= x86::CR4_OSXSAVE;
    t.cpu.gpr[1] = 0;
    t.run(|a| {
        a.xsetbv().unwrap();
        a.xgetbv().unwrap();
    })
    .unwrap();
    assert_eq!(t.cpu.gpr[0], 3);
    t.run(|a| a.xsave64(ptr(DATA + 0x400)).unwrap()).unwrap();
    assert_eq!(t.read_u64(DATA + 0x400 + 512), 3, "XSTATE_BV");
    t.cpu.fpu.xmm[9] = 0;
    t.run(|a| {
        a.fninit().unwrap();
        a.xrstor64(ptr(DATA + 0x400)).unwrap();
    })
    .unwrap();
    assert_eq!((t.cpu.fpu.xmm[9], t.cpu.fpu.top), (saved.xmm[9], 6));
    // XSETBV with AVX state requested: #GP.
    t.cpu.gpr[0] = 7;
    assert_eq!(vector(t.run(|a| a.xsetbv().unwrap())), Some(x86::GP));
}

#[test]
fn fnstenv_and_fnsave_formats() {
    let mut t = TestCpu::new();
    t.run(|a| {
        a.fninit().unwrap();
        a.fld1().unwrap();
        a.fnstenv(ptr(DATA)).unwrap();
        a.fnsave(ptr(DATA + 0x100)).unwrap();
    })
    .unwrap();
    let env = t.read(DATA, 28);
    assert_eq!(u16::from_le_bytes([env[0], env[1]]), 0x37f);
    assert_eq!((u16::from_le_bytes([env[4], env[5]]) >> 11) & 7, 7);
    assert_eq!(
        u16::from_le_bytes([env[8], env[9]]),
        0x3fff,
        "R7 valid, rest empty"
    );
    assert_eq!(t.read(DATA + 0x100 + 28, 10), F80::ONE.to_bytes().to_vec());
    assert_eq!(t.cpu.fpu.ftw, 0xffff, "FNSAVE reinitializes");
    t.run(|a| a.frstor(ptr(DATA + 0x100)).unwrap()).unwrap();
    assert_eq!((t.cpu.fpu.top, t.cpu.fpu.st(0)), (7, F80::ONE));
    assert_eq!(t.cpu.fpu.fcw & 0x3f, 0x3f);
}

#[test]
fn api_state_round_trips() {
    let mut t = TestCpu::new();
    t.run(|a| {
        a.fninit().unwrap();
        a.fldpi().unwrap();
        a.fldz().unwrap();
        a.fld1().unwrap();
    })
    .unwrap();
    t.cpu.fpu.xmm[3] = 0xdead_beef;
    let api = t.cpu.fpu.to_api();
    assert_eq!(api.ftwx, 0b1110_0000);
    assert_eq!(&api.fpr[0][..10], &F80::ONE.to_bytes());
    let mut back = super::FpuState::default();
    back.from_api(&api);
    assert_eq!(
        (back.top, back.ftw, back.regs),
        (t.cpu.fpu.top, t.cpu.fpu.ftw, t.cpu.fpu.regs)
    );
    assert_eq!(back.xmm[3], 0xdead_beef);
    // FLDCW keeps bit 6 set and reserved bits clear.
    t.write(DATA, &0xffffu16.to_le_bytes());
    t.run(|a| {
        a.fldcw(word_ptr(DATA)).unwrap();
        a.fnstcw(word_ptr(DATA + 2)).unwrap();
    })
    .unwrap();
    assert_eq!(t.read(DATA + 2, 2), vec![0x7f, 0x1f]);
}

#[test]
fn remainder_scale_extract_and_two_result_ops() {
    let mut t = TestCpu::new();
    for (i, v) in [17.5f64, 5.0, 48.0, 0.25, 3.0].iter().enumerate() {
        t.write(DATA + 8 * i as u64, &v.to_bits().to_le_bytes());
    }
    t.run(|a| {
        a.fninit().unwrap();
        a.fld(qword_ptr(DATA + 8)).unwrap(); // 5
        a.fld(qword_ptr(DATA)).unwrap(); // 17.5
        a.fprem().unwrap(); // 2.5, quotient 3
        a.fnstsw(ax).unwrap();
        a.fstp(qword_ptr(DATA + 0x40)).unwrap();
        a.fstp(st0).unwrap();
        a.fld(qword_ptr(DATA + 32)).unwrap(); // 3
        a.fld(qword_ptr(DATA + 24)).unwrap(); // 0.25
        a.fscale().unwrap(); // 0.25 * 2^3 = 2
        a.fstp(qword_ptr(DATA + 0x48)).unwrap();
        a.fstp(st0).unwrap();
        a.fld(qword_ptr(DATA + 16)).unwrap(); // 48
        a.fxtract().unwrap(); // ST0 = 1.5, ST1 = 5
        a.fstp(qword_ptr(DATA + 0x50)).unwrap();
        a.fstp(qword_ptr(DATA + 0x58)).unwrap();
        a.fld(qword_ptr(DATA + 24)).unwrap();
        a.fptan().unwrap(); // ST0 = 1, ST1 = tan(0.25)
        a.fstp(qword_ptr(DATA + 0x60)).unwrap();
        a.fstp(qword_ptr(DATA + 0x68)).unwrap();
        a.fld(qword_ptr(DATA + 24)).unwrap();
        a.fsincos().unwrap(); // ST0 = cos, ST1 = sin
        a.fstp(qword_ptr(DATA + 0x70)).unwrap();
        a.fstp(qword_ptr(DATA + 0x78)).unwrap();
    })
    .unwrap();
    let q = t.cpu.gpr[0] as u16;
    // Quotient 3 = 0b011: Q0 in C3... the SDM order is C0=Q2, C3=Q1, C1=Q0.
    assert_eq!(q & (sw::C0 | sw::C1 | sw::C2 | sw::C3), sw::C3 | sw::C1);
    assert_eq!(f64_at(&t, DATA + 0x40), 2.5);
    assert_eq!(f64_at(&t, DATA + 0x48), 2.0);
    assert_eq!(
        (f64_at(&t, DATA + 0x50), f64_at(&t, DATA + 0x58)),
        (1.5, 5.0)
    );
    assert_eq!(f64_at(&t, DATA + 0x60), 1.0);
    assert!((f64_at(&t, DATA + 0x68) - 0.25f64.tan()).abs() < 1e-16);
    assert!((f64_at(&t, DATA + 0x70) - 0.25f64.cos()).abs() < 1e-16);
    assert!((f64_at(&t, DATA + 0x78) - 0.25f64.sin()).abs() < 1e-16);
    assert_eq!(t.cpu.fpu.ftw, 0xffff);
}

#[test]
fn rounding_control_invalid_stores_and_moves() {
    let mut t = TestCpu::new();
    t.write(DATA, &(-2.5f64).to_bits().to_le_bytes());
    t.write(DATA + 8, &0x7f80_0001u32.to_le_bytes()); // SNaN
    t.write(DATA + 12, &1e10f32.to_bits().to_le_bytes());
    t.write(DATA + 16, &0x077fu16.to_le_bytes()); // RC = down
    t.run(|a| {
        a.fninit().unwrap();
        a.fld(qword_ptr(DATA)).unwrap();
        a.fld(st0).unwrap();
        a.frndint().unwrap(); // nearest even: -2
        a.fistp(dword_ptr(DATA + 0x20)).unwrap();
        a.fldcw(word_ptr(DATA + 16)).unwrap();
        a.fld(st0).unwrap();
        a.frndint().unwrap(); // down: -3
        a.fistp(dword_ptr(DATA + 0x24)).unwrap();
        a.fchs().unwrap();
        a.fist(word_ptr(DATA + 0x28)).unwrap(); // down: 2
        a.fld(dword_ptr(DATA + 12)).unwrap();
        a.fist(word_ptr(DATA + 0x2a)).unwrap(); // out of range: indefinite, IE
    })
    .unwrap();
    assert_eq!(t.read_u64(DATA + 0x20) as u32 as i32, -2);
    assert_eq!(t.read_u64(DATA + 0x20) >> 32, (-3i32) as u32 as u64);
    assert_eq!(t.read(DATA + 0x28, 4), vec![2, 0, 0, 0x80]);
    assert_ne!(t.cpu.fpu.fsw & sw::IE, 0);
    // FLD of a single SNaN: IE, quieted.
    t.run(|a| {
        a.fninit().unwrap();
        a.fld(dword_ptr(DATA + 8)).unwrap();
    })
    .unwrap();
    assert_ne!(t.cpu.fpu.fsw & sw::IE, 0);
    assert_eq!(t.cpu.fpu.st(0).mant, 0xc000_0100_0000_0000);
    // FXCH and FCMOV.
    t.cpu
        .flags
        .set_arith(true, false, false, false, false, false);
    t.run(|a| {
        a.fninit().unwrap();
        a.fld1().unwrap();
        a.fldz().unwrap();
        a.fxch(st0, st1).unwrap(); // ST0 = 1, ST1 = 0
        a.fcmovb(st0, st1).unwrap(); // CF = 1: ST0 = 0
        a.fabs().unwrap();
    })
    .unwrap();
    assert_eq!((t.cpu.fpu.st(0), t.cpu.fpu.st(1)), (F80::ZERO, F80::ZERO));
}

#[test]
fn fop_records_the_instruction_with_an_unmasked_exception() {
    let mut t = TestCpu::new();
    t.write(DATA, &0x37bu16.to_le_bytes()); // ZE unmasked
    t.run(|a| {
        a.fninit().unwrap();
        a.fldcw(word_ptr(DATA)).unwrap();
        a.fld1().unwrap();
        a.fldz().unwrap();
        a.fdiv_2(st1, st0).unwrap(); // DC F9: ZE
    })
    .unwrap();
    assert_eq!(t.cpu.fpu.fop, 0x4f9);
}

#[test]
fn condition_codes_follow_the_hardware_when_an_operation_stops() {
    // FPREM with a zero divisor and IE unmasked: the hardware stops,
    // keeps C3 and C0, clears C2 ("incomplete") and C1.
    let mut t = TestCpu::new();
    t.write(DATA, &0x37eu16.to_le_bytes());
    t.run(|a| {
        a.fninit().unwrap();
        a.fldz().unwrap();
        a.fld1().unwrap();
        a.fldcw(word_ptr(DATA)).unwrap();
    })
    .unwrap();
    t.cpu.fpu.fsw |= sw::CC;
    t.run(|a| a.fprem().unwrap()).unwrap();
    let fsw = t.cpu.fpu.fsw;
    assert_eq!(fsw & sw::CC, sw::C3 | sw::C0, "fsw {fsw:#x}");
    assert_eq!(fsw & (sw::IE | sw::ES), sw::IE | sw::ES);
    assert_eq!(
        t.cpu.fpu.st(0),
        F80 {
            mant: 1 << 63,
            se: 0x3fff
        },
        "ST(0) unchanged"
    );
    // FSIN on an empty stack (masked underflow): C2 and C1 cleared.
    t.run(|a| a.fninit().unwrap()).unwrap();
    t.cpu.fpu.fsw |= sw::C2 | sw::C1;
    t.run(|a| a.fsin().unwrap()).unwrap();
    assert_eq!(t.cpu.fpu.fsw & (sw::C2 | sw::C1), 0);
    assert_eq!(t.cpu.fpu.fsw & (sw::IE | sw::SF), sw::IE | sw::SF);
}
