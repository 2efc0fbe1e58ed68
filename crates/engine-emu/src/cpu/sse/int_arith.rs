//! Packed integer arithmetic, logic, compares and shifts (MMX, SSE2, SSSE3,
//! SSE4.1, SSE4.2), in both MMX (64-bit) and XMM (128-bit) forms, plus the
//! bitwise float logic (ANDPS...) which is the same operation.

use iced_x86::{Instruction, Mnemonic as M};

use super::lanes::*;
use crate::cpu::exec::Handler;
use crate::cpu::{Cpu, Res};

pub fn handler(ins: &Instruction) -> Option<Handler> {
    compute(ins.mnemonic(), 0, 0, 128)?;
    Some(binop)
}

/// `dst = op(dst, src)` for a packed integer operation.
fn binop(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let a = cpu.vread(ins, 0)?;
    let b = cpu.vread(ins, 1)?;
    let width = if super::has_mm(ins) { 64 } else { 128 };
    let r = compute(ins.mnemonic(), a, b, width).unwrap_or(a);
    cpu.vwrite(ins, 0, r)
}

/// The count of a shift by register: the low 64 bits (the rest is ignored).
fn shift_count(b: u128) -> u64 {
    b as u64
}

fn shl(a: u128, b: u128, bits: u32, width: u32) -> u128 {
    let c = shift_count(b);
    if c >= u64::from(bits) {
        return 0;
    }
    map2(a, 0, bits, width, |x, _| x << c)
}

fn shr(a: u128, b: u128, bits: u32, width: u32) -> u128 {
    let c = shift_count(b);
    if c >= u64::from(bits) {
        return 0;
    }
    map2(a, 0, bits, width, |x, _| x >> c)
}

fn sar(a: u128, b: u128, bits: u32, width: u32) -> u128 {
    let c = shift_count(b).min(u64::from(bits) - 1);
    map2s(a, 0, bits, width, |x, _| x >> c)
}

/// Horizontal operation: the low half of the result from pairs of `a`, the
/// high half from pairs of `b`.
fn horiz(a: u128, b: u128, bits: u32, width: u32, f: impl Fn(i64, i64) -> i64) -> u128 {
    let n = width / bits;
    let half = n / 2;
    build(n, bits, |i| {
        let (v, j) = if i < half { (a, i) } else { (b, i - half) };
        f(gets(v, 2 * j, bits), gets(v, 2 * j + 1, bits)) as u64
    })
}

