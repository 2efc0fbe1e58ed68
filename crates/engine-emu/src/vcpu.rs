//! An emu-engine vCPU: the `Vcpu` API over the software CPU. `run` executes
//! guest code on the calling thread, completes the previous exit's access,
//! delivers interrupts from the in-engine irqchip, and sleeps in HLT.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kite_hypervisor::exit::VcpuExit;
use kite_hypervisor::{
    x86, CpuidEntry, DebugHit, Error, Event, Fpu, GuestDebug, Regs, Result, Segment, Sregs,
    Translation, Vcpu, VcpuKick, HW_DEBUG_SLOTS,
};

use crate::cpu::block_cache::BlockCache;
use crate::cpu::exec::Stop;
use crate::cpu::system::EventKind;
use crate::cpu::{Cpu, Mode, Pending, Seg};
use crate::irq::{IrqChip, VcpuIrq};
use crate::memory::PhysMemory;

mod state;

/// Makes a vCPU leave `run` with `Interrupted`.
pub struct EmuKick {
    flag: Arc<AtomicBool>,
    irq: Option<Arc<VcpuIrq>>,
}

impl VcpuKick for EmuKick {
    fn kick(&self) {
        // The events word first: a vCPU that sees the flag also finds the
        // bit to clear (`run_until_exit` takes both; either one is a kick).
        if let Some(irq) = &self.irq {
            irq.kick();
        }
        self.flag.store(true, Ordering::Release);
    }
}

pub struct EmuVcpu {
    id: u32,
    cpu: Cpu,
    blocks: BlockCache,
    kick: Arc<EmuKick>,
    /// The exit handed out by the previous `run`, to complete now.
    in_flight: Option<Pending>,
    buf: [u8; 16],
    injected: Vec<Event>,
}

impl EmuVcpu {
    pub(crate) fn new(
        id: u32,
        mem: Arc<PhysMemory>,
        chip: Option<Arc<IrqChip>>,
        irq: Option<Arc<VcpuIrq>>,
    ) -> EmuVcpu {
        let flag = Arc::new(AtomicBool::new(false));
        let has_chip = chip.is_some();
        let mut cpu = Cpu::new(mem, chip, irq.clone(), id);
        cpu.kick = flag.clone();
        // With an irqchip, application processors wait for INIT/SIPI (as KVM).
        cpu.wait_for_sipi = has_chip && id != 0;
        EmuVcpu {
            id,
            cpu,
            blocks: BlockCache::new(),
            kick: Arc::new(EmuKick { flag, irq }),
            in_flight: None,
            buf: [0; 16],
            injected: Vec::new(),
        }
    }

    /// Run on `tier` from now on.
    pub fn set_tier(&mut self, tier: crate::jit::Tier) {
        self.cpu.set_tier(tier);
    }

    /// Finish the access of the previous exit.
    fn complete_exit(&mut self) {
        match self.in_flight.take() {
            Some(Pending::IoIn { size, .. }) | Some(Pending::MmioRead { size, .. }) => {
                let n = usize::from(size).min(8);
                let mut b = [0u8; 8];
                b[..n].copy_from_slice(&self.buf[..n]);
                self.cpu.replay.push(u64::from_le_bytes(b));
                self.cpu.pending = None;
            }
            Some(Pending::Debug(hit)) => {
                self.cpu.pending = None;
                // Resume past the breakpoint that stopped us (as RF does).
                self.cpu.skip_breakpoint = matches!(hit, DebugHit::Breakpoint(_));
            }
            _ => {}
        }
    }

