//! SSE4.2 string and text instructions (PCMPESTRI, PCMPESTRM, PCMPISTRI,
//! PCMPISTRM, with every source format, aggregation, polarity and output
//! selection of imm8) and CRC32 (CRC-32C, Castagnoli polynomial).

use iced_x86::{Instruction, Mnemonic as M};

use super::lanes::*;
use crate::cpu::exec::Handler;
use crate::cpu::{Cpu, Res};

pub fn handler(ins: &Instruction) -> Option<Handler> {
    Some(match ins.mnemonic() {
        M::Pcmpestri
        | M::Pcmpestri64
        | M::Pcmpestrm
        | M::Pcmpestrm64
        | M::Pcmpistri
        | M::Pcmpistrm => pcmpstr,
        M::Crc32 => crc32,
        _ => return None,
    })
}

/// The outcome of a string compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrResult {
    /// IntRes2, one bit per element.
    pub res: u32,
    pub la: u32,
    pub lb: u32,
    pub n: u32,
}

/// Length of an implicit (zero-terminated) string of `n` elements.
fn implicit_len(v: u128, n: u32, bits: u32) -> u32 {
    (0..n).find(|&i| get(v, i, bits) == 0).unwrap_or(n)
}

/// Length from an explicit length register: |len| saturated to `n`.
fn explicit_len(len: i64, n: u32) -> u32 {
    len.unsigned_abs().min(u64::from(n)) as u32
}

/// IntRes2 for `imm` over `a` (first operand) and `b` (second).
pub fn compare(imm: u8, a: u128, b: u128, la: u32, lb: u32) -> StrResult {
    let words = imm & 1 != 0;
    let signed = imm & 2 != 0;
    let (n, bits) = if words { (8u32, 16u32) } else { (16, 8) };
    let (la, lb) = (la.min(n), lb.min(n));
    let el = |v: u128, i: u32| -> i64 {
        if signed {
            gets(v, i, bits)
        } else {
            get(v, i, bits) as i64
        }
    };
    let mut r1 = 0u32;
    for i in 0..n {
        let bit = match (imm >> 2) & 3 {
            // Equal any.
            0 => i < lb && (0..la).any(|j| el(a, j) == el(b, i)),
            // Ranges: pairs (a[j], a[j+1]) bound b[i].
            1 => {
                i < lb
                    && (0..n / 2).any(|p| {
                        let (lo, hi) = (2 * p, 2 * p + 1);
                        hi < la && el(a, lo) <= el(b, i) && el(b, i) <= el(a, hi)
                    })
            }
            // Equal each.
            2 => match (i < la, i < lb) {
                (false, false) => true,
                (true, true) => el(a, i) == el(b, i),
                _ => false,
            },
            // Equal ordered: the needle a starts at b[i].
            _ => (0..n - i).all(|k| {
                if k >= la {
                    true
                } else if i + k >= lb {
                    false
                } else {
                    el(a, k) == el(b, i + k)
                }
            }),
        };
        r1 |= (bit as u32) << i;
    }
    let all = (1u32 << n) - 1;
    let valid_b = (1u32 << lb) - 1;
    let res = match (imm >> 4) & 3 {
        1 => !r1 & all,
        3 => (r1 ^ valid_b) & all,
        _ => r1,
    };
    StrResult { res, la, lb, n }
}

fn pcmpstr(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.sse_check()?;
    let a = cpu.vread(ins, 0)?;
    let b = cpu.vread(ins, 1)?;
    let imm = ins.immediate8();
    let (n, bits) = if imm & 1 != 0 { (8, 16) } else { (16, 8) };
    let m = ins.mnemonic();
    let explicit = matches!(
        m,
        M::Pcmpestri | M::Pcmpestri64 | M::Pcmpestrm | M::Pcmpestrm64
    );
    let (la, lb) = if explicit {
        let wide = matches!(m, M::Pcmpestri64 | M::Pcmpestrm64);
        let rd = |v: u64| {
            if wide {
                v as i64
            } else {
                v as u32 as i32 as i64
            }
        };
        (
            explicit_len(rd(cpu.gpr[0]), n),
            explicit_len(rd(cpu.gpr[2]), n),
        )
    } else {
        (implicit_len(a, n, bits), implicit_len(b, n, bits))
    };
    let r = compare(imm, a, b, la, lb);
    let index_form = matches!(m, M::Pcmpestri | M::Pcmpestri64 | M::Pcmpistri);
    if index_form {
        let idx = if r.res == 0 {
            n
        } else if imm & 0x40 != 0 {
            31 - r.res.leading_zeros()
        } else {
            r.res.trailing_zeros()
        };
        cpu.gpr[1] = u64::from(idx);
    } else {
        cpu.fpu.xmm[0] = if imm & 0x40 != 0 {
            build(n, bits, |i| ones(r.res >> i & 1 != 0, bits))
        } else {
            u128::from(r.res)
        };
    }
    cpu.flags
        .set_arith(r.res != 0, false, false, r.lb < n, r.la < n, r.res & 1 != 0);
    Ok(())
}

/// CRC-32C of `len` bytes of `v`, continuing from `crc` (no inversion, as
/// the CRC32 instruction).
pub fn crc32c(mut crc: u32, v: u64, len: u32) -> u32 {
    for i in 0..len {
        crc ^= u32::from((v >> (8 * i)) as u8);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    crc
}

fn crc32(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let crc = cpu.read_op(ins, 0)? as u32;
    let v = cpu.read_op(ins, 1)?;
    let len = cpu.op_size(ins, 1);
    let r = crc32c(crc, v, len);
    cpu.write_op(ins, 0, u64::from(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &[u8]) -> u128 {
        let mut b = [0u8; 16];
        b[..t.len()].copy_from_slice(t);
        u128::from_le_bytes(b)
    }

    #[test]
    fn string_compare_modes() {
        // Equal any: which bytes of "hello world" are vowels.
        let r = compare(0x00, s(b"aeiou"), s(b"hello world"), 5, 11);
        assert_eq!(r.res, 0b000_1001_0010);
        // Ranges 'a'..'z' with negative polarity: the non-letters.
        let r = compare(0x04 | 0x10, s(b"az"), s(b"ab1c"), 2, 4);
        assert_eq!(r.res & 0xf, 0b0100);
        // Equal ordered: "lo" found at index 3 of "hello".
        let r = compare(0x0c, s(b"lo"), s(b"hello"), 2, 5);
        assert_eq!(r.res.trailing_zeros(), 3);
        // Equal each with masked negative polarity: first difference.
        let r = compare(0x38, s(b"abcd"), s(b"abxd"), 4, 4);
        assert_eq!(r.res, 0xfff4);
        assert_eq!(r.res.trailing_zeros(), 2);
    }

    #[test]
    fn crc32c_known_value() {
        // CRC-32C("123456789") = 0xe3069283 with the usual pre/post inversion.
        let mut c = !0u32;
        for &b in b"123456789" {
            c = crc32c(c, u64::from(b), 1);
        }
        assert_eq!(!c, 0xe306_9283);
    }
}
