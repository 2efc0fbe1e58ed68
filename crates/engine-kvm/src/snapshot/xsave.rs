//! The XSAVE area of KVM_GET/SET_XSAVE to and from the neutral x87/SSE
//! state (`Fpu`) and the AVX upper halves (`VcpuState::ymm_hi`). The legacy
//! area is FXSAVE's 64-bit layout; YMM_Hi128 is the standard-format
//! component 2 at byte 576.

use kite_hypervisor::Fpu;
use kvm_bindings::kvm_xsave;

const XSTATE_BV: usize = 512;
const YMM_HI: usize = 576;
/// XSTATE_BV bits: x87, SSE, AVX.
const X87: u64 = 1;
const SSE: u64 = 2;
const AVX: u64 = 4;

fn bytes(x: &kvm_xsave) -> [u8; 4096] {
    let mut b = [0u8; 4096];
    for (chunk, w) in b.chunks_exact_mut(4).zip(x.region.iter()) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    b
}

fn store(x: &mut kvm_xsave, b: &[u8; 4096]) {
    for (w, chunk) in x.region.iter_mut().zip(b.chunks_exact(4)) {
        *w = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// The x87/SSE state and, if the area holds AVX state, the YMM upper halves.
pub fn fpu_from_xsave(x: &kvm_xsave) -> (Fpu, Option<[[u8; 16]; 16]>) {
    let b = bytes(x);
    let bv = u64_at(&b, XSTATE_BV);
    let mut f = Fpu {
        fcw: u16_at(&b, 0),
        fsw: u16_at(&b, 2),
        ftwx: b[4],
        last_opcode: u16_at(&b, 6),
        last_ip: u64_at(&b, 8),
        last_dp: u64_at(&b, 16),
        mxcsr: u32::from_le_bytes([b[24], b[25], b[26], b[27]]),
        ..Default::default()
    };
    if bv & X87 == 0 {
        // x87 in its initial state (XSAVE leaves the bytes stale).
        f = Fpu {
            mxcsr: f.mxcsr,
            ..Default::default()
        };
    } else {
        for (i, st) in f.fpr.iter_mut().enumerate() {
            st[..10].copy_from_slice(&b[32 + 16 * i..42 + 16 * i]);
        }
    }
    if bv & SSE != 0 {
        for (i, xmm) in f.xmm.iter_mut().enumerate() {
            xmm.copy_from_slice(&b[160 + 16 * i..176 + 16 * i]);
        }
    }
    let ymm = (bv & AVX != 0).then(|| {
        let mut y = [[0u8; 16]; 16];
        for (i, h) in y.iter_mut().enumerate() {
            h.copy_from_slice(&b[YMM_HI + 16 * i..YMM_HI + 16 * (i + 1)]);
        }
        y
    });
    (f, ymm)
}

/// `f` (and `ymm`, when the guest may use AVX: `avx`) over `base` (the
/// area KVM_GET_XSAVE gave, so other components keep KVM's values).
pub fn fpu_to_xsave(
    f: &Fpu,
    ymm: Option<&[[u8; 16]; 16]>,
    avx: bool,
    base: &kvm_xsave,
) -> kvm_xsave {
    let mut b = bytes(base);
    b[0..2].copy_from_slice(&f.fcw.to_le_bytes());
    b[2..4].copy_from_slice(&f.fsw.to_le_bytes());
    b[4] = f.ftwx;
    b[5] = 0;
    b[6..8].copy_from_slice(&f.last_opcode.to_le_bytes());
    b[8..16].copy_from_slice(&f.last_ip.to_le_bytes());
    b[16..24].copy_from_slice(&f.last_dp.to_le_bytes());
    b[24..28].copy_from_slice(&f.mxcsr.to_le_bytes());
    for (i, st) in f.fpr.iter().enumerate() {
        b[32 + 16 * i..42 + 16 * i].copy_from_slice(&st[..10]);
        b[42 + 16 * i..48 + 16 * i].fill(0);
    }
    for (i, xmm) in f.xmm.iter().enumerate() {
        b[160 + 16 * i..176 + 16 * i].copy_from_slice(xmm);
    }
    let mut bv = u64_at(&b, XSTATE_BV) | X87 | SSE;
    if avx {
        let zero = [[0u8; 16]; 16];
        let y = ymm.unwrap_or(&zero);
        for (i, h) in y.iter().enumerate() {
            b[YMM_HI + 16 * i..YMM_HI + 16 * (i + 1)].copy_from_slice(h);
        }
        bv |= AVX;
    }
    b[XSTATE_BV..XSTATE_BV + 8].copy_from_slice(&bv.to_le_bytes());
    let mut out = kvm_xsave {
        region: base.region,
        ..Default::default()
    };
    store(&mut out, &b);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> kvm_xsave {
        kvm_xsave {
            region: [0; 1024],
            ..Default::default()
        }
    }

    #[test]
    fn xsave_area_round_trips() {
        let mut f = Fpu {
            fcw: 0x27f,
            fsw: 0x3800,
            ftwx: 0x81,
            last_opcode: 0x1de,
            last_ip: 0x8000,
            last_dp: 0x9000,
            mxcsr: 0x1fa0,
            ..Default::default()
        };
        f.fpr[0][..10].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f]);
        f.fpr[7][..10].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        for (i, x) in f.xmm.iter_mut().enumerate() {
            *x = [i as u8 + 1; 16];
        }
        let ymm: [[u8; 16]; 16] = std::array::from_fn(|i| [0x80 | i as u8; 16]);
        let x = fpu_to_xsave(&f, Some(&ymm), true, &empty());
        assert_eq!(fpu_from_xsave(&x), (f, Some(ymm)));
        // Without AVX, no upper halves are claimed.
        let x = fpu_to_xsave(&f, None, false, &empty());
        assert_eq!(fpu_from_xsave(&x), (f, None));
    }
}
