//! SSE/MMX tests running real instruction bytes through the engine, with
//! the host's own SSE (std::arch) or plain Rust arithmetic as the oracle.

use core::arch::x86_64::*;

use iced_x86::code_asm::*;
use kite_hypervisor::x86;

use crate::cpu::fpu::testing::{vector, TestCpu, DATA};

fn m128(v: __m128i) -> u128 {
    // SAFETY: __m128i and u128 are both 16 plain bytes.
    unsafe { std::mem::transmute::<__m128i, u128>(v) }
}

fn x(v: u128) -> __m128i {
    // SAFETY: as above.
    unsafe { std::mem::transmute::<u128, __m128i>(v) }
}

const A: u128 = 0x8000_7fff_0102_fffe_80ff_7f01_00aa_5533;
const B: u128 = 0x7fff_8000_ff01_0003_0180_7f7f_aa00_3355;

#[test]
fn integer_ops_match_host() {
    let mut t = TestCpu::new();
    t.cpu.fpu.xmm[1] = A;
    t.cpu.fpu.xmm[2] = B;
    t.write(DATA, &B.to_le_bytes());
    type Op = fn(&mut CodeAssembler) -> Result<(), IcedError>;
    // SAFETY (all below): SSE2/SSSE3/SSE4.1 intrinsics on a host that has them.
    let cases: Vec<(Op, u128)> = unsafe {
        vec![
            (|a| a.paddsw(xmm1, xmm2), m128(_mm_adds_epi16(x(A), x(B)))),
            (|a| a.psubusb(xmm1, xmm2), m128(_mm_subs_epu8(x(A), x(B)))),
            (|a| a.pmaddwd(xmm1, xmm2), m128(_mm_madd_epi16(x(A), x(B)))),
            (|a| a.pmulhuw(xmm1, xmm2), m128(_mm_mulhi_epu16(x(A), x(B)))),
            (|a| a.pmuludq(xmm1, xmm2), m128(_mm_mul_epu32(x(A), x(B)))),
            (|a| a.psadbw(xmm1, xmm2), m128(_mm_sad_epu8(x(A), x(B)))),
            (|a| a.pavgb(xmm1, xmm2), m128(_mm_avg_epu8(x(A), x(B)))),
            (|a| a.pcmpgtw(xmm1, xmm2), m128(_mm_cmpgt_epi16(x(A), x(B)))),
            (
                |a| a.packsswb(xmm1, xmm2),
                m128(_mm_packs_epi16(x(A), x(B))),
            ),
            (
                |a| a.packuswb(xmm1, xmm2),
                m128(_mm_packus_epi16(x(A), x(B))),
            ),
            (
                |a| a.punpckhwd(xmm1, xmm2),
                m128(_mm_unpackhi_epi16(x(A), x(B))),
            ),
            (
                |a| a.pshufd(xmm1, xmm2, 0x1b),
                m128(_mm_shuffle_epi32::<0x1b>(x(B))),
            ),
            (
                |a| a.pshufhw(xmm1, xmm2, 0x4e),
                m128(_mm_shufflehi_epi16::<0x4e>(x(B))),
            ),
            (|a| a.psraw(xmm1, 3), m128(_mm_srai_epi16::<3>(x(A)))),
            (|a| a.psrldq(xmm1, 5), m128(_mm_srli_si128::<5>(x(A)))),
            (|a| a.pshufb(xmm1, xmm2), m128(_mm_shuffle_epi8(x(A), x(B)))),
            (
                |a| a.palignr(xmm1, xmm2, 7),
                m128(_mm_alignr_epi8::<7>(x(A), x(B))),
            ),
            (
                |a| a.pmaddubsw(xmm1, xmm2),
                m128(_mm_maddubs_epi16(x(A), x(B))),
            ),
            (
                |a| a.pmulhrsw(xmm1, xmm2),
                m128(_mm_mulhrs_epi16(x(A), x(B))),
            ),
            (|a| a.psignw(xmm1, xmm2), m128(_mm_sign_epi16(x(A), x(B)))),
            (|a| a.phaddsw(xmm1, xmm2), m128(_mm_hadds_epi16(x(A), x(B)))),
            (|a| a.pminsb(xmm1, xmm2), m128(_mm_min_epi8(x(A), x(B)))),
            (|a| a.pmaxud(xmm1, xmm2), m128(_mm_max_epu32(x(A), x(B)))),
            (|a| a.pmulld(xmm1, xmm2), m128(_mm_mullo_epi32(x(A), x(B)))),
            (|a| a.pmuldq(xmm1, xmm2), m128(_mm_mul_epi32(x(A), x(B)))),
            (
                |a| a.packusdw(xmm1, xmm2),
                m128(_mm_packus_epi32(x(A), x(B))),
            ),
            (|a| a.pmovsxbw(xmm1, xmm2), m128(_mm_cvtepi8_epi16(x(B)))),
            (|a| a.pmovzxwq(xmm1, xmm2), m128(_mm_cvtepu16_epi64(x(B)))),
            (
                |a| a.pblendw(xmm1, xmm2, 0xa5),
                m128(_mm_blend_epi16::<0xa5>(x(A), x(B))),
            ),
            (
                |a| a.mpsadbw(xmm1, xmm2, 5),
                m128(_mm_mpsadbw_epu8::<5>(x(A), x(B))),
            ),
            (|a| a.pcmpgtq(xmm1, xmm2), m128(_mm_cmpgt_epi64(x(A), x(B)))),
            (|a| a.phminposuw(xmm1, xmm2), m128(_mm_minpos_epu16(x(B)))),
            (
                |a| a.paddw(xmm1, xmmword_ptr(DATA)),
                m128(_mm_add_epi16(x(A), x(B))),
            ),
        ]
    };
    for (i, (op, want)) in cases.into_iter().enumerate() {
        t.cpu.fpu.xmm[1] = A;
        t.run(|a| op(a).unwrap()).unwrap();
        assert_eq!(t.cpu.fpu.xmm[1], want, "case {i}");
    }
}

