//! Model-specific registers: RDMSR/WRMSR and the state behind them (EFER,
//! the SYSCALL/SYSENTER MSRs, FS/GS bases, TSC and TSC_ADJUST, PAT, MTRRs,
//! the identification MSRs Linux probes). The LAPIC's MSRs (APIC_BASE,
//! TSC_DEADLINE, x2APIC 0x800-0x8ff) go to the in-engine LAPIC. An MSR the
//! CPU does not have raises #GP(0), as `rdmsr_safe` expects.

use iced_x86::Instruction;
use kite_hypervisor::x86::{self, *};

use super::super::access::canonical;
use super::super::{gp0, reg, Cpu, Res, Seg};
use super::control_regs::require_cpl0;
use crate::mmu::page_walk::PHYS_BITS;

pub const MSR_PLATFORM_ID: u32 = 0x17;
pub const MSR_UCODE_REV: u32 = 0x8b;
pub const MSR_PLATFORM_INFO: u32 = 0xce;
pub const MSR_MTRR_CAP: u32 = 0xfe;
pub const MSR_MCG_CAP: u32 = 0x179;
pub const MSR_MCG_STATUS: u32 = 0x17a;
pub const MSR_MTRR_PHYS_BASE0: u32 = 0x200;
pub const MSR_MTRR_FIX_64K: u32 = 0x250;
pub const MSR_MTRR_FIX_16K_80000: u32 = 0x258;
pub const MSR_MTRR_FIX_16K_A0000: u32 = 0x259;
pub const MSR_MTRR_FIX_4K_C0000: u32 = 0x268;
pub const MSR_MTRR_FIX_4K_F8000: u32 = 0x26f;

/// MTRRcap: 8 variable ranges, fixed ranges, write-combining; no SMRR.
pub const MTRR_CAP: u64 = 0x508;
const VAR_MTRRS: u32 = 8;

/// Memory types valid in MTRRs (UC WC WT WP WB).
fn mtrr_type_ok(t: u8) -> bool {
    matches!(t, 0 | 1 | 4 | 5 | 6)
}

/// Memory types valid in PAT entries (also UC-).
fn pat_type_ok(t: u8) -> bool {
    matches!(t, 0 | 1 | 4 | 5 | 6 | 7)
}

fn fixed_index(index: u32) -> Option<usize> {
    match index {
        MSR_MTRR_FIX_64K => Some(0),
        MSR_MTRR_FIX_16K_80000 => Some(1),
        MSR_MTRR_FIX_16K_A0000 => Some(2),
        MSR_MTRR_FIX_4K_C0000..=MSR_MTRR_FIX_4K_F8000 => {
            Some(3 + (index - MSR_MTRR_FIX_4K_C0000) as usize)
        }
        _ => None,
    }
}

fn is_lapic_msr(index: u32) -> bool {
    index == MSR_IA32_APIC_BASE
        || index == MSR_IA32_TSC_DEADLINE
        || (0x800..=0x8ff).contains(&index)
}

impl Cpu {
    /// The EFER bits this CPU accepts, from CPUID 0x80000001 EDX.
    fn efer_valid_bits(&self) -> u64 {
        let edx = self.cpuid_query(0x8000_0001, 0)[3];
        let mut v = 0;
        if edx & (1 << 11) != 0 {
            v |= EFER_SCE;
        }
        if edx & (1 << 20) != 0 {
            v |= EFER_NXE;
        }
        if edx & (1 << 29) != 0 {
            v |= EFER_LME | EFER_LMA;
        }
        v
    }

    /// The value RDMSR returns, or None for an MSR the engine does not have (#GP).
    pub fn peek_msr(&self, index: u32) -> Option<u64> {
        if is_lapic_msr(index) {
            return self.irq.as_ref().and_then(|i| i.rdmsr(index));
        }
        if let Some(i) = fixed_index(index) {
            return self.msr.mtrr_fixed.get(i).copied();
        }
        if (MSR_MTRR_PHYS_BASE0..MSR_MTRR_PHYS_BASE0 + 2 * VAR_MTRRS).contains(&index) {
            return self
                .msr
                .mtrr_var
                .get((index - MSR_MTRR_PHYS_BASE0) as usize)
                .copied();
        }
        let m = &self.msr;
        Some(match index {
            MSR_IA32_TSC => self.guest_tsc(),
            MSR_PLATFORM_ID | MSR_UCODE_REV | MSR_MCG_CAP | MSR_MCG_STATUS => 0,
            MSR_IA32_FEATURE_CONTROL => m.feature_control | 1,
            MSR_IA32_TSC_ADJUST => m.tsc_adjust,
            // Maximum non-turbo ratio 10 x 100 MHz = the 1 GHz TSC.
            MSR_PLATFORM_INFO => 10 << 8,
            MSR_MTRR_CAP => MTRR_CAP,
            MSR_IA32_SYSENTER_CS => m.sysenter_cs,
            MSR_IA32_SYSENTER_ESP => m.sysenter_esp,
            MSR_IA32_SYSENTER_EIP => m.sysenter_eip,
            MSR_IA32_MISC_ENABLE => m.misc_enable,
            MSR_IA32_CR_PAT => m.pat,
            MSR_MTRR_DEF_TYPE => m.mtrr_def_type,
            MSR_EFER => self.efer,
            MSR_STAR => m.star,
            MSR_LSTAR => m.lstar,
            MSR_CSTAR => m.cstar,
            MSR_SYSCALL_MASK => m.sfmask,
            MSR_FS_BASE => self.seg[Seg::Fs as usize].base,
            MSR_GS_BASE => self.seg[Seg::Gs as usize].base,
            MSR_KERNEL_GS_BASE => m.kernel_gs_base,
            MSR_TSC_AUX => m.tsc_aux,
            _ => return None,
        })
    }

