//! `KiteTarget`: the machine as `gdbstub` sees it. Every vCPU is a gdb
//! thread (thread id = vCPU id + 1); registers and memory are read on the
//! halted vCPU's thread through the hub, memory by virtual address (the
//! vCPU's own translation, then guest RAM). Breakpoints (Z0/Z1) and
//! watchpoints (Z2-Z4) become the engines' `GuestDebug`; `monitor regs`
//! prints the segment and descriptor-table registers (with bases, limits
//! and types) and the control registers, which no gdb layout holds whole.
//!
//! It must not know sockets (the server's) nor how vCPU threads wait.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::sync::Arc;

use gdbstub::common::{Signal, Tid};
use gdbstub::outputln;
use gdbstub::stub::MultiThreadStopReason;
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps,
    SwBreakpoint, SwBreakpointOps, WatchKind,
};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::ext::target_description_xml_override::{
    TargetDescriptionXmlOverride, TargetDescriptionXmlOverrideOps,
};
use gdbstub::target::{Target, TargetError, TargetResult};
use kite_hypervisor::{DebugHit, Sregs, WatchAccess, Watchpoint, HW_DEBUG_SLOTS};
use vm_memory::{Bytes, GuestAddress};

use super::arch::{xml_x86_64, KiteRegs, KiteX86, XML_I386};
use super::hub::{DebugHub, Stop};
use super::regs;
use crate::control::DebugEvent;

/// The most bytes one memory request reads or writes (gdb asks for less).
const MAX_ACCESS: usize = 64 * 1024;
const PAGE: u64 = 4096;

/// A fatal target error: it ends the debugging session.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TargetFatal(pub String);

pub struct KiteTarget {
    hub: Arc<DebugHub>,
    /// gdb's x86-64 register layout (else i386's), for this connection.
    wide: bool,
    /// vCPUs gdb asked to single-step at the next resume.
    stepping: BTreeSet<u32>,
    /// vCPUs gdb asked by name to continue.
    continuing: BTreeSet<u32>,
    /// Only the vCPUs named run (gdb's scheduler locking).
    locked: bool,
    /// gdb's watch kind for each watchpoint piece, to report hits as asked.
    watch_kinds: Vec<(Watchpoint, WatchKind)>,
}

pub fn tid_of(vcpu: u32) -> Tid {
    NonZeroUsize::new(vcpu as usize + 1).unwrap_or(NonZeroUsize::MIN)
}

fn vcpu_of(tid: Tid) -> u32 {
    (tid.get() - 1) as u32
}

/// A non-fatal error gdb shows as "Cannot access memory" and the like.
fn soft<T>(e: impl std::fmt::Display) -> TargetResult<T, KiteTarget> {
    log::debug!("gdb: {e}");
    Err(TargetError::NonFatal)
}

/// Split `[addr, addr+len)` into pieces a debug register can watch.
fn watch_pieces(addr: u64, len: u64, access: WatchAccess) -> Option<Vec<Watchpoint>> {
    let mut out = Vec::new();
    let mut cur = addr;
    let end = addr.checked_add(len)?;
    while cur < end {
        let size = [8u64, 4, 2, 1]
            .into_iter()
            .find(|&s| cur.is_multiple_of(s) && cur + s <= end)?;
        out.push(Watchpoint {
            addr: cur,
            len: size as u8,
            access,
        });
        cur += size;
        if out.len() > HW_DEBUG_SLOTS {
            return None;
        }
    }
    Some(out)
}

impl KiteTarget {
    pub fn new(hub: Arc<DebugHub>, wide: bool) -> Self {
        KiteTarget {
            hub,
            wide,
            stepping: BTreeSet::new(),
            continuing: BTreeSet::new(),
            locked: false,
            watch_kinds: Vec::new(),
        }
    }

    pub fn hub(&self) -> &Arc<DebugHub> {
        &self.hub
    }