#[test]
fn moves_masks_and_alignment() {
    let mut t = TestCpu::new();
    t.write(DATA + 0x10, &A.to_le_bytes());
    t.cpu.gpr[0] = 0x1234_5678_9abc_def0;
    t.run(|a| {
        a.movdqa(xmm3, xmmword_ptr(DATA + 0x10)).unwrap();
        a.pmovmskb(ecx, xmm3).unwrap();
        a.movq(xmm4, rax).unwrap();
        a.movd(edx, xmm3).unwrap();
        a.movdqu(xmmword_ptr(DATA + 0x21), xmm3).unwrap();
        a.pextrw(esi, xmm3, 6).unwrap();
        a.pinsrb(xmm4, eax, 15).unwrap();
        a.pxor(xmm5, xmm5).unwrap();
        a.pcmpeqb(xmm5, xmm3).unwrap();
    })
    .unwrap();
    // SAFETY: SSE2 on the host.
    let mask = unsafe { _mm_movemask_epi8(x(A)) } as u64;
    assert_eq!(t.cpu.gpr[1], mask);
    assert_eq!(t.cpu.fpu.xmm[4], 0xf0 << 120 | 0x1234_5678_9abc_def0);
    assert_eq!(t.cpu.gpr[2], A as u32 as u64);
    assert_eq!(t.read_u128(DATA + 0x21), A);
    assert_eq!(t.cpu.gpr[6], (A >> 96) as u16 as u64);
    let zero_bytes = (0..16).filter(|i| (A >> (8 * i)) as u8 == 0).count();
    assert_eq!(
        t.cpu.fpu.xmm[5]
            .to_le_bytes()
            .iter()
            .filter(|&&b| b == 0xff)
            .count(),
        zero_bytes
    );
    // MOVDQA from a misaligned address: #GP; MOVUPS is fine.
    assert_eq!(
        vector(t.run(|a| a.movdqa(xmm0, xmmword_ptr(DATA + 8)).unwrap())),
        Some(x86::GP)
    );
    assert!(t
        .run(|a| a.movups(xmm0, xmmword_ptr(DATA + 8)).unwrap())
        .is_ok());
    // CR0.TS: #NM; CR4.OSFXSR clear: #UD.
    t.cpu.cr0 |= x86::CR0_TS;
    assert_eq!(
        vector(t.run(|a| a.pxor(xmm0, xmm0).unwrap())),
        Some(x86::NM)
    );
    t.cpu.cr0 &= !x86::CR0_TS;
    t.cpu.cr4 &= !x86::CR4_OSFXSR;
    assert_eq!(
        vector(t.run(|a| a.pxor(xmm0, xmm0).unwrap())),
        Some(x86::UD)
    );
}