    /// WRMSR (also the API's set_msrs): #GP(0) for an unknown MSR or a
    /// value with reserved bits set.
    pub fn wrmsr(&mut self, index: u32, value: u64) -> Res {
        let v = value;
        if is_lapic_msr(index) {
            let ok = self.irq.as_ref().is_some_and(|i| i.wrmsr(index, v));
            self.end_block = true;
            return if ok { Ok(()) } else { Err(gp0()) };
        }
        let need_canonical = matches!(
            index,
            MSR_LSTAR
                | MSR_CSTAR
                | MSR_FS_BASE
                | MSR_GS_BASE
                | MSR_KERNEL_GS_BASE
                | MSR_IA32_SYSENTER_ESP
                | MSR_IA32_SYSENTER_EIP
        );
        if need_canonical && !canonical(v) {
            return Err(gp0());
        }
        if let Some(i) = fixed_index(index) {
            if !v.to_le_bytes().iter().all(|&t| mtrr_type_ok(t)) {
                return Err(gp0());
            }
            self.msr.mtrr_fixed[i] = v;
            return Ok(());
        }
        if (MSR_MTRR_PHYS_BASE0..MSR_MTRR_PHYS_BASE0 + 2 * VAR_MTRRS).contains(&index) {
            let i = (index - MSR_MTRR_PHYS_BASE0) as usize;
            let ok = if i.is_multiple_of(2) {
                mtrr_type_ok(v as u8) && v & 0xf00 == 0 && v >> PHYS_BITS == 0
            } else {
                v & 0x7ff == 0 && v >> PHYS_BITS == 0
            };
            if !ok {
                return Err(gp0());
            }
            self.msr.mtrr_var[i] = v;
            return Ok(());
        }
        match index {
            MSR_IA32_TSC => {
                let old = self.guest_tsc();
                self.set_guest_tsc(v);
                self.msr.tsc_adjust = self.msr.tsc_adjust.wrapping_add(v.wrapping_sub(old));
            }
            MSR_IA32_TSC_ADJUST => {
                let delta = v.wrapping_sub(self.msr.tsc_adjust);
                let tsc = self.guest_tsc().wrapping_add(delta);
                self.set_guest_tsc(tsc);
                self.msr.tsc_adjust = v;
            }
            // Locked by the firmware, without VMX/SMX: only the same value.
            MSR_IA32_FEATURE_CONTROL => {
                if v != self.msr.feature_control | 1 {
                    return Err(gp0());
                }
            }
            // Writing the microcode revision (0 before CPUID) is allowed.
            MSR_UCODE_REV => {}
            MSR_MCG_STATUS => {
                if v != 0 {
                    return Err(gp0());
                }
            }
            MSR_IA32_SYSENTER_CS => self.msr.sysenter_cs = v & 0xffff_ffff,
            MSR_IA32_SYSENTER_ESP => self.msr.sysenter_esp = v,
            MSR_IA32_SYSENTER_EIP => self.msr.sysenter_eip = v,
            MSR_IA32_MISC_ENABLE => self.msr.misc_enable = v,
            MSR_IA32_CR_PAT => {
                if !v.to_le_bytes().iter().all(|&t| pat_type_ok(t)) {
                    return Err(gp0());
                }
                self.msr.pat = v;
            }
            MSR_MTRR_DEF_TYPE => {
                if !mtrr_type_ok(v as u8) || v & !0xcff != 0 {
                    return Err(gp0());
                }
                self.msr.mtrr_def_type = v;
            }
            MSR_EFER => self.write_efer(v)?,
            MSR_STAR => self.msr.star = v,
            MSR_LSTAR => self.msr.lstar = v,
            MSR_CSTAR => self.msr.cstar = v,
            MSR_SYSCALL_MASK => {
                if v >> 32 != 0 {
                    return Err(gp0());
                }
                self.msr.sfmask = v;
            }
            MSR_FS_BASE => {
                self.seg[Seg::Fs as usize].base = v;
                self.refresh_seg_cache();
            }
            MSR_GS_BASE => {
                self.seg[Seg::Gs as usize].base = v;
                self.refresh_seg_cache();
            }
            MSR_KERNEL_GS_BASE => self.msr.kernel_gs_base = v,
            MSR_TSC_AUX => {
                if v >> 32 != 0 {
                    return Err(gp0());
                }
                self.msr.tsc_aux = v;
            }
            _ => return Err(gp0()),
        }
        self.end_block = true;
        Ok(())
    }

