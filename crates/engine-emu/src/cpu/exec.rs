//! The execution loop: find (or decode) the block at RIP, run its handlers,
//! deliver interrupts and exceptions at block boundaries, and stop for exits.

use iced_x86::{Code, Instruction, Mnemonic};

use super::block_cache::BlockCache;
use super::{Cpu, Fault, Mode, Pending, Res};
use crate::mmu::page_walk::Access;
use kite_hypervisor::DebugHit;

/// Executes one decoded instruction. On `Ok`, `cpu.next_rip` is where
/// execution continues.
pub type Handler = fn(&mut Cpu, &Instruction) -> Res;

/// The handler for a decoded instruction: each instruction group offers its
/// own; what no group implements raises #UD and says so once.
pub fn handler_for(ins: &Instruction) -> Handler {
    if ins.is_invalid() {
        return invalid;
    }
    super::integer::handler(ins)
        .or_else(|| super::system::handler(ins))
        .or_else(|| super::fpu::handler(ins))
        .or_else(|| super::sse::handler(ins))
        .unwrap_or(unimplemented)
}

/// Instructions after which the block must end even though they do not
/// branch: they change state that decoding or interrupt checks depend on.
pub fn ends_block(ins: &Instruction) -> bool {
    ins.is_invalid()
        || matches!(
            ins.mnemonic(),
            Mnemonic::Mov if ins.op0_register().is_cr() || ins.op0_register().is_segment_register()
        )
        || matches!(
            ins.mnemonic(),
            Mnemonic::Sti
                | Mnemonic::Cli
                | Mnemonic::Popf
                | Mnemonic::Hlt
                | Mnemonic::Wrmsr
                | Mnemonic::Lmsw
                | Mnemonic::Clts
                | Mnemonic::Invlpg
                | Mnemonic::Lgdt
                | Mnemonic::Lidt
                | Mnemonic::Ltr
                | Mnemonic::Lldt
                | Mnemonic::Pop
                | Mnemonic::Xsetbv
                | Mnemonic::Rsm
                | Mnemonic::Cpuid
                | Mnemonic::Invpcid
                | Mnemonic::Swapgs
                | Mnemonic::Out
                | Mnemonic::Outsb
                | Mnemonic::Outsw
                | Mnemonic::Outsd
        ) && !matches!(
            ins.code(),
            Code::Pop_r16
                | Code::Pop_r32
                | Code::Pop_r64
                | Code::Pop_rm16
                | Code::Pop_rm32
                | Code::Pop_rm64
        )
}

fn invalid(_cpu: &mut Cpu, _ins: &Instruction) -> Res {
    Err(super::ud())
}

fn unimplemented(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.report_unimplemented(ins);
    Err(super::ud())
}

/// Why `run` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `cpu.pending` or `cpu.posted` holds an access that must leave.
    Exit,
    /// HLT with nothing to do; the caller sleeps until an event.
    Halted,
    /// The events word was set (kick, timer, interrupt): the caller checks.
    Event,
    /// Triple fault.
    Shutdown,
    /// `cpu.error` says why.
    Internal,
    /// Single-step or breakpoint.
    Debug,
}

impl Cpu {
    /// Print (once per address) that an instruction is not implemented.
    pub fn report_unimplemented(&mut self, ins: &Instruction) {
        let addr = self.rip;
        if self.reported_ud.len() < 64 && !self.reported_ud.contains(&addr) {
            self.reported_ud.push(addr);
            let mut bytes = vec![0u8; ins.len()];
            let lin = self.seg[super::Seg::Cs as usize].base.wrapping_add(addr);
            let shown = if self.read_lin_bytes(lin, &mut bytes, true).is_ok() {
                bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                "??".into()
            };
            eprintln!(
                "kite: emu: unimplemented instruction `{ins}` (bytes {shown}) at {:04x}:{addr:#x}; raising #UD",
                self.seg[super::Seg::Cs as usize].selector
            );
        }
    }

    /// Linear address of RIP.
    #[inline]
    pub fn rip_lin(&self) -> u64 {
        self.lin_of(self.rip)
    }

    #[inline]
    fn ip_mask(&self) -> u64 {
        match self.code_bits {
            64 => u64::MAX,
            32 => 0xffff_ffff,
            _ => 0xffff,
        }
    }