    /// Hand out the next exit of `p`.
    fn exit_for(&mut self, p: Pending) -> VcpuExit<'_> {
        self.in_flight = Some(p.clone());
        match p {
            Pending::IoIn { port, size } => {
                self.buf = [0; 16];
                VcpuExit::IoIn {
                    port,
                    size,
                    data: &mut self.buf[..usize::from(size)],
                }
            }
            Pending::IoOut { port, size, data } => {
                self.buf[..4].copy_from_slice(&data);
                VcpuExit::IoOut {
                    port,
                    size,
                    data: &self.buf[..usize::from(size)],
                }
            }
            Pending::MmioRead { addr, size } => {
                self.buf = [0; 16];
                VcpuExit::MmioRead {
                    addr,
                    data: &mut self.buf[..usize::from(size)],
                }
            }
            Pending::MmioWrite { addr, size, data } => {
                self.buf = data;
                VcpuExit::MmioWrite {
                    addr,
                    data: &self.buf[..usize::from(size)],
                }
            }
            Pending::Hlt => VcpuExit::Hlt,
            Pending::Debug(hit) => VcpuExit::Debug {
                rip: self.cpu.rip,
                hit,
            },
        }
    }

    /// Take interrupts from the irqchip and injected events, if deliverable.
    fn service_events(&mut self) -> std::result::Result<(), Stop> {
        let cpu = &mut self.cpu;
        if let Some(irq) = cpu.irq.clone() {
            if irq.events().load(Ordering::Relaxed) != 0 {
                cpu.intr_pending = irq.poll(Instant::now());
            }
            if irq.take_nmi() {
                self.injected.push(Event::Nmi);
            }
            if irq.take_init() {
                // INIT: back to the reset state, waiting for a start-up IPI.
                cpu.reset();
                cpu.wait_for_sipi = true;
                self.blocks.clear();
            }
            if let Some(vector) = irq.take_sipi() {
                if cpu.wait_for_sipi {
                    cpu.start_at_sipi(vector);
                }
            }
        }
        // Injected events: NMI and exceptions at once, interrupts when IF allows.
        let mut i = 0;
        while i < self.injected.len() {
            let ev = self.injected[i];
            let cpu = &mut self.cpu;
            let deliverable = match ev {
                Event::Nmi => !cpu.nmi_blocked && !cpu.interrupt_shadow,
                Event::Exception { .. } => true,
                Event::Interrupt(_) => cpu.flags.if_() && !cpu.interrupt_shadow,
            };
            if !deliverable {
                i += 1;
                continue;
            }
            self.injected.remove(i);
            let r = match ev {
                Event::Nmi => {
                    cpu.halted = false;
                    let r = cpu.deliver_event(x86::NMI, None, EventKind::Nmi);
                    cpu.nmi_blocked = true;
                    r
                }
                Event::Exception { vector, error_code } => {
                    cpu.deliver_event(vector, error_code, EventKind::Exception)
                }
                Event::Interrupt(v) => {
                    cpu.halted = false;
                    cpu.deliver_event(v, None, EventKind::External)
                }
            };
            if let Err(f) = r {
                return Err(stop_of(f));
            }
        }
        let cpu = &mut self.cpu;
        if cpu.intr_pending && cpu.flags.if_() && !cpu.interrupt_shadow {
            if let Some(irq) = cpu.irq.clone() {
                match irq.acknowledge() {
                    Some(v) => {
                        cpu.halted = false;
                        cpu.deliver_event(v, None, EventKind::External)
                            .map_err(stop_of)?;
                        // More may be waiting: ask again at the next boundary.
                        cpu.intr_pending = irq.poll(Instant::now());
                    }
                    None => cpu.intr_pending = false,
                }
            }
        }
        Ok(())
    }

    fn run_until_exit(&mut self) -> Out {
        loop {
            if let Some(p) = self.cpu.posted.pop_front() {
                return Out::Access(p);
            }
            if let Some(p) = self.cpu.pending.clone() {
                return Out::Access(p);
            }
            // The instruction an exit answered runs first (see `Cpu::run`):
            // a kick then leaves at an instruction boundary, where
            // `save_state` can see the whole state.
            let answered = !self.cpu.replay.is_empty();
            // Both signs of a kick are taken together: one left behind
            // (the events bit without the flag) would end every `Cpu::run`
            // at once with `Stop::Event`, and the guest would never run.
            if !answered {
                let flag = self.kick.flag.swap(false, Ordering::AcqRel);
                // A load first: the events word is shared with the timers,
                // and most passes here find no kick.
                let bit = self.cpu.irq.as_ref().is_some_and(|irq| {
                    irq.events().load(Ordering::Relaxed) & crate::irq::EV_KICK != 0
                        && irq.kicked_take()
                });
                if flag || bit {
                    return Out::Interrupted;
                }
            }
            if answered {
                let stop = self.cpu.run(&mut self.blocks);
                if let Some(e) = self.stop_exit(stop) {
                    return e;
                }
                continue;
            }
            if let Err(stop) = self.service_events() {
                if let Some(e) = self.stop_exit(stop) {
                    return e;
                }
                continue;
            }
            if self.cpu.wait_for_sipi {
                match self.cpu.irq.clone() {
                    Some(irq) => {
                        irq.halt_wait_if(false);
                        continue;
                    }
                    None => return Out::Hlt,
                }
            }
            match self.cpu.run(&mut self.blocks) {
                Stop::Exit | Stop::Event | Stop::Debug => continue,
                Stop::Halted => match self.cpu.irq.clone() {
                    Some(irq) => irq.halt_wait_if(self.cpu.flags.if_()),
                    None => return Out::Hlt,
                },
                stop @ (Stop::Shutdown | Stop::Internal) => {
                    if let Some(e) = self.stop_exit(stop) {
                        return e;
                    }
                }
            }
        }
    }

    fn stop_exit(&mut self, stop: Stop) -> Option<Out> {
        match stop {
            Stop::Shutdown => Some(Out::Shutdown),
            Stop::Internal => Some(Out::Internal(format!(
                "vCPU {}: {} (cs={:#x} rip={:#x})",
                self.id,
                self.cpu.error,
                self.cpu.seg[Seg::Cs as usize].selector,
                self.cpu.rip
            ))),
            _ => None,
        }
    }
}

