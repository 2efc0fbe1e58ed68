//! An emu vCPU to and from the engine-neutral `VcpuState`: the CPU's
//! registers and MSRs, its local APIC (through `VcpuIrq`), the events the
//! vCPU holds (injected, NMI/INIT/SIPI) and its activity state. Knows the
//! emu vCPU's fields, nothing of how a snapshot is stored.

use kite_hypervisor::state::vcpu::msr_is_carried_elsewhere;
use kite_hypervisor::state::{EventState, MpState, PendingException, VcpuState};
use kite_hypervisor::x86::*;
use kite_hypervisor::{Error, Event, Result, Vcpu};

use super::EmuVcpu;
use crate::cpu::fpu::control::XCR0_SUPPORTED;
use crate::cpu::system::msr::*;
use crate::cpu::{Mode, Pending, Seg};

/// The MSRs the emu CPU keeps itself and a state carries in `msrs` (the
/// identification and capability MSRs are read-only: not state).
fn saved_msrs() -> impl Iterator<Item = u32> {
    [
        MSR_IA32_SYSENTER_CS,
        MSR_IA32_SYSENTER_ESP,
        MSR_IA32_SYSENTER_EIP,
        MSR_IA32_MISC_ENABLE,
        MSR_IA32_CR_PAT,
        MSR_MTRR_DEF_TYPE,
        MSR_MTRR_FIX_64K,
        MSR_MTRR_FIX_16K_80000,
        MSR_MTRR_FIX_16K_A0000,
        MSR_STAR,
        MSR_LSTAR,
        MSR_CSTAR,
        MSR_SYSCALL_MASK,
        MSR_KERNEL_GS_BASE,
        MSR_TSC_AUX,
        MSR_IA32_TSC_ADJUST,
    ]
    .into_iter()
    .chain(MSR_MTRR_FIX_4K_C0000..=MSR_MTRR_FIX_4K_F8000)
    .chain(MSR_MTRR_PHYS_BASE0..MSR_MTRR_PHYS_BASE0 + 16)
}

/// MSRs a restore leaves alone: read-only here (identification,
/// capabilities, the firmware-locked feature control).
fn read_only_msr(index: u32) -> bool {
    matches!(
        index,
        MSR_PLATFORM_ID
            | MSR_UCODE_REV
            | MSR_PLATFORM_INFO
            | MSR_MTRR_CAP
            | MSR_MCG_CAP
            | MSR_MCG_STATUS
            | MSR_IA32_FEATURE_CONTROL
    )
}

impl EmuVcpu {
    /// Is an exit half done (handed out, or its instruction not yet re-run)?
    fn mid_exit(&self) -> bool {
        matches!(
            self.in_flight,
            Some(Pending::IoIn { .. }) | Some(Pending::MmioRead { .. })
        ) || self.cpu.pending.is_some()
            || !self.cpu.replay.is_empty()
            || !self.cpu.posted.is_empty()
    }

    pub(crate) fn save_neutral(&self) -> Result<VcpuState> {
        if self.mid_exit() {
            return Err(Error::Invalid(format!(
                "vCPU {}: an exit is not complete; kick the vCPU and run it until it \
                 returns Interrupted, then save",
                self.id
            )));
        }
        let c = &self.cpu;
        let regs = self.regs()?;
        let sregs = self.sregs()?;
        let msrs = saved_msrs()
            .filter_map(|i| c.peek_msr(i).map(|v| (i, v)))
            .collect();
        let mut events = EventState {
            nmi_masked: c.nmi_blocked,
            interrupt_shadow: c.interrupt_shadow,
            ..Default::default()
        };
        for ev in &self.injected {
            match *ev {
                Event::Nmi => events.nmi_pending = true,
                Event::Interrupt(v) => {
                    events.interrupt.get_or_insert(v);
                }
                Event::Exception { vector, error_code } => {
                    events.exception.get_or_insert(PendingException {
                        vector: vector & 31,
                        error_code,
                        injected: false,
                    });
                }
            }
        }
        let mut sipi = None;
        if let Some(irq) = &c.irq {
            let (nmi, init, s) = irq.pending_signals();
            events.nmi_pending |= nmi;
            events.init_pending = init;
            sipi = s;
        }
        let mp_state = match (c.wait_for_sipi, sipi) {
            (true, Some(v)) => MpState::SipiReceived(v),
            (true, None) => MpState::WaitForSipi,
            _ if c.halted => MpState::Halted,
            _ => MpState::Runnable,
        };
        Ok(VcpuState {
            regs,
            sregs,
            fpu: c.fpu.to_api(),
            ymm_hi: None,
            xcr0: (c.msr.xcr0 | 1) & XCR0_SUPPORTED,
            dr: [c.dr[0], c.dr[1], c.dr[2], c.dr[3], c.dr[6], c.dr[7]],
            tsc: c.guest_tsc(),
            msrs,
            lapic: c.irq.as_ref().map(|i| i.save_lapic()),
            events,
            mp_state,
        })
    }