    /// WRMSR EFER: reserved bits, LME frozen while paging; LMA stays what
    /// CR0.PG made it.
    fn write_efer(&mut self, v: u64) -> Res {
        if v & !self.efer_valid_bits() != 0 {
            return Err(gp0());
        }
        let old = self.efer;
        if self.cr0 & x86::CR0_PG != 0 && (old ^ v) & EFER_LME != 0 {
            return Err(gp0());
        }
        let new = (v & !EFER_LMA) | (old & EFER_LMA);
        self.efer = new;
        if (old ^ new) & EFER_NXE != 0 {
            self.tlb.flush_all();
        }
        self.update_mode();
        Ok(())
    }
}

/// RDMSR.
pub(super) fn rdmsr(cpu: &mut Cpu, _: &Instruction) -> Res {
    require_cpl0(cpu)?;
    let index = cpu.gpr[reg::RCX] as u32;
    let v = cpu.peek_msr(index).ok_or_else(gp0)?;
    cpu.gpr[reg::RAX] = v & 0xffff_ffff;
    cpu.gpr[reg::RDX] = v >> 32;
    Ok(())
}

/// WRMSR.
pub(super) fn wrmsr(cpu: &mut Cpu, _: &Instruction) -> Res {
    require_cpl0(cpu)?;
    let index = cpu.gpr[reg::RCX] as u32;
    let v = (cpu.gpr[reg::RDX] << 32) | (cpu.gpr[reg::RAX] & 0xffff_ffff);
    cpu.wrmsr(index, v)?;
    cpu.end_block = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::memory::PhysMemory;

    fn cpu() -> Cpu {
        Cpu::new(Arc::new(PhysMemory::new()), None, None, 0)
    }

    #[test]
    fn unknown_and_reserved_msrs_fault() {
        let mut c = cpu();
        assert_eq!(c.peek_msr(0x48), None); // SPEC_CTRL is not advertised
        assert_eq!(c.wrmsr(0x48, 0), Err(gp0()));
        assert_eq!(c.wrmsr(MSR_EFER, 1 << 2), Err(gp0()));
        assert_eq!(c.wrmsr(MSR_LSTAR, 0x0000_8000_0000_0000), Err(gp0()));
        assert_eq!(c.wrmsr(MSR_IA32_CR_PAT, 0x02), Err(gp0()));
        assert_eq!(c.wrmsr(MSR_IA32_FEATURE_CONTROL, 5), Err(gp0()));
        assert_eq!(c.peek_msr(MSR_IA32_FEATURE_CONTROL), Some(1));
        assert_eq!(c.peek_msr(MSR_MTRR_CAP), Some(0x508));
    }

    #[test]
    fn bases_efer_and_mtrrs() {
        let mut c = cpu();
        c.wrmsr(MSR_EFER, EFER_LME | EFER_SCE | EFER_NXE).unwrap();
        assert_eq!(c.peek_msr(MSR_EFER), Some(EFER_LME | EFER_SCE | EFER_NXE));
        c.wrmsr(MSR_GS_BASE, 0xffff_8000_0000_1000).unwrap();
        assert_eq!(c.seg[Seg::Gs as usize].base, 0xffff_8000_0000_1000);
        c.wrmsr(0x201, 0xff_f000_0800).unwrap();
        assert_eq!(c.peek_msr(0x201), Some(0xff_f000_0800));
        assert_eq!(c.wrmsr(0x200, 0x2), Err(gp0()));
        c.wrmsr(0x26f, 0x0606_0606_0606_0606).unwrap();
        assert_eq!(c.peek_msr(0x26f), Some(0x0606_0606_0606_0606));
    }

    #[test]
    fn tsc_write_moves_adjust() {
        let mut c = cpu();
        let t0 = c.peek_msr(MSR_IA32_TSC).unwrap();
        c.wrmsr(MSR_IA32_TSC, t0 + 1_000_000_000_000).unwrap();
        let t1 = c.peek_msr(MSR_IA32_TSC).unwrap();
        assert!(t1 >= t0 + 1_000_000_000_000);
        let adj = c.peek_msr(MSR_IA32_TSC_ADJUST).unwrap();
        assert!((1_000_000_000_000 - 1_000_000_000..=1_000_000_000_000).contains(&adj));
        // Writing TSC_ADJUST back to 0 moves the TSC back too.
        c.wrmsr(MSR_IA32_TSC_ADJUST, 0).unwrap();
        let t2 = c.peek_msr(MSR_IA32_TSC).unwrap();
        assert!(t2 < t0 + 1_000_000_000_000);
    }
}