    /// What gdb hears about a stop.
    pub fn stop_reason(&self, stop: Stop) -> MultiThreadStopReason<u64> {
        let tid = tid_of(stop.vcpu);
        match stop.event {
            DebugEvent::TripleFault => MultiThreadStopReason::SignalWithThread {
                tid,
                signal: Signal::SIGSEGV,
            },
            DebugEvent::Hit(DebugHit::Breakpoint(addr)) if self.hub.is_sw_breakpoint(addr) => {
                MultiThreadStopReason::SwBreak(tid)
            }
            DebugEvent::Hit(DebugHit::Breakpoint(_)) => MultiThreadStopReason::HwBreak(tid),
            DebugEvent::Hit(DebugHit::Watchpoint(w)) => {
                let kind = self
                    .watch_kinds
                    .iter()
                    .find(|(piece, _)| *piece == w)
                    .map(|(_, k)| *k)
                    .unwrap_or(WatchKind::Write);
                MultiThreadStopReason::Watch {
                    tid,
                    kind,
                    addr: w.addr,
                }
            }
            DebugEvent::Hit(DebugHit::Step | DebugHit::Unknown) => {
                MultiThreadStopReason::SignalWithThread {
                    tid,
                    signal: Signal::SIGTRAP,
                }
            }
        }
    }

    /// Physical addresses of the pages `[addr, addr+len)` touches, as
    /// vCPU `vcpu` translates them (`None`: not mapped).
    fn translate(&self, vcpu: u32, addr: u64, len: usize) -> Result<Vec<Option<u64>>, String> {
        let first = addr & !(PAGE - 1);
        let last = addr.saturating_add(len.max(1) as u64 - 1) & !(PAGE - 1);
        let pages: Vec<u64> = (0..=(last - first) / PAGE)
            .map(|i| first + i * PAGE)
            .collect();
        self.hub
            .on_vcpu(vcpu, move |v| {
                pages
                    .iter()
                    .map(|&p| v.translate(p).ok().flatten().map(|t| t.phys))
                    .collect()
            })
            .map_err(|e| e.to_string())
    }

    /// Copy between guest memory at virtual `addr` and `len` bytes, page by
    /// page, stopping at the first page that is not mapped RAM. Returns the
    /// bytes done.
    fn access(
        &self,
        vcpu: u32,
        addr: u64,
        len: usize,
        mut each: impl FnMut(&vm_memory::GuestMemoryMmap, GuestAddress, usize, usize) -> bool,
    ) -> Result<usize, String> {
        let len = len.min(MAX_ACCESS);
        let mem = self.hub.memory().ok_or("the machine is between boots")?;
        let phys = self.translate(vcpu, addr, len)?;
        let mut done = 0usize;
        for page in phys {
            if done >= len {
                break;
            }
            let Some(page_phys) = page else { break };
            let cur = addr.wrapping_add(done as u64);
            let off = (cur & (PAGE - 1)) as usize;
            let n = (PAGE as usize - off).min(len - done);
            if !each(&mem, GuestAddress(page_phys + off as u64), done, n) {
                break;
            }
            done += n;
        }
        Ok(done)
    }

    fn set_watch(&mut self, addr: u64, len: u64, kind: WatchKind, add: bool) -> bool {
        let access = match kind {
            WatchKind::Write => WatchAccess::Write,
            // x86 cannot watch reads alone: a read watchpoint also stops on writes.
            WatchKind::Read | WatchKind::ReadWrite => WatchAccess::ReadWrite,
        };
        let Some(pieces) = watch_pieces(addr, len, access) else {
            return false;
        };
        let ok = self.hub.change_debug(|set| {
            for p in &pieces {
                if add {
                    set.watch.push(*p);
                } else if let Some(i) = set.watch.iter().position(|w| w == p) {
                    set.watch.remove(i);
                }
            }
            true
        });
        if ok {
            for p in pieces {
                if add {
                    self.watch_kinds.push((p, kind));
                } else if let Some(i) = self
                    .watch_kinds
                    .iter()
                    .position(|(w, k)| *w == p && *k == kind)
                {
                    self.watch_kinds.remove(i);
                }
            }
        }
        ok
    }