#[test]
fn scalar_double_arithmetic_and_conversions() {
    let mut t = TestCpu::new();
    t.cpu.gpr[0] = (-7i64) as u64;
    t.write(DATA, &2.5f64.to_bits().to_le_bytes());
    t.run(|a| {
        a.cvtsi2sd(xmm0, rax).unwrap();
        a.divsd(xmm0, qword_ptr(DATA)).unwrap(); // -2.8
        a.sqrtsd(xmm1, qword_ptr(DATA)).unwrap();
        a.cvttsd2si(ecx, xmm0).unwrap();
        a.cvtsd2si(rdx, xmm0).unwrap();
        a.ucomisd(xmm0, xmm1).unwrap();
    })
    .unwrap();
    assert_eq!(t.cpu.fpu.xmm[0] as u64, (-7.0f64 / 2.5).to_bits());
    assert_eq!(t.cpu.fpu.xmm[1] as u64, 2.5f64.sqrt().to_bits());
    assert_eq!(t.cpu.gpr[1], (-2i32) as u32 as u64);
    assert_eq!(t.cpu.gpr[2], (-3i64) as u64);
    assert!(t.cpu.flags.cf() && !t.cpu.flags.zf() && !t.cpu.flags.pf());
    assert_ne!(t.cpu.fpu.mxcsr & 0x20, 0, "PE recorded");
    // Out-of-range truncation: integer indefinite and IE.
    t.write(DATA + 8, &1e300f64.to_bits().to_le_bytes());
    t.run(|a| a.cvttsd2si(eax, qword_ptr(DATA + 8)).unwrap())
        .unwrap();
    assert_eq!(t.cpu.gpr[0], 0x8000_0000);
    assert_ne!(t.cpu.fpu.mxcsr & 1, 0);
    // Unmasked divide-by-zero: #XM, destination unchanged.
    t.cpu.fpu.mxcsr = 0x1f80 & !(1 << 9);
    t.cpu.fpu.xmm[2] = u128::from(1.0f64.to_bits());
    t.cpu.fpu.xmm[3] = 0;
    assert_eq!(
        vector(t.run(|a| a.divsd(xmm2, xmm3).unwrap())),
        Some(x86::XM)
    );
    assert_eq!(t.cpu.fpu.xmm[2] as u64, 1.0f64.to_bits());
    // Reserved MXCSR bits: #GP.
    t.write(DATA + 16, &0x10000u32.to_le_bytes());
    assert_eq!(
        vector(t.run(|a| a.ldmxcsr(dword_ptr(DATA + 16)).unwrap())),
        Some(x86::GP)
    );
}

#[test]
fn packed_single_ops_match_host() {
    let mut t = TestCpu::new();
    let fa = [1.5f32, -0.0, 3.25e10, f32::NAN];
    let fb = [0.1f32, 2.0, -1.0, 7.0];
    let pack = |v: [f32; 4]| {
        v.iter().enumerate().fold(0u128, |acc, (i, f)| {
            acc | (u128::from(f.to_bits()) << (32 * i))
        })
    };
    t.cpu.fpu.xmm[1] = pack(fa);
    t.cpu.fpu.xmm[2] = pack(fb);
    t.run(|a| {
        a.movaps(xmm3, xmm1).unwrap();
        a.mulps(xmm3, xmm2).unwrap();
        a.movaps(xmm4, xmm1).unwrap();
        a.cmpps(xmm4, xmm2, 1).unwrap(); // LT
        a.movmskps(eax, xmm4).unwrap();
        a.movaps(xmm5, xmm1).unwrap();
        a.shufps(xmm5, xmm2, 0x4e).unwrap();
        a.movaps(xmm6, xmm1).unwrap();
        a.haddps(xmm6, xmm2).unwrap();
        a.movaps(xmm7, xmm1).unwrap();
        a.dpps(xmm7, xmm2, 0x71).unwrap();
    })
    .unwrap();
    // SAFETY: SSE..SSE4.1 on the host.
    unsafe {
        let (va, vb) = (_mm_castsi128_ps(x(pack(fa))), _mm_castsi128_ps(x(pack(fb))));
        let c = |v: __m128| m128(_mm_castps_si128(v));
        assert_eq!(t.cpu.fpu.xmm[3], c(_mm_mul_ps(va, vb)));
        assert_eq!(t.cpu.fpu.xmm[4], c(_mm_cmplt_ps(va, vb)));
        assert_eq!(t.cpu.gpr[0], _mm_movemask_ps(_mm_cmplt_ps(va, vb)) as u64);
        assert_eq!(t.cpu.fpu.xmm[5], c(_mm_shuffle_ps::<0x4e>(va, vb)));
        assert_eq!(t.cpu.fpu.xmm[6], c(_mm_hadd_ps(va, vb)));
        assert_eq!(t.cpu.fpu.xmm[7], c(_mm_dp_ps::<0x71>(va, vb)));
    }
}

