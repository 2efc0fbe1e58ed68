//! The time-stamp counter: one engine-wide clock (nanoseconds of host
//! monotonic time since the first use, i.e. a 1 GHz TSC as `cpuid::TSC_HZ`
//! reports), the per-vCPU offset that TSC writes set, and RDTSC/RDTSCP.
//! The LAPIC's TSC-deadline timer uses `host_tsc` too.

use std::sync::OnceLock;
use std::time::Instant;

use iced_x86::Instruction;
use kite_hypervisor::x86;

use super::super::{gp0, reg, Cpu, Res};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The engine-wide TSC before any guest offset: nanoseconds since the epoch.
pub fn host_tsc() -> u64 {
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The host instant at which the engine-wide TSC reaches `tsc` (for timers).
pub fn instant_of_host_tsc(tsc: u64) -> Instant {
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch + std::time::Duration::from_nanos(tsc)
}

impl Cpu {
    /// The guest's TSC.
    pub fn guest_tsc(&self) -> u64 {
        self.base_tsc().wrapping_add(self.msr.tsc_offset as u64)
    }

    /// The TSC before the guest's offset: the irqchip's clock when there is
    /// one (so TSC-deadline timers agree with RDTSC), else the engine's.
    fn base_tsc(&self) -> u64 {
        match &self.irq {
            Some(irq) => irq.guest_tsc(Instant::now()),
            None => host_tsc(),
        }
    }

    /// Set the guest's TSC (WRMSR IA32_TSC). With an irqchip the offset
    /// lives in the local APIC's clock (so TSC-deadline timers compare
    /// against the TSC the guest reads) and `msr.tsc_offset` stays 0.
    pub fn set_guest_tsc(&mut self, v: u64) {
        match &self.irq {
            Some(irq) => {
                irq.wrmsr(crate::irq::MSR_TSC, v);
                self.msr.tsc_offset = 0;
            }
            None => self.msr.tsc_offset = v.wrapping_sub(host_tsc()) as i64,
        }
    }
}

/// CR4.TSD makes RDTSC/RDTSCP privileged.
fn check_tsd(cpu: &Cpu) -> Res {
    if cpu.cr4 & x86::CR4_TSD != 0 && cpu.cpl != 0 {
        return Err(gp0());
    }
    Ok(())
}

fn set_edx_eax(cpu: &mut Cpu, v: u64) {
    cpu.gpr[reg::RAX] = v & 0xffff_ffff;
    cpu.gpr[reg::RDX] = v >> 32;
}

/// RDTSC.
pub(super) fn rdtsc(cpu: &mut Cpu, _: &Instruction) -> Res {
    check_tsd(cpu)?;
    let v = cpu.guest_tsc();
    set_edx_eax(cpu, v);
    Ok(())
}

/// RDTSCP: RDTSC plus ECX = IA32_TSC_AUX.
pub(super) fn rdtscp(cpu: &mut Cpu, _: &Instruction) -> Res {
    check_tsd(cpu)?;
    let v = cpu.guest_tsc();
    set_edx_eax(cpu, v);
    cpu.gpr[reg::RCX] = cpu.msr.tsc_aux & 0xffff_ffff;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::memory::PhysMemory;

    #[test]
    fn rdtsc_counts_and_honours_cr4_tsd() {
        let mut c = Cpu::new(Arc::new(PhysMemory::new()), None, None, 0);
        let ins = Instruction::default();
        rdtsc(&mut c, &ins).unwrap();
        let t0 = (c.gpr[reg::RDX] << 32) | c.gpr[reg::RAX];
        std::thread::sleep(std::time::Duration::from_millis(2));
        c.msr.tsc_aux = 7;
        rdtscp(&mut c, &ins).unwrap();
        let t1 = (c.gpr[reg::RDX] << 32) | c.gpr[reg::RAX];
        assert!(t1 >= t0 + 2_000_000, "1 GHz: 2 ms is at least 2M ticks");
        assert_eq!(c.gpr[reg::RCX], 7);
        c.cr4 |= x86::CR4_TSD;
        c.cpl = 3;
        assert_eq!(rdtsc(&mut c, &ins), Err(gp0()));
        c.cpl = 0;
        assert_eq!(rdtsc(&mut c, &ins), Ok(()));
    }

    #[test]
    fn tsc_writes_move_the_tsc_deadline_clock_too() {
        use crate::irq::IrqChip;
        let chip = IrqChip::new(false);
        let irq = chip.add_vcpu(0);
        let mut c = Cpu::new(
            Arc::new(PhysMemory::new()),
            Some(chip),
            Some(irq.clone()),
            0,
        );
        c.set_guest_tsc(1 << 40);
        let guest = c.guest_tsc();
        assert!((1 << 40..(1 << 40) + 1_000_000_000).contains(&guest));
        // The APIC's clock (what a TSC deadline is compared with) agrees.
        let apic = irq.guest_tsc(std::time::Instant::now());
        assert!(apic >= guest && apic - guest < 1_000_000_000);
    }
}
