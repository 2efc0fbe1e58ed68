//! Control and debug registers: MOV to/from CR0/CR2/CR3/CR4/CR8 and DR0-7,
//! LMSW, SMSW, CLTS; the mode transitions they make (protected mode, paging,
//! long-mode activation with EFER.LME -> LMA), TLB flushes, INVLPG, and the
//! cache-control no-ops INVD/WBINVD.

use iced_x86::{Instruction, OpKind, Register};
use kite_hypervisor::x86::{self, *};

use super::super::{gp0, ud, Cpu, Mode, Res, Seg};
use crate::mmu::page_walk::PHYS_BITS;

/// CR0 bits that exist (the rest of bits 31:0 are ignored on write).
const CR0_VALID: u64 = CR0_PE
    | CR0_MP
    | CR0_EM
    | CR0_TS
    | CR0_ET
    | CR0_NE
    | CR0_WP
    | CR0_AM
    | CR0_NW
    | CR0_CD
    | CR0_PG;

/// Privileged instructions: CPL 0 only (VM86 runs at CPL 3).
#[inline]
pub(super) fn require_cpl0(cpu: &Cpu) -> Res {
    if cpu.cpl != 0 {
        return Err(gp0());
    }
    Ok(())
}

impl Cpu {
    /// The CR4 bits this CPU accepts, from what CPUID advertises.
    pub fn cr4_valid_bits(&self) -> u64 {
        let mut v = CR4_TSD
            | CR4_DE
            | CR4_PSE
            | CR4_PAE
            | CR4_MCE
            | CR4_PGE
            | CR4_PCE
            | CR4_OSFXSR
            | CR4_OSXMMEXCPT;
        let l1 = self.cpuid_query(1, 0);
        let l7 = self.cpuid_query(7, 0);
        if l1[2] & (1 << 26) != 0 {
            v |= CR4_OSXSAVE;
        }
        if l7[1] & 1 != 0 {
            v |= CR4_FSGSBASE;
        }
        if l7[1] & (1 << 7) != 0 {
            v |= CR4_SMEP;
        }
        if l7[1] & (1 << 20) != 0 {
            v |= CR4_SMAP;
        }
        if l7[2] & (1 << 2) != 0 {
            v |= CR4_UMIP;
        }
        v
    }

    /// MOV to CR0 (and LMSW, CLTS): checks, long-mode activation, flushes.
    pub fn write_cr0(&mut self, v: u64) -> Res {
        if v >> 32 != 0 {
            return Err(gp0());
        }
        let v = (v & CR0_VALID) | CR0_ET;
        if (v & CR0_PG != 0 && v & CR0_PE == 0) || (v & CR0_NW != 0 && v & CR0_CD == 0) {
            return Err(gp0());
        }
        let old = self.cr0;
        let mut efer = self.efer;
        if v & CR0_PG != 0 && old & CR0_PG == 0 && efer & EFER_LME != 0 {
            if self.cr4 & CR4_PAE == 0 || self.seg[Seg::Cs as usize].l {
                return Err(gp0());
            }
            efer |= EFER_LMA;
        }
        if v & CR0_PG == 0 && old & CR0_PG != 0 && efer & EFER_LMA != 0 {
            if self.mode == Mode::Long {
                return Err(gp0());
            }
            efer &= !EFER_LMA;
        }
        self.cr0 = v;
        self.efer = efer;
        if (old ^ v) & (CR0_PG | CR0_WP | CR0_PE) != 0 {
            self.tlb.flush_all();
        }
        self.update_mode();
        self.end_block = true;
        Ok(())
    }

    /// MOV to CR3.
    pub fn write_cr3(&mut self, v: u64) -> Res {
        let v = if self.long_mode_active() {
            if v >> PHYS_BITS != 0 {
                return Err(gp0());
            }
            v
        } else {
            v & 0xffff_ffff
        };
        self.cr3 = v;
        self.tlb.flush_non_global();
        self.end_block = true;
        Ok(())
    }