#[test]
fn mmx_forms_use_the_x87_registers() {
    let mut t = TestCpu::new();
    t.cpu.fpu.top = 3;
    t.cpu.gpr[0] = 0x0001_0002_0003_0004;
    t.cpu.gpr[1] = 0xffff_0001_7fff_8000;
    t.run(|a| {
        a.movq(mm0, rax).unwrap();
        a.movq(mm1, rcx).unwrap();
        a.paddsw(mm0, mm1).unwrap();
        a.pmovmskb(edx, mm1).unwrap();
    })
    .unwrap();
    assert_eq!(t.cpu.fpu.regs[0].mant, 0x0000_0003_7fff_8004);
    assert_eq!(t.cpu.fpu.regs[0].se, 0xffff);
    assert_eq!((t.cpu.fpu.top, t.cpu.fpu.ftw), (0, 0));
    assert_eq!(t.cpu.gpr[2], 0b1100_0110);
    t.cpu.fpu.top = 5;
    t.run(|a| a.emms().unwrap()).unwrap();
    assert_eq!((t.cpu.fpu.top, t.cpu.fpu.ftw), (0, 0xffff));
    t.cpu.cr0 |= x86::CR0_EM;
    assert_eq!(vector(t.run(|a| a.paddb(mm0, mm1).unwrap())), Some(x86::UD));
}

#[test]
fn string_compare_and_crc32() {
    let mut t = TestCpu::new();
    let s = |b: &[u8]| {
        let mut v = [0u8; 16];
        v[..b.len()].copy_from_slice(b);
        u128::from_le_bytes(v)
    };
    t.cpu.fpu.xmm[1] = s(b"lo");
    t.cpu.fpu.xmm[2] = s(b"hello world");
    t.cpu.gpr[3] = 0xffff_ffff;
    t.run(|a| {
        a.pcmpistri(xmm1, xmm2, 0x0c).unwrap();
        a.mov(rdx, 0x3938_3736_3534_3332u64).unwrap();
        a.crc32(rbx, rdx).unwrap();
    })
    .unwrap();
    assert_eq!(t.cpu.gpr[1], 3);
    assert!(t.cpu.flags.cf() && t.cpu.flags.zf() && t.cpu.flags.sf());
    // SAFETY: SSE4.2 on the host.
    let want = unsafe {
        let r = _mm_cmpistri::<0x0c>(x(s(b"lo")), x(s(b"hello world")));
        assert_eq!(r, 3);
        _mm_crc32_u64(0xffff_ffff, 0x3938_3736_3534_3332)
    };
    assert_eq!(t.cpu.gpr[3], want);
}

/// Every legacy-encoded instruction of the extensions this group claims
/// complete has a handler (iced's instruction table is the reference).
#[test]
fn every_instruction_of_the_extensions_is_handled() {
    use iced_x86::{Code, CpuidFeature as F, Instruction};
    let complete = [
        F::FPU,
        F::FPU387,
        F::CMOV,
        F::MMX,
        F::SSE,
        F::SSE2,
        F::SSE3,
        F::SSSE3,
        F::SSE4_1,
        F::SSE4_2,
        F::FXSR,
        F::XSAVE,
        F::XSAVEOPT,
    ];
    let mut missing = Vec::new();
    for c in Code::values() {
        let feats = c.cpuid_features();
        if feats.is_empty()
            || !feats.iter().all(|f| complete.contains(f))
            || feats == [F::CMOV]
            || format!("{:?}", c.mnemonic()).starts_with("Prefetch")
        {
            // CMOVcc and PREFETCH belong to the integer group.
            continue;
        }
        let mut ins = Instruction::default();
        ins.set_code(c);
        let claimed = crate::cpu::fpu::handler(&ins).is_some() || super::handler(&ins).is_some();
        if !claimed {
            missing.push(format!("{c:?}"));
        }
    }
    assert!(missing.is_empty(), "unhandled: {missing:?}");
}

