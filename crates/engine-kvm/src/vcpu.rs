//! `KvmVcpu`: a KVM vCPU file descriptor, its `kvm_run` page and exits.

use std::sync::Arc;

use kite_hypervisor::exit::SystemEvent;
use kite_hypervisor::{
    CpuidEntry, DebugHit, Error, Event, Fpu, GuestDebug, Regs, Result, Sregs, Translation, Vcpu,
    VcpuExit, VcpuKick, WatchAccess, Watchpoint, HW_DEBUG_SLOTS,
};
use kvm_bindings::{
    kvm_guest_debug, kvm_msr_entry, CpuId, Msrs, KVM_EXIT_IO_IN, KVM_GUESTDBG_ENABLE,
    KVM_GUESTDBG_INJECT_BP, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP,
    KVM_GUESTDBG_USE_SW_BP, KVM_INTERNAL_ERROR_DELIVERY_EV, KVM_INTERNAL_ERROR_EMULATION,
    KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES, KVM_INTERNAL_ERROR_SIMUL_EX,
    KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit as KvmExit, VcpuFd};

use crate::convert::{
    cpuid_to_kvm, fpu_from_kvm, fpu_to_kvm, regs_from_kvm, regs_to_kvm, sregs_from_kvm,
    sregs_to_kvm,
};
use crate::kick::KickState;
use crate::page_walk::{self, Slots};
use crate::sw_breakpoints::{self, SwPatches};

mod state;

/// DR6: breakpoint condition detected, one bit per DR0-DR3.
const DR6_B_MASK: u64 = 0xf;
/// DR6: single step.
const DR6_BS: u64 = 1 << 14;
/// The #BP vector (an INT3 that KVM_GUESTDBG_USE_SW_BP intercepted).
const BP_VECTOR: u32 = 3;

/// What a debug register was set up for.
#[derive(Debug, Clone, Copy)]
enum DebugSlot {
    Breakpoint(u64),
    Watchpoint(Watchpoint),
}

/// A vCPU on /dev/kvm.
pub struct KvmVcpu {
    id: u32,
    fd: VcpuFd,
    /// Size of the `kvm_run` mapping, to check the I/O data offset against.
    run_size: usize,
    kick: Arc<KickState>,
    /// The VM's memory slots, for page-table walks.
    slots: Slots,
    /// The VM has the in-kernel irqchip (this vCPU has a local APIC).
    irqchip: bool,
    /// The MSRs KVM saves and restores.
    msr_list: Arc<Vec<u32>>,
    /// What DR0-DR3 hold, as the last `set_guest_debug` placed them.
    debug_slots: Vec<DebugSlot>,
    /// What the last `set_guest_debug` asked for.
    debug: GuestDebug,
    /// The VM's INT3 patches (software breakpoints).
    patches: SwPatches,
    /// The last exit was the breakpoint at this address: step past it
    /// (without it) before running on.
    step_over: Option<u64>,
    /// That step is under way.
    stepping_over: Option<u64>,
}

/// An exit with the borrow of the `kvm_run` page dropped; the data-carrying
/// ones are re-read from `kvm_run`.
/// The `kvm_debug_exit_arch` fields a debug exit is explained by.
#[derive(Debug, Clone, Copy)]
struct DebugInfo {
    exception: u32,
    pc: u64,
    dr6: u64,
}

enum RawExit {
    Io,
    Mmio,
    Hlt,
    Shutdown,
    FailEntry(u64),
    SystemEvent(u32),
    Debug(DebugInfo),
    Interrupted,
    InternalError,
    Other(String),
}