    pub(crate) fn restore_neutral(&mut self, s: &VcpuState) -> Result<()> {
        let bad = |what: String| Error::Invalid(format!("vCPU {}: {what}", self.id));
        match (&s.lapic, &self.cpu.irq) {
            (Some(_), None) => {
                return Err(bad(
                    "the state has a local APIC but this VM has no irqchip".into()
                ))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "the state has no local APIC but this VM has an irqchip".into(),
                ))
            }
            _ => {}
        }
        // MSRs first (they only touch `cpu.msr`): put it back on a refusal.
        let old_msrs = self.cpu.msr.clone();
        for &(i, v) in &s.msrs {
            if msr_is_carried_elsewhere(i) || read_only_msr(i) || self.cpu.peek_msr(i).is_none() {
                continue;
            }
            if i == MSR_IA32_TSC_ADJUST {
                self.cpu.msr.tsc_adjust = v;
            } else if self.cpu.wrmsr(i, v).is_err() {
                self.cpu.msr = old_msrs;
                return Err(bad(format!(
                    "MSR {i:#x} cannot be {v:#x} on the emu engine"
                )));
            }
        }
        // The local APIC (and with it the TSC): checked before it changes.
        if let (Some(l), Some(irq)) = (&s.lapic, self.cpu.irq.clone()) {
            if let Err(e) = irq.restore_lapic(l, s.sregs.apic_base, s.tsc) {
                self.cpu.msr = old_msrs;
                return Err(bad(e));
            }
            self.cpu.msr.tsc_offset = 0;
        } else {
            self.cpu.set_guest_tsc(s.tsc);
        }

        // Nothing below can fail.
        let c = &mut self.cpu;
        c.gpr = s.regs.gprs();
        c.rip = s.regs.rip;
        c.flags.set_rflags(s.regs.rflags);
        let r = &s.sregs;
        c.seg[Seg::Cs as usize] = r.cs;
        c.seg[Seg::Ds as usize] = r.ds;
        c.seg[Seg::Es as usize] = r.es;
        c.seg[Seg::Fs as usize] = r.fs;
        c.seg[Seg::Gs as usize] = r.gs;
        c.seg[Seg::Ss as usize] = r.ss;
        c.tr = r.tr;
        c.ldtr = r.ldt;
        c.gdtr = r.gdt;
        c.idtr = r.idt;
        c.cr0 = r.cr0;
        c.cr2 = r.cr2;
        c.cr3 = r.cr3;
        c.cr4 = r.cr4;
        c.efer = r.efer;
        c.fpu.from_api(&s.fpu);
        c.msr.xcr0 = (s.xcr0 | 1) & XCR0_SUPPORTED;
        c.dr[..4].copy_from_slice(&s.dr[..4]);
        c.dr[6] = s.dr[4];
        c.dr[7] = s.dr[5];
        c.dr[4] = c.dr[6];
        c.dr[5] = c.dr[7];
        c.update_mode();
        c.cpl = match c.mode {
            Mode::Real => 0,
            Mode::Vm86 => 3,
            _ => r.ss.dpl & 3,
        };
        c.tlb.flush_all();
        c.nmi_blocked = s.events.nmi_masked;
        c.interrupt_shadow = s.events.interrupt_shadow;
        c.halted = s.mp_state == MpState::Halted;
        c.wait_for_sipi = matches!(s.mp_state, MpState::WaitForSipi | MpState::SipiReceived(_));
        c.pending = None;
        c.replay.clear();
        c.replay_pos = 0;
        c.posted.clear();
        c.intr_pending = false;
        c.end_block = true;
        if let Some(irq) = c.irq.clone() {
            let sipi = match s.mp_state {
                MpState::SipiReceived(v) => Some(v),
                _ => None,
            };
            irq.set_pending_signals(false, s.events.init_pending, sipi);
        }
        self.in_flight = None;
        self.blocks.clear();
        self.injected.clear();
        if let Some(x) = s.events.exception {
            self.injected.push(Event::Exception {
                vector: x.vector,
                error_code: x.error_code,
            });
        }
        if s.events.nmi_pending {
            self.injected.push(Event::Nmi);
        }
        if let Some(v) = s.events.interrupt {
            self.injected.push(Event::Interrupt(v));
        }
        Ok(())
    }
}