#[test]
fn maskmovdqu_stores_selected_bytes() {
    let mut t = TestCpu::new();
    t.write(DATA + 0x100, &[0x55; 16]);
    t.cpu.gpr[7] = DATA + 0x100;
    t.cpu.fpu.xmm[1] = u128::from_le_bytes(*b"ABCDEFGHIJKLMNOP");
    t.cpu.fpu.xmm[2] = 0x80 | (0xff << (8 * 15)) | (0x7f << 8);
    t.run(|a| a.maskmovdqu(xmm1, xmm2).unwrap()).unwrap();
    let mut want = [0x55u8; 16];
    want[0] = b'A';
    want[15] = b'P';
    assert_eq!(t.read(DATA + 0x100, 16), want.to_vec());
}

#[test]
fn more_integer_and_float_ops_match_host() {
    let mut t = TestCpu::new();
    let fa = 0x4049_0fdb_c2f6_0000_7fc0_0001_3f80_0000u128; // pi, -123, qnan-ish, 1.0
    let fb = 0x3f00_0000_4120_0000_0000_0001_bf80_0000u128; // 0.5, 10, denormal, -1.0
    type Op = fn(&mut CodeAssembler) -> Result<(), IcedError>;
    // SAFETY (all below): SSE..SSE4.2 intrinsics on a host that has them.
    let cases: Vec<(Op, u128, u128, u128)> = unsafe {
        let f = |v: u128| _mm_castsi128_ps(x(v));
        let d = |v: u128| _mm_castsi128_pd(x(v));
        let fi = |v: __m128| m128(_mm_castps_si128(v));
        let dq = |v: __m128d| m128(_mm_castpd_si128(v));
        vec![
            (
                |a| a.packssdw(xmm1, xmm2),
                A,
                B,
                m128(_mm_packs_epi32(x(A), x(B))),
            ),
            (
                |a| a.phsubw(xmm1, xmm2),
                A,
                B,
                m128(_mm_hsub_epi16(x(A), x(B))),
            ),
            (
                |a| a.pshuflw(xmm1, xmm2, 0x93),
                A,
                B,
                m128(_mm_shufflelo_epi16::<0x93>(x(B))),
            ),
            (
                |a| a.punpcklbw(xmm1, xmm2),
                A,
                B,
                m128(_mm_unpacklo_epi8(x(A), x(B))),
            ),
            (
                |a| a.pslld(xmm1, xmm3),
                A,
                B,
                m128(_mm_sll_epi32(x(A), x(5))),
            ),
            (
                |a| a.psrlq(xmm1, xmm2),
                A,
                B,
                m128(_mm_srl_epi64(x(A), x(B))),
            ),
            (
                |a| a.pblendvb(xmm1, xmm2),
                A,
                B,
                m128(_mm_blendv_epi8(x(A), x(B), x(A ^ B))),
            ),
            (
                |a| a.insertps(xmm1, xmm2, 0x9a),
                fa,
                fb,
                fi(_mm_insert_ps::<0x9a>(f(fa), f(fb))),
            ),
            (
                |a| a.blendps(xmm1, xmm2, 0x5),
                fa,
                fb,
                fi(_mm_blend_ps::<5>(f(fa), f(fb))),
            ),
            (
                |a| a.mulps(xmm1, xmm2),
                fa,
                fb,
                fi(_mm_mul_ps(f(fa), f(fb))),
            ),
            (|a| a.sqrtps(xmm1, xmm2), fa, fb, fi(_mm_sqrt_ps(f(fb)))),
            (
                |a| a.minps(xmm1, xmm2),
                fa,
                fb,
                fi(_mm_min_ps(f(fa), f(fb))),
            ),
            (
                |a| a.maxss(xmm1, xmm2),
                fa,
                fb,
                fi(_mm_max_ss(f(fa), f(fb))),
            ),
            (
                |a| a.roundps(xmm1, xmm2, 0x9),
                fa,
                fb,
                fi(_mm_round_ps::<9>(f(fb))),
            ),
            (|a| a.cvtps2pd(xmm1, xmm2), fa, fb, dq(_mm_cvtps_pd(f(fb)))),
            (|a| a.cvtdq2ps(xmm1, xmm2), A, B, fi(_mm_cvtepi32_ps(x(B)))),
            (
                |a| a.cvttps2dq(xmm1, xmm2),
                fa,
                fa,
                m128(_mm_cvttps_epi32(f(fa))),
            ),
            (
                |a| a.addsubpd(xmm1, xmm2),
                fa,
                fb,
                dq(_mm_addsub_pd(d(fa), d(fb))),
            ),
            (
                |a| a.cmppd(xmm1, xmm2, 3),
                fa,
                fb,
                dq(_mm_cmpunord_pd(d(fa), d(fb))),
            ),
            (
                |a| a.unpckhps(xmm1, xmm2),
                fa,
                fb,
                fi(_mm_unpackhi_ps(f(fa), f(fb))),
            ),
            (
                |a| a.movsldup(xmm1, xmm2),
                fa,
                fb,
                fi(_mm_moveldup_ps(f(fb))),
            ),
            (
                |a| a.movhlps(xmm1, xmm2),
                fa,
                fb,
                fi(_mm_movehl_ps(f(fa), f(fb))),
            ),
            (
                |a| a.andnpd(xmm1, xmm2),
                fa,
                fb,
                dq(_mm_andnot_pd(d(fa), d(fb))),
            ),
        ]
    };
    for (i, (op, a, b, want)) in cases.into_iter().enumerate() {
        t.cpu.fpu.xmm[0] = A ^ B;
        t.cpu.fpu.xmm[1] = a;
        t.cpu.fpu.xmm[2] = b;
        t.cpu.fpu.xmm[3] = 5;
        t.run(|asm| op(asm).unwrap()).unwrap();
        assert_eq!(t.cpu.fpu.xmm[1], want, "case {i}");
    }
    // PCMPESTRM with a byte mask into XMM0, explicit lengths in EAX/EDX.
    t.cpu.fpu.xmm[1] = A;
    t.cpu.fpu.xmm[2] = B;
    t.cpu.gpr[0] = 9;
    t.cpu.gpr[2] = (-13i64) as u64;
    t.run(|a| a.pcmpestrm(xmm1, xmm2, 0x48).unwrap()).unwrap();
    // SAFETY: SSE4.2 on the host.
    let want = unsafe { m128(_mm_cmpestrm::<0x48>(x(A), 9, x(B), -13)) };
    assert_eq!(t.cpu.fpu.xmm[0], want);
}

