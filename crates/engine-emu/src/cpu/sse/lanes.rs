//! Lane helpers for packed operations on 64-bit (MMX) and 128-bit (XMM)
//! vectors held in a `u128`.

/// Mask of `bits` bits (1..=64).
#[inline]
pub fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Lane `i` of `bits` bits, zero-extended.
#[inline]
pub fn get(v: u128, i: u32, bits: u32) -> u64 {
    let sh = i.wrapping_mul(bits);
    if sh >= 128 {
        return 0;
    }
    ((v >> sh) as u64) & mask(bits)
}

/// Lane `i` of `bits` bits, sign-extended.
#[inline]
pub fn gets(v: u128, i: u32, bits: u32) -> i64 {
    sx(get(v, i, bits), bits)
}

/// Sign-extend the low `bits` bits.
#[inline]
pub fn sx(v: u64, bits: u32) -> i64 {
    let sh = 64 - bits;
    ((v << sh) as i64) >> sh
}

/// Build a vector of `n` lanes of `bits` bits.
#[inline]
pub fn build(n: u32, bits: u32, mut f: impl FnMut(u32) -> u64) -> u128 {
    let mut r = 0u128;
    for i in 0..n {
        r |= u128::from(f(i) & mask(bits)) << (i * bits);
    }
    r
}

/// Lane-wise binary operation over a vector of `width` bits.
#[inline]
pub fn map2(a: u128, b: u128, bits: u32, width: u32, f: impl Fn(u64, u64) -> u64) -> u128 {
    build(width / bits, bits, |i| f(get(a, i, bits), get(b, i, bits)))
}

/// Lane-wise signed binary operation.
#[inline]
pub fn map2s(a: u128, b: u128, bits: u32, width: u32, f: impl Fn(i64, i64) -> i64) -> u128 {
    build(width / bits, bits, |i| {
        f(gets(a, i, bits), gets(b, i, bits)) as u64
    })
}

/// Signed saturation to `bits`.
#[inline]
pub fn sat_s(v: i64, bits: u32) -> u64 {
    let max = (1i64 << (bits - 1)) - 1;
    let min = -(1i64 << (bits - 1));
    (v.clamp(min, max) as u64) & mask(bits)
}

/// Unsigned saturation to `bits`.
#[inline]
pub fn sat_u(v: i64, bits: u32) -> u64 {
    v.clamp(0, mask(bits) as i64) as u64
}

/// All ones in `bits` when `c`.
#[inline]
pub fn ones(c: bool, bits: u32) -> u64 {
    if c {
        mask(bits)
    } else {
        0
    }
}

/// Bytes of a vector.
#[inline]
pub fn bytes(v: u128) -> [u8; 16] {
    v.to_le_bytes()
}