/// What `run` hands out, before borrowing the exit buffer.
enum Out {
    Access(Pending),
    Hlt,
    Interrupted,
    Shutdown,
    Internal(String),
}

fn stop_of(f: crate::cpu::Fault) -> Stop {
    match f {
        crate::cpu::Fault::Internal => Stop::Internal,
        crate::cpu::Fault::Exit => Stop::Exit,
        _ => Stop::Shutdown,
    }
}

fn seg_to_api(s: &Segment) -> Segment {
    *s
}

impl Vcpu for EmuVcpu {
    fn id(&self) -> u32 {
        self.id
    }

    fn run(&mut self) -> Result<VcpuExit<'_>> {
        self.complete_exit();
        match self.run_until_exit() {
            Out::Access(p) => Ok(self.exit_for(p)),
            Out::Hlt => Ok(VcpuExit::Hlt),
            Out::Interrupted => Ok(VcpuExit::Interrupted),
            Out::Shutdown => Ok(VcpuExit::Shutdown),
            Out::Internal(m) => Ok(VcpuExit::InternalError(m)),
        }
    }

    fn kick_handle(&self) -> Arc<dyn VcpuKick> {
        self.kick.clone()
    }

    fn regs(&self) -> Result<Regs> {
        let mut r = Regs::default();
        r.set_gprs(&self.cpu.gpr);
        r.rip = self.cpu.rip;
        r.rflags = self.cpu.flags.rflags();
        Ok(r)
    }

    fn set_regs(&mut self, regs: &Regs) -> Result<()> {
        self.cpu.gpr = regs.gprs();
        self.cpu.rip = regs.rip;
        self.cpu.flags.set_rflags(regs.rflags);
        self.cpu.update_mode();
        Ok(())
    }

    fn sregs(&self) -> Result<Sregs> {
        let c = &self.cpu;
        Ok(Sregs {
            cs: seg_to_api(&c.seg[Seg::Cs as usize]),
            ds: seg_to_api(&c.seg[Seg::Ds as usize]),
            es: seg_to_api(&c.seg[Seg::Es as usize]),
            fs: seg_to_api(&c.seg[Seg::Fs as usize]),
            gs: seg_to_api(&c.seg[Seg::Gs as usize]),
            ss: seg_to_api(&c.seg[Seg::Ss as usize]),
            tr: c.tr,
            ldt: c.ldtr,
            gdt: c.gdtr,
            idt: c.idtr,
            cr0: c.cr0,
            cr2: c.cr2,
            cr3: c.cr3,
            cr4: c.cr4,
            cr8: c.irq.as_ref().map_or(0, |i| i.cr8()),
            efer: c.efer,
            apic_base: c
                .irq
                .as_ref()
                .and_then(|i| i.rdmsr(x86::MSR_IA32_APIC_BASE))
                .unwrap_or(0),
        })
    }

    fn set_sregs(&mut self, s: &Sregs) -> Result<()> {
        let c = &mut self.cpu;
        c.seg[Seg::Cs as usize] = s.cs;
        c.seg[Seg::Ds as usize] = s.ds;
        c.seg[Seg::Es as usize] = s.es;
        c.seg[Seg::Fs as usize] = s.fs;
        c.seg[Seg::Gs as usize] = s.gs;
        c.seg[Seg::Ss as usize] = s.ss;
        c.tr = s.tr;
        c.ldtr = s.ldt;
        c.gdtr = s.gdt;
        c.idtr = s.idt;
        c.cr0 = s.cr0;
        c.cr2 = s.cr2;
        c.cr3 = s.cr3;
        c.cr4 = s.cr4;
        c.efer = s.efer;
        if let Some(irq) = &c.irq {
            irq.set_cr8(s.cr8);
            if s.apic_base != 0 {
                irq.wrmsr(x86::MSR_IA32_APIC_BASE, s.apic_base);
            }
        }
        c.update_mode();
        c.cpl = match c.mode {
            Mode::Real => 0,
            Mode::Vm86 => 3,
            _ => s.ss.dpl & 3,
        };
        c.tlb.flush_all();
        self.blocks.clear();
        Ok(())
    }

    fn fpu(&self) -> Result<Fpu> {
        Ok(self.cpu.fpu.to_api())
    }

    fn set_fpu(&mut self, fpu: &Fpu) -> Result<()> {
        self.cpu.fpu.from_api(fpu);
        Ok(())
    }

    fn msrs(&self, indices: &[u32]) -> Result<Vec<(u32, u64)>> {
        // rdmsr needs &mut for its fault bookkeeping: work on a scratch copy
        // of nothing but the MSR state by temporarily borrowing mutably.
        let mut out = Vec::with_capacity(indices.len());
        for &i in indices {
            match self.cpu.peek_msr(i) {
                Some(v) => out.push((i, v)),
                None => {
                    return Err(Error::Invalid(format!(
                        "MSR {i:#x} is not known to the emu engine"
                    )))
                }
            }
        }
        Ok(out)
    }

    fn set_msrs(&mut self, msrs: &[(u32, u64)]) -> Result<()> {
        for &(i, v) in msrs {
            if self.cpu.wrmsr(i, v).is_err() {
                return Err(Error::Invalid(format!(
                    "MSR {i:#x} cannot be set to {v:#x} on the emu engine"
                )));
            }
        }
        Ok(())
    }

    fn set_cpuid(&mut self, entries: &[CpuidEntry]) -> Result<()> {
        self.cpu.cpuid = entries.to_vec();
        Ok(())
    }

    fn inject(&mut self, event: Event) -> Result<()> {
        self.injected.push(event);
        Ok(())
    }

    fn translate(&self, gva: u64) -> Result<Option<Translation>> {
        Ok(self
            .cpu
            .translate_debug(gva)
            .map(|(phys, writable, user)| Translation {
                phys,
                writable,
                user,
            }))
    }

    fn save_state(&self) -> Result<Vec<u8>> {
        Ok(self.save_neutral()?.to_bytes())
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        let s = kite_hypervisor::state::VcpuState::from_bytes(state)?;
        self.restore_neutral(&s)
    }

    fn set_guest_debug(&mut self, debug: &GuestDebug) -> Result<()> {
        // As many as the debug registers hold, like the kvm engine;
        // software breakpoints are checked per instruction, without a limit.
        let hw = debug.breakpoints.len() + debug.watchpoints.len();
        if hw > HW_DEBUG_SLOTS {
            return Err(Error::Invalid(format!(
                "{hw} hardware breakpoints and watchpoints requested; at most {HW_DEBUG_SLOTS} are supported"
            )));
        }
        if let Some(w) = debug.watchpoints.iter().find(|w| !w.is_valid()) {
            return Err(Error::Invalid(format!(
                "watchpoint of {} bytes at {:#x}: the length must be 1, 2, 4 or 8 and the address aligned to it",
                w.len, w.addr
            )));
        }
        self.cpu.single_step = debug.single_step;
        let mut all = debug.breakpoints.clone();
        all.extend(&debug.sw_breakpoints);
        all.sort_unstable();
        all.dedup();
        self.cpu.breakpoints = all;
        self.cpu.watchpoints = debug.watchpoints.clone();
        self.cpu.watch_hit = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kicker sets the irqchip's events bit and then the flag; a vCPU
    /// may take the flag between the two. The bit left behind must still
    /// count as a kick: `run` returns Interrupted rather than spinning on
    /// an events word that never clears (a guest that stopped running after
    /// a QMP `stop` raced its `cont`).
    #[test]
    fn a_kick_seen_only_in_the_events_word_still_interrupts_run() {
        let chip = IrqChip::new(false);
        let irq = chip.add_vcpu(0);
        let mut vcpu = EmuVcpu::new(
            0,
            Arc::new(PhysMemory::new()),
            Some(chip),
            Some(irq.clone()),
        );
        irq.kick();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let interrupted = matches!(vcpu.run(), Ok(VcpuExit::Interrupted));
            let _ = tx.send((interrupted, irq.kicked_take()));
        });
        let (interrupted, left) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("run did not return: the vCPU spins on a kick it cannot take");
        assert!(interrupted, "a kick ends run with Interrupted");
        assert!(!left, "the events bit was taken with the kick");
    }
}
