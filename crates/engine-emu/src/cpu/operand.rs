//! Reading and writing the operands of a decoded (iced-x86) instruction:
//! registers of every width, immediates, and memory through the effective
//! address and segment.
//!
//! Decoded blocks are keyed by guest-physical address, so an instruction may
//! run at another linear address than it was decoded at: RIP-relative
//! addresses and branch targets are rebased on `next_rip` here.

use iced_x86::{Instruction, OpKind, Register};

use super::{Cpu, Res, Seg};

impl Cpu {
    /// Read a register of any GPR width, a segment selector, or CR/DR.
    ///
    /// iced-x86 numbers the GPRs in contiguous runs (AL..R15L, AX..R15W,
    /// EAX..R15D, RAX..R15), so the register is found by range arithmetic
    /// instead of iced's per-register tables.
    #[inline]
    pub fn reg_read(&self, r: Register) -> u64 {
        let n = r as usize;
        const AL: usize = Register::AL as usize;
        const AH: usize = Register::AH as usize;
        const SPL: usize = Register::SPL as usize;
        const AX: usize = Register::AX as usize;
        const EAX: usize = Register::EAX as usize;
        const RAX: usize = Register::RAX as usize;
        if n >= RAX {
            if n < RAX + 16 {
                return self.gpr[n - RAX];
            }
            return match Seg::from_iced(r) {
                Some(s) => u64::from(self.seg[s as usize].selector),
                None => 0,
            };
        }
        if n >= EAX {
            return self.gpr[n - EAX] & 0xffff_ffff;
        }
        if n >= AX {
            return self.gpr[n - AX] & 0xffff;
        }
        if n >= SPL {
            return self.gpr[n - AL - 4] & 0xff;
        }
        if n >= AH {
            return (self.gpr[n - AH] >> 8) & 0xff;
        }
        if n >= AL {
            return self.gpr[n - AL] & 0xff;
        }
        0
    }

    /// Write a GPR of any width with x86 semantics: 32-bit writes zero the
    /// upper half, 8- and 16-bit writes keep the rest. Other registers are
    /// ignored (handlers only pass GPRs).
    #[inline]
    pub fn reg_write(&mut self, r: Register, v: u64) {
        let n = r as usize;
        const AL: usize = Register::AL as usize;
        const AH: usize = Register::AH as usize;
        const SPL: usize = Register::SPL as usize;
        const AX: usize = Register::AX as usize;
        const EAX: usize = Register::EAX as usize;
        const RAX: usize = Register::RAX as usize;
        if n >= RAX {
            if n < RAX + 16 {
                self.gpr[n - RAX] = v;
            }
        } else if n >= EAX {
            self.gpr[n - EAX] = v & 0xffff_ffff;
        } else if n >= AX {
            let g = &mut self.gpr[n - AX];
            *g = (*g & !0xffff) | (v & 0xffff);
        } else if n >= SPL {
            let g = &mut self.gpr[n - AL - 4];
            *g = (*g & !0xff) | (v & 0xff);
        } else if n >= AH {
            let g = &mut self.gpr[n - AH];
            *g = (*g & !0xff00) | ((v & 0xff) << 8);
        } else if n >= AL {
            let g = &mut self.gpr[n - AL];
            *g = (*g & !0xff) | (v & 0xff);
        }
    }

    /// The effective address (segment offset) of the memory operand.
    #[inline(always)]
    pub fn ea(&self, ins: &Instruction) -> u64 {
        let base = ins.memory_base();
        if base == Register::RIP {
            return self
                .next_rip
                .wrapping_add(ins.memory_displacement64().wrapping_sub(ins.next_ip()));
        }
        if base == Register::EIP {
            return self
                .next_rip
                .wrapping_add(ins.memory_displacement64().wrapping_sub(ins.next_ip()))
                & 0xffff_ffff;
        }
        let index = ins.memory_index();
        let mut a = ins.memory_displacement64();
        // The address size follows the base/index register width (GPRs of
        // 16, 32 or 64 bits; see `reg_read` for the numbering).
        let mut size_reg = Register::None;
        if base != Register::None {
            a = a.wrapping_add(self.reg_read(base));
            size_reg = base;
        }
        if index != Register::None {
            a = a.wrapping_add(self.reg_read(index) << ins.memory_index_scale().trailing_zeros());
            size_reg = index;
        }
        let n = size_reg as usize;
        if n >= Register::RAX as usize {
            a
        } else if n >= Register::EAX as usize {
            a & 0xffff_ffff
        } else if n >= Register::AX as usize {
            a & 0xffff
        } else if self.code_bits != 64 {
            a & 0xffff_ffff
        } else {
            a
        }
    }

    /// The segment of the memory operand (overrides applied by the decoder).
    #[inline]
    pub fn mem_seg(&self, ins: &Instruction) -> Seg {
        Seg::from_iced(ins.memory_segment()).unwrap_or(Seg::Ds)
    }

    /// Size in bytes of operand `i`.
    #[inline]
    pub fn op_size(&self, ins: &Instruction, i: u32) -> u32 {
        match ins.op_kind(i) {
            OpKind::Register => ins.op_register(i).size() as u32,
            OpKind::Memory => ins.memory_size().size() as u32,
            OpKind::Immediate8 => 1,
            OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
            OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
            _ => 8,
        }
    }

    /// Read operand `i` (register, immediate or memory), zero-extended.
    #[inline]
    pub fn read_op(&mut self, ins: &Instruction, i: u32) -> Res<u64> {
        match ins.op_kind(i) {
            OpKind::Register => Ok(self.reg_read(ins.op_register(i))),
            OpKind::Memory => {
                let size = ins.memory_size().size() as u32;
                let off = self.ea(ins);
                self.read_mem(self.mem_seg(ins), off, size)
            }
            _ => Ok(ins.immediate(i)),
        }
    }

    /// Write operand `i` (register or memory) with `size` taken from it.
    #[inline]
    pub fn write_op(&mut self, ins: &Instruction, i: u32, v: u64) -> Res {
        match ins.op_kind(i) {
            OpKind::Register => {
                self.reg_write(ins.op_register(i), v);
                Ok(())
            }
            _ => {
                let size = ins.memory_size().size() as u32;
                let off = self.ea(ins);
                self.write_mem(self.mem_seg(ins), off, size, v)
            }
        }
    }

    /// The target of a near branch, rebased on where the instruction runs and
    /// wrapped to the operand size.
    #[inline]
    pub fn branch_target(&self, ins: &Instruction) -> u64 {
        let t = self
            .next_rip
            .wrapping_add(ins.near_branch_target().wrapping_sub(ins.next_ip()));
        match ins.op_kind(0) {
            OpKind::NearBranch16 => t & 0xffff,
            OpKind::NearBranch32 => t & 0xffff_ffff,
            _ => t,
        }
    }
}
