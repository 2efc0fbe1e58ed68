//! A KVM vCPU to and from the engine-neutral `VcpuState`, by the ioctls
//! KVM_GET/SET_REGS, SREGS, XSAVE (or FPU), XCRS, DEBUGREGS, MSRS, LAPIC,
//! VCPU_EVENTS and MP_STATE. The structure conversions are in `snapshot/`.

use kite_hypervisor::state::vcpu::msr_is_carried_elsewhere;
use kite_hypervisor::state::VcpuState;
use kite_hypervisor::x86::{MSR_IA32_TSC, MSR_IA32_TSC_DEADLINE};
use kite_hypervisor::{Error, Result, Vcpu};
use kvm_bindings::{kvm_debugregs, kvm_msr_entry, kvm_xcrs, kvm_xsave, Msrs};

use super::KvmVcpu;
use crate::snapshot::events::{events_from_kvm, events_to_kvm, mp_state_from_kvm, mp_state_to_kvm};
use crate::snapshot::lapic::{lapic_from_kvm, lapic_to_kvm};
use crate::snapshot::xsave::{fpu_from_xsave, fpu_to_xsave};

/// XCR0 bit: AVX state.
const XCR0_AVX: u64 = 4;

impl KvmVcpu {
    /// Read `indices`, leaving out the ones KVM refuses to read
    /// (KVM_GET_MSRS stops at the first such MSR: skip it and go on).
    fn readable_msrs(&self, indices: &[u32]) -> Result<Vec<(u32, u64)>> {
        let mut out = Vec::with_capacity(indices.len());
        let mut rest = indices;
        while !rest.is_empty() {
            let entries: Vec<kvm_msr_entry> = rest
                .iter()
                .map(|&index| kvm_msr_entry {
                    index,
                    ..Default::default()
                })
                .collect();
            let mut msrs = Msrs::from_entries(&entries)
                .map_err(|e| Error::Invalid(format!("too many MSRs in one request: {e:?}")))?;
            let read = self
                .fd
                .get_msrs(&mut msrs)
                .map_err(|e| Error::host("KVM_GET_MSRS", e))?
                .min(rest.len());
            out.extend(msrs.as_slice()[..read].iter().map(|e| (e.index, e.data)));
            // rest[read] is refused (or everything was read).
            rest = rest.get(read + 1..).unwrap_or(&[]);
        }
        Ok(out)
    }

    pub(crate) fn save_neutral(&self) -> Result<VcpuState> {
        let regs = self.regs()?;
        let sregs = self.sregs()?;
        let (fpu, ymm_hi) = match self.fd.get_xsave() {
            Ok(x) => fpu_from_xsave(&x),
            Err(_) => (self.fpu()?, None),
        };
        let xcr0 = self
            .fd
            .get_xcrs()
            .ok()
            .and_then(|x| {
                x.xcrs[..(x.nr_xcrs as usize).min(x.xcrs.len())]
                    .iter()
                    .find(|e| e.xcr == 0)
                    .map(|e| e.value)
            })
            .unwrap_or(1);
        let dr = self
            .fd
            .get_debug_regs()
            .map_err(|e| Error::host("KVM_GET_DEBUGREGS", e))?;
        let list: Vec<u32> = self
            .msr_list
            .iter()
            .copied()
            .filter(|&i| !msr_is_carried_elsewhere(i))
            .collect();
        let msrs = self.readable_msrs(&list)?;
        let tsc = self.msrs(&[MSR_IA32_TSC])?[0].1;
        let lapic = if self.irqchip {
            let deadline = self
                .msrs(&[MSR_IA32_TSC_DEADLINE])
                .map(|v| v[0].1)
                .unwrap_or(0);
            let page = self
                .fd
                .get_lapic()
                .map_err(|e| Error::host("KVM_GET_LAPIC", e))?;
            Some(lapic_from_kvm(&page, sregs.apic_base, deadline))
        } else {
            None
        };
        let kvm_events = self
            .fd
            .get_vcpu_events()
            .map_err(|e| Error::host("KVM_GET_VCPU_EVENTS", e))?;
        let mp_state = match self.fd.get_mp_state() {
            Ok(m) => mp_state_from_kvm(&m, kvm_events.sipi_vector),
            Err(_) => kite_hypervisor::state::MpState::Runnable,
        };
        Ok(VcpuState {
            regs,
            sregs,
            fpu,
            ymm_hi: if xcr0 & XCR0_AVX != 0 { ymm_hi } else { None },
            xcr0,
            dr: [dr.db[0], dr.db[1], dr.db[2], dr.db[3], dr.dr6, dr.dr7],
            tsc,
            msrs,
            lapic,
            events: events_from_kvm(&kvm_events),
            mp_state,
        })
    }