    fn print_sregs(out: &mut String, vcpu: u32, s: &Sregs) {
        let _ = writeln!(out, "vCPU {vcpu} (thread {}):", vcpu + 1);
        let _ = writeln!(
            out,
            "  cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} cr8={:#x} efer={:#x}",
            s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer
        );
        for (name, seg) in [
            ("cs", &s.cs),
            ("ds", &s.ds),
            ("es", &s.es),
            ("fs", &s.fs),
            ("gs", &s.gs),
            ("ss", &s.ss),
            ("tr", &s.tr),
            ("ldt", &s.ldt),
        ] {
            let _ = writeln!(
                out,
                "  {name:<3} selector={:#06x} base={:#x} limit={:#x} type={:#x} dpl={} l={} db={}",
                seg.selector,
                seg.base,
                seg.limit,
                seg.type_,
                seg.dpl,
                u8::from(seg.l),
                u8::from(seg.db)
            );
        }
        let _ = writeln!(
            out,
            "  gdt base={:#x} limit={:#x}  idt base={:#x} limit={:#x}  apic_base={:#x}",
            s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit, s.apic_base
        );
    }
}

impl Target for KiteTarget {
    type Arch = KiteX86;
    type Error = TargetFatal;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    fn support_target_description_xml_override(
        &mut self,
    ) -> Option<TargetDescriptionXmlOverrideOps<'_, Self>> {
        Some(self)
    }
}

impl TargetDescriptionXmlOverride for KiteTarget {
    fn target_description_xml(
        &self,
        annex: &[u8],
        offset: u64,
        length: usize,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        if annex != b"target.xml" {
            return Err(TargetError::NonFatal);
        }
        let xml = if self.wide { xml_x86_64() } else { XML_I386 }.as_bytes();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(xml.len());
        let end = start
            .saturating_add(length)
            .min(xml.len())
            .min(start + buf.len());
        buf[..end - start].copy_from_slice(&xml[start..end]);
        Ok(end - start)
    }
}

impl MultiThreadBase for KiteTarget {
    fn read_registers(&mut self, out: &mut KiteRegs, tid: Tid) -> TargetResult<(), Self> {
        let got = self
            .hub
            .on_vcpu(vcpu_of(tid), |v| -> kite_hypervisor::Result<_> {
                Ok((v.regs()?, v.sregs()?, v.fpu()?))
            });
        match got {
            Ok(Ok((r, s, f))) => {
                out.wide = self.wide;
                out.regs = regs::to_gdb(&r, &s, &f);
                out.system = regs::system_to_gdb(&s);
                Ok(())
            }
            Ok(Err(e)) => soft(e),
            Err(e) => soft(e),
        }
    }