    /// MOV to CR4.
    pub fn write_cr4(&mut self, v: u64) -> Res {
        if v & !self.cr4_valid_bits() != 0 {
            return Err(gp0());
        }
        if self.long_mode_active() && v & CR4_PAE == 0 {
            return Err(gp0());
        }
        let old = self.cr4;
        self.cr4 = v;
        if (old ^ v) & (CR4_PGE | CR4_PAE | CR4_PSE | CR4_SMEP | CR4_SMAP) != 0 {
            self.tlb.flush_all();
        }
        self.end_block = true;
        Ok(())
    }
}

fn cr_index(r: Register) -> Option<u8> {
    Some(match r {
        Register::CR0 => 0,
        Register::CR2 => 2,
        Register::CR3 => 3,
        Register::CR4 => 4,
        Register::CR8 => 8,
        _ => return None,
    })
}

/// MOV r, CRn.
pub(super) fn mov_from_cr(cpu: &mut Cpu, ins: &Instruction) -> Res {
    require_cpl0(cpu)?;
    let v = match cr_index(ins.op1_register()) {
        Some(0) => cpu.cr0,
        Some(2) => cpu.cr2,
        Some(3) => cpu.cr3,
        Some(4) => cpu.cr4,
        Some(8) => cpu.irq.as_ref().map_or(0, |i| i.cr8()),
        _ => return Err(ud()),
    };
    cpu.reg_write(ins.op0_register(), v);
    Ok(())
}

/// MOV CRn, r.
pub(super) fn mov_to_cr(cpu: &mut Cpu, ins: &Instruction) -> Res {
    require_cpl0(cpu)?;
    let v = cpu.reg_read(ins.op1_register());
    match cr_index(ins.op0_register()) {
        Some(0) => cpu.write_cr0(v)?,
        Some(2) => cpu.cr2 = v,
        Some(3) => cpu.write_cr3(v)?,
        Some(4) => cpu.write_cr4(v)?,
        Some(8) => {
            if v >> 4 != 0 {
                return Err(gp0());
            }
            if let Some(i) = &cpu.irq {
                i.set_cr8(v);
            }
        }
        _ => return Err(ud()),
    }
    cpu.end_block = true;
    Ok(())
}

/// The DR number of a MOV DR operand, with DR4/DR5 aliasing DR6/DR7 unless CR4.DE.
fn dr_index(cpu: &Cpu, r: Register) -> Res<usize> {
    let n = (r as u32).wrapping_sub(Register::DR0 as u32) as usize;
    match n {
        0..=3 | 6 | 7 => Ok(n),
        4 | 5 if cpu.cr4 & CR4_DE == 0 => Ok(n + 2),
        _ => Err(ud()),
    }
}

/// DR7.GD: any MOV DR raises #DB (a fault) with DR6.BD set and GD cleared.
fn general_detect(cpu: &mut Cpu) -> Res {
    if cpu.dr[7] & (1 << 13) != 0 {
        cpu.dr[7] &= !(1 << 13);
        cpu.dr[6] |= 1 << 13;
        return Err(super::super::exception(x86::DB, None));
    }
    Ok(())
}

/// MOV r, DRn.
pub(super) fn mov_from_dr(cpu: &mut Cpu, ins: &Instruction) -> Res {
    require_cpl0(cpu)?;
    general_detect(cpu)?;
    let n = dr_index(cpu, ins.op1_register())?;
    let v = cpu.dr[n];
    cpu.reg_write(ins.op0_register(), v);
    Ok(())
}

/// MOV DRn, r.
pub(super) fn mov_to_dr(cpu: &mut Cpu, ins: &Instruction) -> Res {
    require_cpl0(cpu)?;
    general_detect(cpu)?;
    let n = dr_index(cpu, ins.op0_register())?;
    let v = cpu.reg_read(ins.op1_register());
    cpu.dr[n] = match n {
        6 | 7 if v >> 32 != 0 => return Err(gp0()),
        6 => (v | 0xffff_0ff0) & 0xffff_ffff,
        7 => (v | 0x400) & 0xffff_2fff,
        _ => v,
    };
    cpu.end_block = true;
    Ok(())
}

