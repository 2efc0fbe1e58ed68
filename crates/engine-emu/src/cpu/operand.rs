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
    #[inline]
    pub fn reg_read(&self, r: Register) -> u64 {
        let n = r as u32;
        if r.is_gpr() {
            let num = r.number();
            match r.size() {
                8 => self.gpr[num],
                4 => self.gpr[num] & 0xffff_ffff,
                2 => self.gpr[num] & 0xffff,
                _ => {
                    // 8-bit: AH CH DH BH are the high bytes of RAX..RBX.
                    if (Register::AH as u32..=Register::BH as u32).contains(&n) {
                        (self.gpr[num - 4] >> 8) & 0xff
                    } else {
                        self.gpr[r.full_register().number()] & 0xff
                    }
                }
            }
        } else if let Some(s) = Seg::from_iced(r) {
            u64::from(self.seg[s as usize].selector)
        } else {
            0
        }
    }

    /// Write a GPR of any width with x86 semantics: 32-bit writes zero the
    /// upper half, 8- and 16-bit writes keep the rest.
    #[inline]
    pub fn reg_write(&mut self, r: Register, v: u64) {
        let n = r as u32;
        let num = r.number();
        match r.size() {
            8 => self.gpr[num] = v,
            4 => self.gpr[num] = v & 0xffff_ffff,
            2 => self.gpr[num] = (self.gpr[num] & !0xffff) | (v & 0xffff),
            _ => {
                if (Register::AH as u32..=Register::BH as u32).contains(&n) {
                    let g = &mut self.gpr[num - 4];
                    *g = (*g & !0xff00) | ((v & 0xff) << 8);
                } else {
                    let g = &mut self.gpr[r.full_register().number()];
                    *g = (*g & !0xff) | (v & 0xff);
                }
            }
        }
    }

    /// The effective address (segment offset) of the memory operand.
    #[inline]
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
        let mut size = 0;
        if base != Register::None {
            a = a.wrapping_add(self.reg_read(base));
            size = base.size();
        }
        if index != Register::None {
            a = a.wrapping_add(self.reg_read(index) << ins.memory_index_scale().trailing_zeros());
            size = index.size();
        }
        match size {
            2 => a & 0xffff,
            4 => a & 0xffff_ffff,
            0 if self.code_bits != 64 => a & 0xffff_ffff,
            _ => a,
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