impl KvmVcpu {
    /// Program KVM with `self.debug`, leaving out the breakpoint being
    /// stepped over (and stepping instead).
    fn apply_debug(&mut self) -> Result<()> {
        let skip = self.stepping_over;
        let debug = self.debug.clone();
        let mut slots: Vec<DebugSlot> = debug
            .breakpoints
            .iter()
            .filter(|&&a| Some(a) != skip)
            .map(|&a| DebugSlot::Breakpoint(a))
            .collect();
        slots.extend(debug.watchpoints.iter().map(|&w| DebugSlot::Watchpoint(w)));
        // Software breakpoints take the debug registers left free (they work
        // on every KVM); only the rest become INT3 in guest memory.
        let mut sw = Vec::new();
        for &addr in debug.sw_breakpoints.iter().filter(|&&a| Some(a) != skip) {
            if slots
                .iter()
                .any(|s| matches!(s, DebugSlot::Breakpoint(a) if *a == addr))
            {
                continue;
            }
            if slots.len() < HW_DEBUG_SLOTS {
                slots.push(DebugSlot::Breakpoint(addr));
            } else {
                sw.push((addr, self.translate(addr)?.map(|t| t.phys)));
            }
        }
        sw_breakpoints::sync(&self.patches, &self.slots, &sw)?;

        let mut kvm = kvm_guest_debug::default();
        let stepping = debug.single_step || skip.is_some();
        if stepping || !slots.is_empty() || !sw.is_empty() {
            kvm.control = KVM_GUESTDBG_ENABLE;
        }
        if stepping {
            kvm.control |= KVM_GUESTDBG_SINGLESTEP;
        }
        if !sw.is_empty() {
            kvm.control |= KVM_GUESTDBG_USE_SW_BP;
        }
        if !slots.is_empty() {
            kvm.control |= KVM_GUESTDBG_USE_HW_BP;
            let mut dr7 = 0u64;
            for (i, slot) in slots.iter().enumerate() {
                // Global enable Gi; then R/W and LEN (zero: execution).
                dr7 |= 1 << (2 * i + 1);
                match *slot {
                    DebugSlot::Breakpoint(addr) => kvm.arch.debugreg[i] = addr,
                    DebugSlot::Watchpoint(w) => {
                        kvm.arch.debugreg[i] = w.addr;
                        let rw: u64 = match w.access {
                            WatchAccess::Write => 0b01,
                            WatchAccess::ReadWrite => 0b11,
                        };
                        let len: u64 = match w.len {
                            1 => 0b00,
                            2 => 0b01,
                            8 => 0b10,
                            _ => 0b11,
                        };
                        dr7 |= (rw | (len << 2)) << (16 + 4 * i);
                    }
                }
            }
            kvm.arch.debugreg[7] = dr7;
        }
        self.fd
            .set_guest_debug(&kvm)
            .map_err(|e| Error::host("KVM_SET_GUEST_DEBUG", e))?;
        self.debug_slots = slots;
        Ok(())
    }

    /// Hand an intercepted INT3 back to the guest (KVM queues the #BP when
    /// told), then restore the debug state.
    fn inject_guest_bp(&mut self) -> Result<()> {
        let mut kvm = kvm_guest_debug {
            control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_INJECT_BP,
            ..Default::default()
        };
        kvm.arch.debugreg = [0; 8];
        self.fd
            .set_guest_debug(&kvm)
            .map_err(|e| Error::host("KVM_SET_GUEST_DEBUG (inject #BP)", e))?;
        self.apply_debug()
    }

    /// After an intercepted INT3: RIP back at the breakpoint (where the
    /// instruction it replaced starts), whichever side of the INT3 KVM left it.
    fn rewind_int3(&mut self, addr: u64) -> Result<u64> {
        let mut regs = self.regs()?;
        let sregs = self.sregs()?;
        let target = addr.wrapping_sub(sregs.cs.base);
        if regs.rip != target {
            regs.rip = target;
            self.set_regs(&regs)?;
        }
        Ok(target)
    }