    pub(crate) fn restore_neutral(&mut self, s: &VcpuState) -> Result<()> {
        match (&s.lapic, self.irqchip) {
            (Some(_), false) => {
                return Err(Error::Invalid(format!(
                    "vCPU {}: the state has a local APIC but this VM has no irqchip",
                    self.id
                )))
            }
            (None, true) => {
                return Err(Error::Invalid(format!(
                    "vCPU {}: the state has no local APIC but this VM has an irqchip",
                    self.id
                )))
            }
            _ => {}
        }
        // KVM may still refuse a value: go back to what was there.
        let before = self.save_neutral()?;
        match self.load(s) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = self.load(&before);
                Err(e)
            }
        }
    }

    fn load(&mut self, s: &VcpuState) -> Result<()> {
        self.set_sregs(&s.sregs)?;
        self.set_regs(&s.regs)?;
        match self.fd.get_xsave() {
            Ok(base) => {
                let avx = s.xcr0 & XCR0_AVX != 0;
                let x: kvm_xsave = fpu_to_xsave(&s.fpu, s.ymm_hi.as_ref(), avx, &base);
                // SAFETY: `x` is a whole kvm_xsave (4 KiB) as KVM_GET_XSAVE
                // returned it, the size KVM_SET_XSAVE reads without XSAVE2.
                unsafe { self.fd.set_xsave(&x) }.map_err(|e| Error::host("KVM_SET_XSAVE", e))?;
            }
            Err(_) => self.set_fpu(&s.fpu)?,
        }
        if self.fd.get_xcrs().is_ok() {
            let mut x = kvm_xcrs {
                nr_xcrs: 1,
                ..Default::default()
            };
            x.xcrs[0].xcr = 0;
            x.xcrs[0].value = s.xcr0 | 1;
            self.fd
                .set_xcrs(&x)
                .map_err(|e| Error::host("KVM_SET_XCRS", e))?;
        }
        // Write the MSRs KVM knows whose value differs: KVM refuses writes
        // to MSRs the guest's CPUID does not offer even of their reset value.
        let known: Vec<u32> = s
            .msrs
            .iter()
            .map(|&(i, _)| i)
            .filter(|&i| self.msr_list.contains(&i) && !msr_is_carried_elsewhere(i))
            .collect();
        let current = self.readable_msrs(&known)?;
        let mut msrs: Vec<(u32, u64)> = s
            .msrs
            .iter()
            .copied()
            .filter(|&(i, v)| known.contains(&i) && !current.contains(&(i, v)))
            .collect();
        msrs.push((MSR_IA32_TSC, s.tsc));
        self.set_msrs(&msrs)?;
        if let Some(l) = &s.lapic {
            let base = self
                .fd
                .get_lapic()
                .map_err(|e| Error::host("KVM_GET_LAPIC", e))?;
            let page = lapic_to_kvm(l, s.sregs.apic_base, &base);
            self.fd
                .set_lapic(&page)
                .map_err(|e| Error::host("KVM_SET_LAPIC", e))?;
            if l.tsc_deadline != 0 {
                self.set_msrs(&[(MSR_IA32_TSC_DEADLINE, l.tsc_deadline)])?;
            }
        }
        let (mp, sipi) = mp_state_to_kvm(&s.mp_state);
        self.fd
            .set_vcpu_events(&events_to_kvm(&s.events, sipi))
            .map_err(|e| Error::host("KVM_SET_VCPU_EVENTS", e))?;
        if self.irqchip {
            self.fd
                .set_mp_state(mp)
                .map_err(|e| Error::host("KVM_SET_MP_STATE", e))?;
        }
        let mut dr = kvm_debugregs::default();
        dr.db.copy_from_slice(&s.dr[..4]);
        dr.dr6 = s.dr[4];
        dr.dr7 = s.dr[5];
        self.fd
            .set_debug_regs(&dr)
            .map_err(|e| Error::host("KVM_SET_DEBUGREGS", e))
    }
}