    fn write_registers(&mut self, g: &KiteRegs, tid: Tid) -> TargetResult<(), Self> {
        let (g, wide, system) = (g.regs.clone(), g.wide, g.system);
        let done = self
            .hub
            .on_vcpu(vcpu_of(tid), move |v| -> kite_hypervisor::Result<()> {
                let (mut r, mut f) = (v.regs()?, v.fpu()?);
                let before = r;
                regs::from_gdb(&g, &mut r, &mut f);
                if !wide {
                    // The i386 layout has no high halves nor R8-R15: keep them.
                    regs::keep_high_halves(&before, &mut r);
                }
                v.set_regs(&r)?;
                v.set_fpu(&f)?;
                if wide {
                    let mut s = v.sregs()?;
                    let before = s;
                    regs::system_from_gdb(&system, &mut s);
                    if s != before {
                        v.set_sregs(&s)?;
                    }
                }
                Ok(())
            });
        match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => soft(e),
            Err(e) => soft(e),
        }
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let len = data.len();
        let done = self.access(vcpu_of(tid), start, len, |mem, gpa, at, n| {
            mem.read_slice(&mut data[at..at + n], gpa).is_ok()
        });
        match done {
            Ok(0) if len > 0 => soft(format!("nothing readable at {start:#x}")),
            Ok(n) => Ok(n),
            Err(e) => soft(e),
        }
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        let done = self.access(vcpu_of(tid), start, data.len(), |mem, gpa, at, n| {
            mem.write_slice(&data[at..at + n], gpa).is_ok()
        });
        match done {
            Ok(n) if n == data.len() => Ok(()),
            Ok(_) => soft(format!("not all of {start:#x} is writable RAM")),
            Err(e) => soft(e),
        }
    }

    fn list_active_threads(&mut self, each: &mut dyn FnMut(Tid)) -> Result<(), Self::Error> {
        for id in self.hub.vcpus() {
            each(tid_of(id));
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadResume for KiteTarget {
    fn resume(&mut self) -> Result<(), Self::Error> {
        let stepping = std::mem::take(&mut self.stepping);
        let continuing = std::mem::take(&mut self.continuing);
        let only = std::mem::take(&mut self.locked)
            .then(|| stepping.union(&continuing).copied().collect());
        self.hub.resume(stepping, only);
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.stepping.clear();
        self.continuing.clear();
        self.locked = false;
        Ok(())
    }

    fn set_resume_action_continue(
        &mut self,
        tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        // Signals mean nothing to a machine.
        self.continuing.insert(vcpu_of(tid));
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSchedulerLocking for KiteTarget {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        self.locked = true;
        Ok(())
    }
}

impl MultiThreadSingleStep for KiteTarget {
    fn set_resume_action_step(
        &mut self,
        tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        self.stepping.insert(vcpu_of(tid));
        Ok(())
    }
}

impl Breakpoints for KiteTarget {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for KiteTarget {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.hub.change_debug(|set| {
            set.sw.insert(addr);
            true
        }))
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.hub.change_debug(|set| set.sw.remove(&addr)))
    }
}

impl HwBreakpoint for KiteTarget {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.hub.change_debug(|set| {
            set.hw.push(addr);
            true
        }))
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self
            .hub
            .change_debug(|set| match set.hw.iter().position(|&a| a == addr) {
                Some(i) => {
                    set.hw.remove(i);
                    true
                }
                None => false,
            }))
    }
}

impl HwWatchpoint for KiteTarget {
    fn add_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        Ok(self.set_watch(addr, len, kind, true))
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        Ok(self.set_watch(addr, len, kind, false))
    }
}

impl MonitorCmd for KiteTarget {
    fn handle_monitor_cmd(
        &mut self,
        cmd: &[u8],
        mut out: ConsoleOutput<'_>,
    ) -> Result<(), Self::Error> {
        let cmd = String::from_utf8_lossy(cmd);
        match cmd.trim() {
            "regs" | "sregs" | "info registers" => {
                let mut text = String::new();
                for id in self.hub.vcpus() {
                    match self.hub.on_vcpu(id, |v| v.sregs()) {
                        Ok(Ok(s)) => Self::print_sregs(&mut text, id, &s),
                        Ok(Err(e)) => {
                            let _ = writeln!(text, "vCPU {id}: {e}");
                        }
                        Err(e) => {
                            let _ = writeln!(text, "vCPU {id}: {e}");
                        }
                    }
                }
                outputln!(out, "{}", text.trim_end());
            }
            _ => {
                outputln!(out, "kite monitor commands:");
                outputln!(
                    out,
                    "  regs   control registers (cr0-cr4, cr8, efer), segments with bases and limits, gdt/idt, of every vCPU"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_ranges_split_into_aligned_pieces() {
        let w = |addr, len| Watchpoint {
            addr,
            len,
            access: WatchAccess::Write,
        };
        assert_eq!(
            watch_pieces(0x1000, 4, WatchAccess::Write),
            Some(vec![w(0x1000, 4)])
        );
        assert_eq!(
            watch_pieces(0x1002, 4, WatchAccess::Write),
            Some(vec![w(0x1002, 2), w(0x1004, 2)])
        );
        assert_eq!(
            watch_pieces(0x1001, 7, WatchAccess::Write),
            Some(vec![w(0x1001, 1), w(0x1002, 2), w(0x1004, 4)])
        );
        assert_eq!(
            watch_pieces(0x1000, 64, WatchAccess::Write),
            None,
            "more than DR0-DR3"
        );
        assert_eq!(watch_pieces(u64::MAX, 2, WatchAccess::Write), None);
    }

    #[test]
    fn thread_ids_are_vcpu_ids_plus_one() {
        assert_eq!(tid_of(0).get(), 1);
        assert_eq!(vcpu_of(tid_of(3)), 3);
    }
}