/// LMSW: load CR0[3:0]; PE can be set but not cleared.
pub(super) fn lmsw(cpu: &mut Cpu, ins: &Instruction) -> Res {
    require_cpl0(cpu)?;
    let src = cpu.read_op(ins, 0)? & 0xf;
    let v = (cpu.cr0 & !0xe) | src;
    cpu.write_cr0(v)
}

/// SMSW: store CR0 (16 bits to memory, the register's width otherwise).
pub(super) fn smsw(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let v = cpu.cr0;
    if ins.op_kind(0) == OpKind::Memory {
        let seg = cpu.mem_seg(ins);
        let ea = cpu.ea(ins);
        cpu.write_mem(seg, ea, 2, v & 0xffff)
    } else {
        cpu.reg_write(ins.op0_register(), v);
        Ok(())
    }
}

/// CLTS.
pub(super) fn clts(cpu: &mut Cpu, _: &Instruction) -> Res {
    require_cpl0(cpu)?;
    cpu.cr0 &= !x86::CR0_TS;
    cpu.end_block = true;
    Ok(())
}

/// INVLPG m: flush the TLB entry of the operand's linear address.
pub(super) fn invlpg(cpu: &mut Cpu, ins: &Instruction) -> Res {
    require_cpl0(cpu)?;
    let seg = cpu.mem_seg(ins);
    let ea = cpu.ea(ins);
    let lin = if cpu.mode == Mode::Long {
        match seg {
            Seg::Fs | Seg::Gs => ea.wrapping_add(cpu.seg[seg as usize].base),
            _ => ea,
        }
    } else {
        cpu.seg[seg as usize].base.wrapping_add(ea) & 0xffff_ffff
    };
    cpu.tlb.flush_page(lin);
    cpu.end_block = true;
    Ok(())
}

/// INVD, WBINVD: caches are coherent here; privileged no-ops.
pub(super) fn cache_flush(cpu: &mut Cpu, _: &Instruction) -> Res {
    require_cpl0(cpu)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::memory::PhysMemory;

    #[test]
    fn illegal_cr0_cr4_efer_combinations_fault() {
        let mut c = Cpu::new(Arc::new(PhysMemory::new()), None, None, 0);
        assert_eq!(c.write_cr0(CR0_PG | CR0_ET), Err(gp0()), "PG without PE");
        assert_eq!(c.write_cr0(CR0_NW | CR0_ET), Err(gp0()), "NW without CD");
        assert_eq!(c.write_cr0(1 << 32), Err(gp0()));
        c.write_cr0(CR0_PE | CR0_ET).unwrap();
        assert_eq!(c.mode, Mode::Protected);
        c.wrmsr(x86::MSR_EFER, EFER_LME).unwrap();
        assert_eq!(
            c.write_cr0(CR0_PE | CR0_PG | CR0_ET),
            Err(gp0()),
            "long mode needs PAE"
        );
        assert_eq!(
            c.write_cr4(CR4_PAE | CR4_PCIDE),
            Err(gp0()),
            "PCID is not advertised"
        );
        c.write_cr4(CR4_PAE).unwrap();
        c.write_cr0(CR0_PE | CR0_PG | CR0_ET).unwrap();
        assert_ne!(c.efer & EFER_LMA, 0);
        assert_eq!(c.mode, Mode::Protected, "compatibility mode until CS.L");
        assert_eq!(
            c.wrmsr(x86::MSR_EFER, 0),
            Err(gp0()),
            "LME is frozen while paging"
        );
        assert_eq!(c.write_cr4(0), Err(gp0()), "PAE stays on in long mode");
        c.seg[Seg::Cs as usize].l = true;
        c.update_mode();
        assert_eq!(c.mode, Mode::Long);
        assert_eq!(
            c.write_cr0(CR0_PE | CR0_ET),
            Err(gp0()),
            "no paging off in 64-bit mode"
        );
        c.seg[Seg::Cs as usize].l = false;
        c.update_mode();
        c.write_cr0(CR0_PE | CR0_ET).unwrap();
        assert_eq!(
            c.efer & EFER_LMA,
            0,
            "paging off in compatibility mode leaves long mode"
        );
        c.cpl = 3;
        assert_eq!(require_cpl0(&c), Err(gp0()));
    }
}