#[test]
fn mmx_pack_shuffle_and_shift() {
    let mut t = TestCpu::new();
    t.cpu.gpr[0] = 0x0100_ff80_007f_8000;
    t.cpu.gpr[1] = 0x0004_0003_0002_0001;
    t.run(|a| {
        a.movq(mm2, rax).unwrap();
        a.movq(mm3, rcx).unwrap();
        a.packsswb(mm2, mm3).unwrap();
        a.pshufw(mm4, mm3, 0x1b).unwrap();
        a.psllq(mm3, 8).unwrap();
        a.movq(rdx, mm2).unwrap();
    })
    .unwrap();
    assert_eq!(t.cpu.gpr[2], 0x0403_0201_7f80_7f80);
    assert_eq!(t.cpu.fpu.regs[4].mant, 0x0001_0002_0003_0004);
    assert_eq!(t.cpu.fpu.regs[3].mant, 0x0400_0300_0200_0100);
}

#[test]
fn unmasked_simd_exceptions() {
    let mut t = TestCpu::new();
    // Exact tiny result with UE unmasked: #XM although nothing was rounded.
    let tiny = u128::from(f64::MIN_POSITIVE.to_bits());
    t.cpu.fpu.xmm[1] = tiny;
    t.cpu.fpu.xmm[2] = u128::from(0.5f64.to_bits());
    t.cpu.fpu.mxcsr = 0x1f80 & !(1 << 11);
    assert_eq!(
        vector(t.run(|a| a.mulsd(xmm1, xmm2).unwrap())),
        Some(x86::XM)
    );
    assert_eq!(t.cpu.fpu.xmm[1], tiny, "destination unchanged");
    assert_eq!(t.cpu.fpu.mxcsr & 0x3f, 0x10);
    // Masked, the same multiply is exact: no flags.
    t.cpu.fpu.mxcsr = 0x1f80;
    t.run(|a| a.mulsd(xmm1, xmm2).unwrap()).unwrap();
    assert_eq!(t.cpu.fpu.mxcsr & 0x3f, 0);
    // Unmasked invalid with CR4.OSXMMEXCPT clear: #UD, and no PE recorded.
    t.cpu.cr4 &= !x86::CR4_OSXMMEXCPT;
    t.cpu.fpu.mxcsr = 0x1f80 & !(1 << 7);
    t.cpu.fpu.xmm[1] = u128::from(f64::INFINITY.to_bits());
    t.cpu.fpu.xmm[2] = 0;
    assert_eq!(
        vector(t.run(|a| a.mulsd(xmm1, xmm2).unwrap())),
        Some(x86::UD)
    );
    assert_eq!(t.cpu.fpu.mxcsr & 0x3f, 1);
}
