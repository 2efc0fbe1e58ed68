//! x87 FPU and MMX: state and instructions.

use iced_x86::Instruction;

use super::exec::Handler;

/// An 80-bit extended-precision register, raw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct F80 {
    /// Significand with the explicit integer bit (bit 63).
    pub mant: u64,
    /// Sign (bit 15) and biased exponent (bits 14:0).
    pub se: u16,
}

/// x87, MMX and SSE register state (the FXSAVE image's contents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FpuState {
    /// Physical registers R0..R7 (ST(i) = R[(top + i) & 7]); MMX aliases the mantissas.
    pub regs: [F80; 8],
    pub top: u8,
    pub fcw: u16,
    /// Status word without TOP (bits 13:11 come from `top`).
    pub fsw: u16,
    /// Full tag word: 2 bits per physical register (0 valid, 1 zero, 2 special, 3 empty).
    pub ftw: u16,
    pub fop: u16,
    pub fip: u64,
    pub fcs: u16,
    pub fdp: u64,
    pub fds: u16,
    pub xmm: [u128; 16],
    pub mxcsr: u32,
}

impl Default for FpuState {
    fn default() -> Self {
        FpuState {
            regs: [F80::default(); 8],
            top: 0,
            fcw: 0x37f,
            fsw: 0,
            ftw: 0xffff,
            fop: 0,
            fip: 0,
            fcs: 0,
            fdp: 0,
            fds: 0,
            xmm: [0; 16],
            mxcsr: 0x1f80,
        }
    }
}

impl FpuState {
    /// The status word with TOP.
    pub fn status_word(&self) -> u16 {
        (self.fsw & !0x3800) | (u16::from(self.top & 7) << 11)
    }

    /// The abridged (FXSAVE) tag byte: bit i set when R[i] is not empty.
    pub fn abridged_tags(&self) -> u8 {
        (0..8).fold(0u8, |acc, i| {
            if (self.ftw >> (2 * i)) & 3 != 3 {
                acc | (1 << i)
            } else {
                acc
            }
        })
    }

    /// Rebuild the full tag word from an abridged one and the register contents.
    pub fn set_abridged_tags(&mut self, tags: u8) {
        let mut ftw = 0u16;
        for i in 0..8 {
            let t = if tags & (1 << i) == 0 {
                3
            } else {
                let r = self.regs[i];
                let exp = r.se & 0x7fff;
                if exp == 0x7fff {
                    2
                } else if exp == 0 {
                    if r.mant == 0 {
                        1
                    } else {
                        2
                    }
                } else if r.mant >> 63 == 0 {
                    2
                } else {
                    0
                }
            };
            ftw |= t << (2 * i);
        }
        self.ftw = ftw;
    }

    pub fn to_api(&self) -> kite_hypervisor::Fpu {
        let mut f = kite_hypervisor::Fpu::default();
        for i in 0..8 {
            // kvm_fpu.fpr holds ST(i) in stack order.
            let r = self.regs[(usize::from(self.top) + i) & 7];
            f.fpr[i][..8].copy_from_slice(&r.mant.to_le_bytes());
            f.fpr[i][8..10].copy_from_slice(&r.se.to_le_bytes());
        }
        f.fcw = self.fcw;
        f.fsw = self.status_word();
        f.ftwx = self.abridged_tags();
        f.last_opcode = self.fop;
        f.last_ip = self.fip;
        f.last_dp = self.fdp;
        for i in 0..16 {
            f.xmm[i] = self.xmm[i].to_le_bytes();
        }
        f.mxcsr = self.mxcsr;
        f
    }

    pub fn from_api(&mut self, f: &kite_hypervisor::Fpu) {
        self.top = ((f.fsw >> 11) & 7) as u8;
        for i in 0..8 {
            let mut m = [0u8; 8];
            m.copy_from_slice(&f.fpr[i][..8]);
            let se = u16::from_le_bytes([f.fpr[i][8], f.fpr[i][9]]);
            self.regs[(usize::from(self.top) + i) & 7] = F80 {
                mant: u64::from_le_bytes(m),
                se,
            };
        }
        self.fcw = f.fcw;
        self.fsw = f.fsw & !0x3800;
        self.set_abridged_tags(f.ftwx);
        self.fop = f.last_opcode;
        self.fip = f.last_ip;
        self.fdp = f.last_dp;
        for i in 0..16 {
            self.xmm[i] = u128::from_le_bytes(f.xmm[i]);
        }
        self.mxcsr = f.mxcsr;
    }
}

/// The handler for an x87/MMX instruction, if this group implements it.
pub fn handler(_ins: &Instruction) -> Option<Handler> {
    None
}
