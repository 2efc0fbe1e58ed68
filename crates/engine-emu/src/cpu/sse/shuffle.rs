//! Data rearrangement: pack/unpack, shuffles (PSHUF*, SHUFPS/PD, PSHUFB),
//! byte shifts (PSLLDQ/PSRLDQ, PALIGNR), blends, PMOVZX/PMOVSX, INSERTPS,
//! MPSADBW.

use iced_x86::{Instruction, Mnemonic as M, OpKind};

use super::lanes::*;
use crate::cpu::exec::Handler;
use crate::cpu::{Cpu, Res};

pub fn handler(ins: &Instruction) -> Option<Handler> {
    compute(ins.mnemonic(), 0, 0, 0, 128, 0, false)?;
    Some(shuffle)
}

fn shuffle(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let a = cpu.vread(ins, 0)?;
    let (b, imm) = if ins.op_count() >= 2 && ins.op_kind(1) != OpKind::Immediate8 {
        let b = cpu.vread(ins, 1)?;
        let imm = if ins.op_count() >= 3 && ins.op_kind(2) == OpKind::Immediate8 {
            ins.immediate8()
        } else {
            0
        };
        (b, imm)
    } else {
        (0, ins.immediate8())
    };
    let width = if super::has_mm(ins) { 64 } else { 128 };
    let mem_src = ins.op_count() >= 2 && ins.op_kind(1) == OpKind::Memory;
    let x0 = cpu.fpu.xmm[0];
    let r = compute(ins.mnemonic(), a, b, imm, width, x0, mem_src).unwrap_or(a);
    cpu.vwrite(ins, 0, r)
}

fn unpack(a: u128, b: u128, bits: u32, w: u32, high: bool) -> u128 {
    let n = w / bits;
    let base = if high { n / 2 } else { 0 };
    build(n, bits, |i| {
        let src = if i % 2 == 0 { a } else { b };
        get(src, base + i / 2, bits)
    })
}

fn pack(a: u128, b: u128, from: u32, w: u32, sat: impl Fn(i64) -> u64) -> u128 {
    let n = w / from;
    build(2 * n, from / 2, |i| {
        let (v, j) = if i < n { (a, i) } else { (b, i - n) };
        sat(gets(v, j, from))
    })
}

fn extend(b: u128, from: u32, to: u32, signed: bool) -> u128 {
    build(128 / to, to, |i| {
        if signed {
            gets(b, i, from) as u64
        } else {
            get(b, i, from)
        }
    })
}

fn blend(a: u128, b: u128, bits: u32, sel: impl Fn(u32) -> bool) -> u128 {
    build(128 / bits, bits, |i| {
        get(if sel(i) { b } else { a }, i, bits)
    })
}