/// The result of a two-operand packed integer operation, or None when `m`
/// is not one.
pub fn compute(m: M, a: u128, b: u128, w: u32) -> Option<u128> {
    let r = match m {
        M::Paddb => map2(a, b, 8, w, u64::wrapping_add),
        M::Paddw => map2(a, b, 16, w, u64::wrapping_add),
        M::Paddd => map2(a, b, 32, w, u64::wrapping_add),
        M::Paddq => map2(a, b, 64, w, u64::wrapping_add),
        M::Psubb => map2(a, b, 8, w, u64::wrapping_sub),
        M::Psubw => map2(a, b, 16, w, u64::wrapping_sub),
        M::Psubd => map2(a, b, 32, w, u64::wrapping_sub),
        M::Psubq => map2(a, b, 64, w, u64::wrapping_sub),
        M::Paddsb => map2s(a, b, 8, w, |x, y| sat_s(x + y, 8) as i64),
        M::Paddsw => map2s(a, b, 16, w, |x, y| sat_s(x + y, 16) as i64),
        M::Psubsb => map2s(a, b, 8, w, |x, y| sat_s(x - y, 8) as i64),
        M::Psubsw => map2s(a, b, 16, w, |x, y| sat_s(x - y, 16) as i64),
        M::Paddusb => map2(a, b, 8, w, |x, y| sat_u((x + y) as i64, 8)),
        M::Paddusw => map2(a, b, 16, w, |x, y| sat_u((x + y) as i64, 16)),
        M::Psubusb => map2(a, b, 8, w, |x, y| sat_u(x as i64 - y as i64, 8)),
        M::Psubusw => map2(a, b, 16, w, |x, y| sat_u(x as i64 - y as i64, 16)),
        M::Pmullw => map2(a, b, 16, w, u64::wrapping_mul),
        M::Pmulld => map2(a, b, 32, w, u64::wrapping_mul),
        M::Pmulhw => map2s(a, b, 16, w, |x, y| (x * y) >> 16),
        M::Pmulhuw => map2(a, b, 16, w, |x, y| (x * y) >> 16),
        M::Pmulhrsw => map2s(a, b, 16, w, |x, y| (((x * y) >> 14) + 1) >> 1),
        M::Pmuludq => map2(a, b, 64, w, |x, y| (x & 0xffff_ffff) * (y & 0xffff_ffff)),
        M::Pmuldq => map2(a, b, 64, w, |x, y| {
            (sx(x, 32).wrapping_mul(sx(y, 32))) as u64
        }),
        M::Pmaddwd => build(w / 32, 32, |i| {
            let p0 = gets(a, 2 * i, 16) * gets(b, 2 * i, 16);
            let p1 = gets(a, 2 * i + 1, 16) * gets(b, 2 * i + 1, 16);
            (p0 + p1) as u64
        }),
        M::Pmaddubsw => build(w / 16, 16, |i| {
            let p0 = get(a, 2 * i, 8) as i64 * gets(b, 2 * i, 8);
            let p1 = get(a, 2 * i + 1, 8) as i64 * gets(b, 2 * i + 1, 8);
            sat_s(p0 + p1, 16)
        }),
        M::Pavgb => map2(a, b, 8, w, |x, y| (x + y + 1) >> 1),
        M::Pavgw => map2(a, b, 16, w, |x, y| (x + y + 1) >> 1),
        M::Psadbw => build(w / 64, 64, |q| {
            (0..8)
                .map(|j| get(a, q * 8 + j, 8).abs_diff(get(b, q * 8 + j, 8)))
                .sum()
        }),
        M::Pminub => map2(a, b, 8, w, u64::min),
        M::Pmaxub => map2(a, b, 8, w, u64::max),
        M::Pminuw => map2(a, b, 16, w, u64::min),
        M::Pmaxuw => map2(a, b, 16, w, u64::max),
        M::Pminud => map2(a, b, 32, w, u64::min),
        M::Pmaxud => map2(a, b, 32, w, u64::max),
        M::Pminsb => map2s(a, b, 8, w, i64::min),
        M::Pmaxsb => map2s(a, b, 8, w, i64::max),
        M::Pminsw => map2s(a, b, 16, w, i64::min),
        M::Pmaxsw => map2s(a, b, 16, w, i64::max),
        M::Pminsd => map2s(a, b, 32, w, i64::min),
        M::Pmaxsd => map2s(a, b, 32, w, i64::max),
        M::Pcmpeqb => map2(a, b, 8, w, |x, y| ones(x == y, 8)),
        M::Pcmpeqw => map2(a, b, 16, w, |x, y| ones(x == y, 16)),
        M::Pcmpeqd => map2(a, b, 32, w, |x, y| ones(x == y, 32)),
        M::Pcmpeqq => map2(a, b, 64, w, |x, y| ones(x == y, 64)),
        M::Pcmpgtb => map2s(a, b, 8, w, |x, y| -((x > y) as i64)),
        M::Pcmpgtw => map2s(a, b, 16, w, |x, y| -((x > y) as i64)),
        M::Pcmpgtd => map2s(a, b, 32, w, |x, y| -((x > y) as i64)),
        M::Pcmpgtq => map2s(a, b, 64, w, |x, y| -((x > y) as i64)),
        M::Pand | M::Andps | M::Andpd => a & b,
        M::Pandn | M::Andnps | M::Andnpd => !a & b,
        M::Por | M::Orps | M::Orpd => a | b,
        M::Pxor | M::Xorps | M::Xorpd => a ^ b,
        M::Psllw => shl(a, b, 16, w),
        M::Pslld => shl(a, b, 32, w),
        M::Psllq => shl(a, b, 64, w),
        M::Psrlw => shr(a, b, 16, w),
        M::Psrld => shr(a, b, 32, w),
        M::Psrlq => shr(a, b, 64, w),
        M::Psraw => sar(a, b, 16, w),
        M::Psrad => sar(a, b, 32, w),
        M::Pabsb => map2s(b, 0, 8, w, |x, _| x.abs()),
        M::Pabsw => map2s(b, 0, 16, w, |x, _| x.abs()),
        M::Pabsd => map2s(b, 0, 32, w, |x, _| x.abs()),
        M::Psignb => map2s(a, b, 8, w, |x, y| x * y.signum()),
        M::Psignw => map2s(a, b, 16, w, |x, y| x * y.signum()),
        M::Psignd => map2s(a, b, 32, w, |x, y| x * y.signum()),
        M::Phaddw => horiz(a, b, 16, w, |x, y| x + y),
        M::Phaddd => horiz(a, b, 32, w, |x, y| x + y),
        M::Phaddsw => horiz(a, b, 16, w, |x, y| sat_s(x + y, 16) as i64),
        M::Phsubw => horiz(a, b, 16, w, |x, y| x - y),
        M::Phsubd => horiz(a, b, 32, w, |x, y| x - y),
        M::Phsubsw => horiz(a, b, 16, w, |x, y| sat_s(x - y, 16) as i64),
        M::Phminposuw => {
            let (idx, min) = (0..8u32)
                .map(|i| (i, get(b, i, 16)))
                .min_by_key(|&(i, v)| (v, i))
                .unwrap_or((0, 0));
            u128::from(min) | (u128::from(idx) << 16)
        }
        _ => return None,
    };
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturating_and_multiply_lanes() {
        let a = 0x7ff0_8000_0001_ffffu128;
        let b = 0x0020_8000_0001_0001u128;
        // PADDSW: 0x7ff0+0x20 saturates, 0x8000+0x8000 saturates negative.
        assert_eq!(compute(M::Paddsw, a, b, 64), Some(0x7fff_8000_0002_0000));
        // PMADDWD of (-32768, -32768) pairs wraps to 0x8000_0000.
        let m = compute(M::Pmaddwd, 0x8000_8000, 0x8000_8000, 128).unwrap();
        assert_eq!(m as u32, 0x8000_0000);
        // PSRAW by more than 15 fills with the sign.
        assert_eq!(compute(M::Psraw, 0x8000, 99, 64), Some(0xffff));
        assert_eq!(compute(M::Psllq, 1, 64, 128), Some(0));
        assert_eq!(
            compute(
                M::Phminposuw,
                0,
                (u128::MAX << 64) | 0x0005_0003_0007_0004,
                128
            ),
            Some(0x0000_0003 | (2 << 16))
        );
    }
}