    /// Continue at `target` rather than at the next instruction. Every
    /// handler that moves RIP elsewhere comes here: the run loop tests only
    /// `end_block` to leave a block early.
    #[inline(always)]
    pub fn branch_to(&mut self, target: u64) {
        self.next_rip = target;
        self.end_block = true;
    }

    /// What a block link is valid in (see `BlockCache::follow`): the TLB
    /// epoch (bumped by flushes and code writes), user or supervisor fetch
    /// permission, and the code size.
    #[inline(always)]
    pub(crate) fn chain_ctx(&self) -> u64 {
        (self.tlb.epoch() << 8) | (u64::from(self.cpl == 3) << 7) | u64::from(self.code_bits)
    }

    /// The linear address of `rip` in the current CS (as `rip_lin`).
    #[inline(always)]
    pub(crate) fn lin_of(&self, rip: u64) -> u64 {
        if self.mode == Mode::Long {
            rip
        } else {
            self.seg[super::Seg::Cs as usize].base.wrapping_add(rip) & 0xffff_ffff
        }
    }

    /// The events word (with an irqchip; it also carries kicks, see
    /// `VcpuIrq::kick`) or the kick flag is set.
    #[inline(always)]
    fn event_signalled(&self) -> bool {
        match &self.irq {
            Some(irq) => irq.events().load(std::sync::atomic::Ordering::Relaxed) != 0,
            None => self.kick.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Per-instruction debug checks (breakpoints, single-step, TF) and the
    /// interrupt shadow only matter in a few blocks: decided once per block.
    /// So does answering an exit: the instruction that takes the replayed
    /// answers is the first one run (`replay_pos` is 0 on entry, and the log
    /// is cleared after it).
    #[inline(always)]
    fn needs_checked_run(&self) -> bool {
        !self.breakpoints.is_empty()
            || !self.watchpoints.is_empty()
            || !self.replay.is_empty()
            || self.single_step
            || self.interrupt_shadow
            || self.flags.get(kite_hypervisor::x86::RFLAGS_TF)
    }

    /// Whether the top of `run_blocks` would do nothing before running the
    /// next block but find it: no memory-epoch change, exit, event,
    /// deliverable interrupt, HLT, replayed answer, per-instruction check
    /// or profile sample (`jit::chain::chain_dynamic` goes on only then).
    #[inline(always)]
    pub(crate) fn chain_ready(&self) -> bool {
        self.mem.any_epoch.load(std::sync::atomic::Ordering::SeqCst) == self.seen_any_epoch
            && self.pending.is_none()
            && self.posted.is_empty()
            && !self.event_signalled()
            && !(self.intr_pending && self.flags.if_() && !self.interrupt_shadow)
            && !self.halted
            && !self.needs_checked_run()
            && self.profile.is_none()
    }

    /// Run guest code until something needs the caller.
    pub fn run(&mut self, blocks: &mut BlockCache) -> Stop {
        self.chain_events = match &self.irq {
            Some(irq) => irq.events() as *const _ as usize,
            None => &crate::jit::chain::NO_EVENTS as *const _ as usize,
        };
        self.chain_kick = std::sync::Arc::as_ptr(&self.kick) as usize;
        self.chain_any_epoch = std::sync::Arc::as_ptr(&self.mem.any_epoch) as usize;
        self.enter_guest();
        let stop = self.run_blocks(blocks);
        self.leave_guest();
        stop
    }

    fn run_blocks(&mut self, blocks: &mut BlockCache) -> Stop {
        // The block that just ran normally, to follow or learn its link.
        let mut prev: Option<u32> = None;
        // The chain slot of the exit the last translation left by (see
        // `jit::chain`), taken at each block boundary, and its generation.
        #[cfg(target_arch = "x86_64")]
        let mut exit_slot: usize = 0;
        #[cfg(target_arch = "x86_64")]
        let mut exit_gen: u32 = 0;
        // The translation at RIP declined at its entry: run the block on
        // the interpreter once.
        #[cfg(target_arch = "x86_64")]
        let mut declined = false;
        self.replay_pos = 0;
        loop {
            #[cfg(target_arch = "x86_64")]
            let from_slot = std::mem::take(&mut exit_slot);
            if self.sync_memory_epochs() {
                blocks.clear();
                prev = None;
            }
            if self.pending.is_some() || !self.posted.is_empty() {
                return Stop::Exit;
            }
            let event = self.event_signalled();
            // An instruction that an exit answered (`replay`) completes
            // before anything else happens: no event, kick or interrupt
            // comes between an IN or MMIO read and its instruction.
            let answered = !self.replay.is_empty();
            if event && !answered {
                return Stop::Event;
            }
            if self.intr_pending && self.flags.if_() && !self.interrupt_shadow && !answered {
                return Stop::Event;
            }
            if self.halted && !answered {
                return Stop::Halted;
            }
            let lin = self.rip_lin();
            let ctx = self.chain_ctx();
            let linked = prev.and_then(|p| blocks.follow(p, lin, ctx));
            let index = match linked.or_else(|| blocks.jump(lin, ctx)) {
                Some(i) => {
                    if let (None, Some(p)) = (linked, prev) {
                        blocks.link(p, lin, ctx, i);
                    }
                    i
                }
                None => match self
                    .translate_fetch(lin)
                    .and_then(|phys| blocks.get(self, lin, phys))
                {
                    Ok(i) => {
                        if let Some(p) = prev {
                            blocks.link(p, lin, ctx, i);
                        }
                        // Decoding may have seen a code write (a new
                        // context): file the block under the current one.
                        blocks.remember(lin, self.chain_ctx(), i);
                        i
                    }
                    Err(f) => {
                        prev = None;
                        match self.fault(f) {
                            Some(stop) => return stop,
                            None => continue,
                        }
                    }
                },
            };
            prev = None;
            self.end_block = false;
            if let Some(p) = self.profile.as_mut() {
                p.sample(lin, blocks.block(index).insns.len());
            }
            if self.needs_checked_run() {
                if let Some(stop) = self.run_block_checked(blocks.block(index)) {
                    return stop;
                }
                continue;
            }
            self.skip_breakpoint = false;
            #[cfg(target_arch = "x86_64")]
            if self.tier != crate::jit::Tier::Interp && !std::mem::take(&mut declined) {
                if let Some(code) = blocks.translation(index, self) {
                    // The exit the previous translation left by, if it was
                    // a chainable one and this block came straight after:
                    // from now on that exit goes on here by itself.
                    if from_slot != 0 && exit_gen == blocks.jit.cache.generation() {
                        // SAFETY: a slot of the current arena (the
                        // generation has not moved since it was named).
                        unsafe { crate::jit::chain::fill(from_slot, self, index, code as usize) };
                    }
                    self.jit_block = index;
                    self.jit_exit = 0;
                    // SAFETY: `code` is this block's translation (made for
                    // this RIP and code size, current cache generation); it
                    // touches only this `Cpu` and, through the handlers it
                    // calls, what they touch, and chains only into
                    // translations of the same generation (`jit::chain`).
                    // Nothing else uses the CPU or the block cache while it
                    // runs.
                    let status = unsafe { code(self as *mut Cpu) };
                    if status == crate::jit::translate::DECLINED {
                        // Nothing ran; `rip` is the start of the block that
                        // declined (the first, or one chained into).
                        declined = true;
                        blocks.jit.stats.declined += 1;
                        continue;
                    }
                    if status == crate::jit::translate::FAULTED {
                        let f = match self.jit_fault.take() {
                            Some(f) => f,
                            None => self.internal("generated code faulted without a fault"),
                        };
                        if let Some(stop) = self.fault(f) {
                            return stop;
                        }
                    } else {
                        // The last block that ran (chaining moves it on).
                        prev = Some(self.jit_block);
                        self.rip = self.next_rip;
                        exit_slot = self.jit_exit;
                        exit_gen = blocks.jit.cache.generation();
                    }
                    continue;
                }
            }
            let block = blocks.block(index);
            let ip_mask = self.ip_mask();
            prev = Some(index);
            // RIP lives in a register while straight-line code runs. A
            // handler that moves RIP anywhere but the next instruction
            // (`branch_to`), posts an exit or changes what decoding depends
            // on sets `end_block`: one flag ends the block early.
            let mut rip = self.rip;
            for d in block.insns.iter() {
                let fallthrough = rip.wrapping_add(d.ins.len() as u64) & ip_mask;
                self.rip = rip;
                self.next_rip = fallthrough;
                match (d.handler)(self, &d.ins) {
                    Ok(()) => {
                        if self.end_block {
                            break;
                        }
                        rip = fallthrough;
                    }
                    Err(f) => {
                        prev = None;
                        if let Some(stop) = self.fault(f) {
                            return stop;
                        }
                        break;
                    }
                }
            }
            // Where the block left off: after its last instruction, or where
            // the one that ended it went (a fault has set RIP itself).
            if prev.is_some() {
                self.rip = self.next_rip;
            }
        }
    }

    /// Run one block with the per-instruction checks: breakpoints,
    /// single-step, the trap flag and the interrupt shadow. `Some` stops `run`.
    fn run_block_checked(&mut self, block: &super::block_cache::Block) -> Option<Stop> {
        for d in block.insns.iter() {
            if !self.breakpoints.is_empty() && !self.skip_breakpoint {
                let lin = self.rip_lin();
                if self.breakpoints.binary_search(&lin).is_ok() {
                    self.pending = Some(Pending::Debug(DebugHit::Breakpoint(lin)));
                    return Some(Stop::Debug);
                }
            }
            self.skip_breakpoint = false;
            let fallthrough = self.rip.wrapping_add(d.ins.len() as u64) & self.ip_mask();
            self.next_rip = fallthrough;
            self.replay_pos = 0;
            let shadow = self.interrupt_shadow;
            let trap = self.flags.get(kite_hypervisor::x86::RFLAGS_TF);
            self.watch_hit = None;
            let answered = !self.replay.is_empty();
            match (d.handler)(self, &d.ins) {
                Ok(()) => {
                    self.rip = self.next_rip;
                    self.replay.clear();
                    if let Some(w) = self.watch_hit.take() {
                        // A data breakpoint traps after the access completes.
                        if shadow {
                            self.interrupt_shadow = false;
                        }
                        self.pending = Some(Pending::Debug(DebugHit::Watchpoint(w)));
                        return Some(Stop::Debug);
                    }
                    if shadow {
                        self.interrupt_shadow = false;
                    }
                    if trap {
                        // TF was set when the instruction began: #DB trap after it.
                        if let Err(f) = self.single_step_trap() {
                            if let Some(stop) = self.fault(f) {
                                return Some(stop);
                            }
                        }
                        return None;
                    }
                    if self.single_step {
                        self.pending = Some(Pending::Debug(DebugHit::Step));
                        return Some(Stop::Debug);
                    }
                    // After the instruction an exit answered, look at
                    // events again (a kick waits for it, see `run`).
                    if answered
                        || self.rip != fallthrough
                        || self.end_block
                        || !self.posted.is_empty()
                    {
                        return None;
                    }
                }
                Err(f) => {
                    self.watch_hit = None;
                    return self.fault(f);
                }
            }
        }
        None
    }

    /// Handle a fault from an instruction or a fetch; `Some` stops the loop.
    fn fault(&mut self, f: Fault) -> Option<Stop> {
        match f {
            Fault::Exit => Some(Stop::Exit),
            Fault::Internal => Some(Stop::Internal),
            Fault::TripleFault => Some(Stop::Shutdown),
            Fault::Exception(e) => {
                self.replay.clear();
                match self.deliver_exception(e) {
                    Ok(()) => None,
                    Err(Fault::TripleFault) => Some(Stop::Shutdown),
                    Err(Fault::Internal) => Some(Stop::Internal),
                    Err(Fault::Exit) => Some(Stop::Exit),
                    Err(Fault::Exception(_)) => Some(Stop::Shutdown),
                }
            }
        }
    }

    /// Fetch-side translation used by debuggers and `translate`.
    pub fn translate_debug(&self, lin: u64) -> Option<(u64, bool, bool)> {
        let regs = self.paging_regs();
        if self.cr0 & kite_hypervisor::x86::CR0_PG == 0 {
            return Some((lin, true, true));
        }
        crate::mmu::page_walk::walk_no_update(&self.slots, &regs, lin, Access::READ)
            .map(|w| (w.phys, w.writable, w.user))
    }
}