/// The result of a rearranging operation, or None when `m` is not one.
/// `imm` is the immediate, `x0` the value of XMM0 (BLENDV*), `mem_src`
/// whether the source is memory (INSERTPS).
pub fn compute(m: M, a: u128, b: u128, imm: u8, w: u32, x0: u128, mem_src: bool) -> Option<u128> {
    let imm32 = u32::from(imm);
    let r = match m {
        M::Punpcklbw => unpack(a, b, 8, w, false),
        M::Punpcklwd => unpack(a, b, 16, w, false),
        M::Punpckldq | M::Unpcklps => unpack(a, b, 32, w, false),
        M::Punpcklqdq | M::Unpcklpd => unpack(a, b, 64, w, false),
        M::Punpckhbw => unpack(a, b, 8, w, true),
        M::Punpckhwd => unpack(a, b, 16, w, true),
        M::Punpckhdq | M::Unpckhps => unpack(a, b, 32, w, true),
        M::Punpckhqdq | M::Unpckhpd => unpack(a, b, 64, w, true),
        M::Packsswb => pack(a, b, 16, w, |v| sat_s(v, 8)),
        M::Packssdw => pack(a, b, 32, w, |v| sat_s(v, 16)),
        M::Packuswb => pack(a, b, 16, w, |v| sat_u(v, 8)),
        M::Packusdw => pack(a, b, 32, w, |v| sat_u(v, 16)),
        M::Pshufd => build(4, 32, |i| get(b, (imm32 >> (2 * i)) & 3, 32)),
        M::Pshufw => build(4, 16, |i| get(b, (imm32 >> (2 * i)) & 3, 16)),
        M::Pshuflw => {
            (b & !0xffff_ffff_ffff_ffffu128) | build(4, 16, |i| get(b, (imm32 >> (2 * i)) & 3, 16))
        }
        M::Pshufhw => {
            (b & 0xffff_ffff_ffff_ffffu128)
                | (build(4, 16, |i| get(b, 4 + ((imm32 >> (2 * i)) & 3), 16)) << 64)
        }
        M::Shufps => build(4, 32, |i| {
            let src = if i < 2 { a } else { b };
            get(src, (imm32 >> (2 * i)) & 3, 32)
        }),
        M::Shufpd => build(2, 64, |i| {
            let src = if i == 0 { a } else { b };
            get(src, (imm32 >> i) & 1, 64)
        }),
        M::Pshufb => {
            let n = w / 8;
            build(n, 8, |i| {
                let s = get(b, i, 8);
                if s & 0x80 != 0 {
                    0
                } else {
                    get(a, (s as u32) & (n - 1), 8)
                }
            })
        }
        M::Pslldq => {
            if imm > 15 {
                0
            } else {
                a << (8 * imm32)
            }
        }
        M::Psrldq => {
            if imm > 15 {
                0
            } else {
                a >> (8 * imm32)
            }
        }
        M::Palignr => {
            let n = w / 8;
            // The concatenation a:b (a high), shifted right by imm bytes.
            let bb = bytes(b);
            let ab = bytes(a);
            build(n, 8, |i| {
                let k = i + imm32;
                if k < n {
                    u64::from(bb[k as usize])
                } else if k < 2 * n {
                    u64::from(ab[(k - n) as usize])
                } else {
                    0
                }
            })
        }
        M::Pblendw => blend(a, b, 16, |i| imm32 >> i & 1 != 0),
        M::Blendps => blend(a, b, 32, |i| imm32 >> i & 1 != 0),
        M::Blendpd => blend(a, b, 64, |i| imm32 >> i & 1 != 0),
        M::Pblendvb => blend(a, b, 8, |i| get(x0, i, 8) & 0x80 != 0),
        M::Blendvps => blend(a, b, 32, |i| get(x0, i, 32) >> 31 != 0),
        M::Blendvpd => blend(a, b, 64, |i| get(x0, i, 64) >> 63 != 0),
        M::Pmovsxbw => extend(b, 8, 16, true),
        M::Pmovsxbd => extend(b, 8, 32, true),
        M::Pmovsxbq => extend(b, 8, 64, true),
        M::Pmovsxwd => extend(b, 16, 32, true),
        M::Pmovsxwq => extend(b, 16, 64, true),
        M::Pmovsxdq => extend(b, 32, 64, true),
        M::Pmovzxbw => extend(b, 8, 16, false),
        M::Pmovzxbd => extend(b, 8, 32, false),
        M::Pmovzxbq => extend(b, 8, 64, false),
        M::Pmovzxwd => extend(b, 16, 32, false),
        M::Pmovzxwq => extend(b, 16, 64, false),
        M::Pmovzxdq => extend(b, 32, 64, false),
        M::Insertps => {
            let v = if mem_src {
                get(b, 0, 32)
            } else {
                get(b, (imm32 >> 6) & 3, 32)
            };
            let dst = (imm32 >> 4) & 3;
            build(4, 32, |i| {
                if imm32 >> i & 1 != 0 {
                    0
                } else if i == dst {
                    v
                } else {
                    get(a, i, 32)
                }
            })
        }
        M::Mpsadbw => {
            let src = (imm32 & 3) * 4;
            let dst = ((imm32 >> 2) & 1) * 4;
            build(8, 16, |i| {
                (0..4)
                    .map(|j| get(a, dst + i + j, 8).abs_diff(get(b, src + j, 8)))
                    .sum()
            })
        }
        M::Movhlps => (a & !0xffff_ffff_ffff_ffffu128) | (b >> 64),
        M::Movlhps => (a & 0xffff_ffff_ffff_ffffu128) | (b << 64),
        M::Movddup => {
            let q = b & 0xffff_ffff_ffff_ffff;
            q | (q << 64)
        }
        M::Movshdup => build(4, 32, |i| get(b, i | 1, 32)),
        M::Movsldup => build(4, 32, |i| get(b, i & !1, 32)),
        _ => return None,
    };
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_pack_and_align() {
        // MMX PUNPCKLBW interleaves the low 4 bytes.
        assert_eq!(
            compute(M::Punpcklbw, 0x0403_0201, 0x0d0c_0b0a, 0, 64, 0, false),
            Some(0x0d04_0c03_0b02_0a01)
        );
        // PACKUSWB: negative -> 0, > 255 -> 255.
        let r = compute(M::Packuswb, 0x0100_ffff_0080_0001, 0, 0, 64, 0, false).unwrap();
        assert_eq!(r, 0x0000_0000_ff00_8001);
        // PALIGNR xmm by 4: low 12 bytes of b's top, then a's first 4.
        let r = compute(M::Palignr, 0xaa, u128::MAX, 4, 128, 0, false).unwrap();
        assert_eq!(r, (0xaa << 96) | (u128::MAX >> 32));
        assert_eq!(compute(M::Pslldq, 1, 0, 16, 128, 0, false), Some(0));
    }
}