    /// Why KVM stopped with a debug exit: DR6 names the debug register (or
    /// the single step); an intercepted INT3 is a software breakpoint.
    fn debug_hit(&self, info: DebugInfo) -> DebugHit {
        if info.exception == BP_VECTOR {
            // KVM reports the INT3's address; allow for one past it too.
            return [info.pc, info.pc.wrapping_sub(1)]
                .into_iter()
                .find(|a| self.debug.sw_breakpoints.contains(a))
                .map_or(DebugHit::Unknown, DebugHit::Breakpoint);
        }
        let b = info.dr6 & DR6_B_MASK;
        if b != 0 {
            let index = b.trailing_zeros() as usize;
            return match self.debug_slots.get(index) {
                Some(DebugSlot::Breakpoint(addr)) => DebugHit::Breakpoint(*addr),
                Some(DebugSlot::Watchpoint(w)) => DebugHit::Watchpoint(*w),
                None => DebugHit::Unknown,
            };
        }
        if info.dr6 & DR6_BS != 0 {
            return DebugHit::Step;
        }
        DebugHit::Unknown
    }

    pub(crate) fn new(
        id: u32,
        mut fd: VcpuFd,
        run_size: usize,
        slots: Slots,
        irqchip: bool,
        msr_list: Arc<Vec<u32>>,
        patches: SwPatches,
    ) -> Self {
        let immediate_exit: *mut u8 = &mut fd.get_kvm_run().immediate_exit;
        KvmVcpu {
            id,
            fd,
            run_size,
            kick: Arc::new(KickState::new(immediate_exit)),
            slots,
            irqchip,
            msr_list,
            debug_slots: Vec::new(),
            debug: GuestDebug::default(),
            patches,
            step_over: None,
            stepping_over: None,
        }
    }

    fn raw_run(&mut self) -> Result<RawExit> {
        self.kick.enter_run();
        let result = self.fd.run();
        self.kick.leave_run();
        let exit = match result {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                self.kick.clear();
                return Ok(RawExit::Interrupted);
            }
            Err(e) => return Err(Error::host("KVM_RUN", e)),
        };
        Ok(match exit {
            KvmExit::IoIn(..) | KvmExit::IoOut(..) => RawExit::Io,
            KvmExit::MmioRead(..) | KvmExit::MmioWrite(..) => RawExit::Mmio,
            KvmExit::Hlt => RawExit::Hlt,
            KvmExit::Shutdown => RawExit::Shutdown,
            KvmExit::FailEntry(reason, _cpu) => RawExit::FailEntry(reason),
            KvmExit::SystemEvent(kind, _) => RawExit::SystemEvent(kind),
            KvmExit::Debug(d) => RawExit::Debug(DebugInfo {
                exception: d.exception,
                pc: d.pc,
                dr6: d.dr6,
            }),
            KvmExit::Intr => {
                self.kick.clear();
                RawExit::Interrupted
            }
            KvmExit::InternalError => RawExit::InternalError,
            other => RawExit::Other(format!("{other:?}")),
        })
    }

    /// The I/O exit in `kvm_run`, with its data in the page after it.
    fn io_exit(&mut self) -> Result<VcpuExit<'_>> {
        let run_size = self.run_size;
        let run = self.fd.get_kvm_run();
        // SAFETY: the exit reason was KVM_EXIT_IO, so `io` is the live union field.
        let io = unsafe { run.__bindgen_anon_1.io };
        let len = usize::from(io.size) * io.count as usize;
        let offset = usize::try_from(io.data_offset).unwrap_or(usize::MAX);
        if offset.checked_add(len).is_none_or(|end| end > run_size) {
            return Ok(VcpuExit::InternalError(format!(
                "KVM reported port I/O data outside kvm_run (offset {offset:#x}, {len} bytes)"
            )));
        }
        let base = (run as *mut kvm_bindings::kvm_run).cast::<u8>();
        // SAFETY: offset..offset+len lies inside the kvm_run mapping (checked
        // above), which lives as long as `self.fd`, borrowed mutably here.
        let data = unsafe { std::slice::from_raw_parts_mut(base.add(offset), len) };
        Ok(if u32::from(io.direction) == KVM_EXIT_IO_IN {
            VcpuExit::IoIn {
                port: io.port,
                size: io.size,
                data,
            }
        } else {
            VcpuExit::IoOut {
                port: io.port,
                size: io.size,
                data,
            }
        })
    }

    fn mmio_exit(&mut self) -> VcpuExit<'_> {
        let run = self.fd.get_kvm_run();
        // SAFETY: the exit reason was KVM_EXIT_MMIO, so `mmio` is the live union field.
        let mmio = unsafe { &mut run.__bindgen_anon_1.mmio };
        let len = (mmio.len as usize).min(mmio.data.len());
        let addr = mmio.phys_addr;
        if mmio.is_write != 0 {
            VcpuExit::MmioWrite {
                addr,
                data: &mmio.data[..len],
            }
        } else {
            VcpuExit::MmioRead {
                addr,
                data: &mut mmio.data[..len],
            }
        }
    }

    fn internal_error(&mut self) -> String {
        let run = self.fd.get_kvm_run();
        // SAFETY: the exit reason was KVM_EXIT_INTERNAL_ERROR, so `internal` is live.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let data = &internal.data[..(internal.ndata as usize).min(internal.data.len())];
        let where_ = match self.fd.get_regs() {
            Ok(regs) => format!(" at RIP {:#x}", regs.rip),
            Err(_) => String::new(),
        };
        match internal.suberror {
            KVM_INTERNAL_ERROR_EMULATION => match emulation_bytes(data) {
                Some(bytes) => format!("KVM cannot emulate the instruction {bytes:02x?}{where_}"),
                None => format!("KVM cannot emulate an instruction{where_} (data {data:x?})"),
            },
            KVM_INTERNAL_ERROR_SIMUL_EX => {
                format!(
                    "KVM hit an exception while delivering an exception{where_} (data {data:x?})"
                )
            }
            KVM_INTERNAL_ERROR_DELIVERY_EV => {
                format!("KVM cannot deliver an event{where_} (data {data:x?})")
            }
            other => format!("KVM internal error, suberror {other}{where_} (data {data:x?})"),
        }
    }
}

/// The instruction bytes of a KVM_INTERNAL_ERROR_EMULATION report, when the
/// kernel included them: data[0] = flags, then a length byte and up to 15
/// instruction bytes, packed little-endian into the following words.
fn emulation_bytes(data: &[u64]) -> Option<Vec<u8>> {
    let flags = *data.first()?;
    if flags & u64::from(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) == 0 {
        return None;
    }
    let packed: Vec<u8> = data[1..].iter().flat_map(|w| w.to_le_bytes()).collect();
    let (&len, bytes) = packed.split_first()?;
    Some(bytes[..usize::from(len).min(15).min(bytes.len())].to_vec())
}

impl Drop for KvmVcpu {
    fn drop(&mut self) {
        self.kick.detach();
    }
}

impl Vcpu for KvmVcpu {
    fn id(&self) -> u32 {
        self.id
    }

    fn run(&mut self) -> Result<VcpuExit<'_>> {
        if let Some(addr) = self.step_over.take() {
            // Run the instruction at the breakpoint once, without it (the
            // resume flag would do for debug registers, but not every KVM
            // honours it, and INT3 needs its byte back).
            self.stepping_over = Some(addr);
            self.apply_debug()?;
        }
        let raw = loop {
            let raw = self.raw_run()?;
            if let RawExit::Debug(info) = &raw {
                if info.exception == BP_VECTOR && self.debug_hit(*info) == DebugHit::Unknown {
                    // The guest's own INT3, not a breakpoint of ours: the
                    // guest takes its #BP.
                    self.inject_guest_bp()?;
                    continue;
                }
            }
            if let (Some(_), RawExit::Debug(info)) = (self.stepping_over, &raw) {
                if info.exception != BP_VECTOR && info.dr6 & DR6_BS != 0 {
                    // Past it: put the breakpoint back.
                    self.stepping_over = None;
                    self.apply_debug()?;
                    if !self.debug.single_step {
                        continue;
                    }
                }
            }
            break raw;
        };
        Ok(match raw {
            RawExit::Io => return self.io_exit(),
            RawExit::Mmio => self.mmio_exit(),
            RawExit::Hlt => VcpuExit::Hlt,
            RawExit::Shutdown => VcpuExit::Shutdown,
            RawExit::FailEntry(reason) => VcpuExit::FailEntry { reason },
            RawExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN) => {
                VcpuExit::SystemEvent(SystemEvent::Shutdown)
            }
            RawExit::SystemEvent(KVM_SYSTEM_EVENT_RESET) => {
                VcpuExit::SystemEvent(SystemEvent::Reset)
            }
            RawExit::SystemEvent(KVM_SYSTEM_EVENT_CRASH) => VcpuExit::InternalError(
                "the guest reported a crash (KVM_SYSTEM_EVENT_CRASH)".into(),
            ),
            RawExit::SystemEvent(kind) => {
                VcpuExit::InternalError(format!("unexpected KVM system event type {kind}"))
            }
            RawExit::Debug(info) => {
                let hit = self.debug_hit(info);
                let mut rip = self.regs()?.rip;
                if let DebugHit::Breakpoint(addr) = hit {
                    self.step_over = Some(addr);
                    if info.exception == BP_VECTOR {
                        rip = self.rewind_int3(addr)?;
                    }
                }
                VcpuExit::Debug { rip, hit }
            }
            RawExit::Interrupted => VcpuExit::Interrupted,
            RawExit::InternalError => VcpuExit::InternalError(self.internal_error()),
            RawExit::Other(what) => VcpuExit::InternalError(format!("unexpected KVM exit: {what}")),
        })
    }

    fn kick_handle(&self) -> Arc<dyn VcpuKick> {
        self.kick.clone()
    }

    fn regs(&self) -> Result<Regs> {
        self.fd
            .get_regs()
            .map(|r| regs_from_kvm(&r))
            .map_err(|e| Error::host("KVM_GET_REGS", e))
    }

    fn set_regs(&mut self, regs: &Regs) -> Result<()> {
        self.fd
            .set_regs(&regs_to_kvm(regs))
            .map_err(|e| Error::host("KVM_SET_REGS", e))
    }

    fn sregs(&self) -> Result<Sregs> {
        self.fd
            .get_sregs()
            .map(|s| sregs_from_kvm(&s))
            .map_err(|e| Error::host("KVM_GET_SREGS", e))
    }

    fn set_sregs(&mut self, sregs: &Sregs) -> Result<()> {
        let current = self
            .fd
            .get_sregs()
            .map_err(|e| Error::host("KVM_GET_SREGS", e))?;
        self.fd
            .set_sregs(&sregs_to_kvm(sregs, &current))
            .map_err(|e| Error::host("KVM_SET_SREGS", e))
    }

    fn fpu(&self) -> Result<Fpu> {
        self.fd
            .get_fpu()
            .map(|f| fpu_from_kvm(&f))
            .map_err(|e| Error::host("KVM_GET_FPU", e))
    }

    fn set_fpu(&mut self, fpu: &Fpu) -> Result<()> {
        self.fd
            .set_fpu(&fpu_to_kvm(fpu))
            .map_err(|e| Error::host("KVM_SET_FPU", e))
    }

    fn msrs(&self, indices: &[u32]) -> Result<Vec<(u32, u64)>> {
        let entries: Vec<kvm_msr_entry> = indices
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
            .map_err(|e| Error::host("KVM_GET_MSRS", e))?;
        if read < indices.len() {
            return Err(Error::Invalid(format!(
                "MSR {:#x} is not known to KVM",
                indices[read]
            )));
        }
        Ok(msrs.as_slice().iter().map(|e| (e.index, e.data)).collect())
    }

    fn set_msrs(&mut self, values: &[(u32, u64)]) -> Result<()> {
        let entries: Vec<kvm_msr_entry> = values
            .iter()
            .map(|&(index, data)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let msrs = Msrs::from_entries(&entries)
            .map_err(|e| Error::Invalid(format!("too many MSRs in one request: {e:?}")))?;
        let written = self
            .fd
            .set_msrs(&msrs)
            .map_err(|e| Error::host("KVM_SET_MSRS", e))?;
        if written < values.len() {
            let (index, data) = values[written];
            return Err(Error::Invalid(format!(
                "KVM refused to set MSR {index:#x} to {data:#x} (unknown MSR or invalid value)"
            )));
        }
        Ok(())
    }

    fn set_cpuid(&mut self, entries: &[CpuidEntry]) -> Result<()> {
        let kvm: Vec<_> = entries.iter().map(cpuid_to_kvm).collect();
        let cpuid = CpuId::from_entries(&kvm)
            .map_err(|e| Error::Invalid(format!("too many CPUID entries: {e:?}")))?;
        self.fd
            .set_cpuid2(&cpuid)
            .map_err(|e| Error::host("KVM_SET_CPUID2", e))
    }

    fn inject(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Nmi => self.fd.nmi().map_err(|e| Error::host("KVM_NMI", e)),
            Event::Interrupt(vector) => {
                let mut events = self
                    .fd
                    .get_vcpu_events()
                    .map_err(|e| Error::host("KVM_GET_VCPU_EVENTS", e))?;
                events.interrupt.injected = 1;
                events.interrupt.nr = vector;
                events.interrupt.soft = 0;
                events.flags = 0;
                self.fd
                    .set_vcpu_events(&events)
                    .map_err(|e| Error::host("KVM_SET_VCPU_EVENTS", e))
            }
            Event::Exception { vector, error_code } => {
                if vector >= 32 {
                    return Err(Error::Invalid(format!(
                        "vector {vector} is not an exception"
                    )));
                }
                let mut events = self
                    .fd
                    .get_vcpu_events()
                    .map_err(|e| Error::host("KVM_GET_VCPU_EVENTS", e))?;
                events.exception.injected = 1;
                events.exception.nr = vector;
                events.exception.has_error_code = u8::from(error_code.is_some());
                events.exception.error_code = error_code.unwrap_or(0);
                events.flags = 0;
                self.fd
                    .set_vcpu_events(&events)
                    .map_err(|e| Error::host("KVM_SET_VCPU_EVENTS", e))
            }
        }
    }

    fn translate(&self, gva: u64) -> Result<Option<Translation>> {
        let t = self
            .fd
            .translate_gva(gva)
            .map_err(|e| Error::host("KVM_TRANSLATE", e))?;
        if t.valid == 0 {
            return Ok(None);
        }
        // KVM_TRANSLATE's permission bits are fixed on x86; walk for the real ones.
        let sregs = self
            .fd
            .get_sregs()
            .map_err(|e| Error::host("KVM_GET_SREGS", e))?;
        let (writable, user) = page_walk::permissions(&self.slots, &sregs, gva)
            .unwrap_or((t.writeable != 0, t.usermode != 0));
        Ok(Some(Translation {
            phys: t.physical_address,
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
        let hw = debug.breakpoints.len() + debug.watchpoints.len();
        if hw > HW_DEBUG_SLOTS {
            return Err(Error::Invalid(format!(
                "{hw} hardware breakpoints and watchpoints requested, KVM offers {HW_DEBUG_SLOTS} debug registers"
            )));
        }
        if let Some(w) = debug.watchpoints.iter().find(|w| !w.is_valid()) {
            return Err(Error::Invalid(format!(
                "watchpoint of {} bytes at {:#x}: the length must be 1, 2, 4 or 8 and the address aligned to it",
                w.len, w.addr
            )));
        }
        let before = std::mem::replace(&mut self.debug, debug.clone());
        let applied = self.apply_debug();
        if applied.is_err() {
            self.debug = before;
            // Best effort back to what was in force.
            let _ = self.apply_debug();
        }
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::emulation_bytes;

    #[test]
    fn emulation_failure_bytes_are_unpacked() {
        // As reported for `int 0x30; mov al, 2; out 0x10, al; hlt` with length 7.
        let data = [1, 0xf410_e602_b030_cd07, 0];
        assert_eq!(
            emulation_bytes(&data),
            Some(vec![0xcd, 0x30, 0xb0, 0x02, 0xe6, 0x10, 0xf4])
        );
        assert_eq!(emulation_bytes(&[0, 0x1234]), None);
        assert_eq!(emulation_bytes(&[]), None);
    }
}
