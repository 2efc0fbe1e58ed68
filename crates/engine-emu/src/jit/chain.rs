//! Block chaining: a translation that leaves at a known address (the end of
//! the block, a templated JMP or taken Jcc) goes on into the next block's
//! translation without returning to the run loop, when the run loop would
//! have done nothing but run that block.
//!
//! Each such exit owns a `ChainSlot`, filled by the run loop the first time
//! the exit is followed by a translated block (`Cpu::run_blocks`): the
//! successor's body, and the context its link holds in (`Cpu::chain_ctx`:
//! the TLB epoch, which moves with every TLB flush and every write to a
//! code page, user or supervisor fetch, code size), plus CS.base outside
//! 64-bit code. At the exit, generated code (`emit_exit`) goes on
//! into the successor only if, loaded inline:
//!
//! - the slot is filled and its context is the current one (the test
//!   `BlockCache::follow` makes before following a link);
//! - the irqchip's events word and the kick flag are clear, and the
//!   memory's `any_epoch` is the one this vCPU has caught up with: exactly
//!   the run loop's checks of events and memory epochs.
//!
//! The run loop's other checks cannot have changed since it entered the
//! first translation of the chain: an exit, an exit posted, HLT, a change
//! of IF, TF, the interrupt shadow, mode, CPL or code size all come from a
//! handler that sets `end_block` (the translation then leaves through its
//! handler path, which never chains) or from an instruction that ends a
//! decoded block (`exec::ends_block`; such a block's fall-through exit does
//! not chain); breakpoints, watchpoints, single-step and profiling are set
//! only outside `run`, and the run loop enters no translation while any is
//! on. A chain is therefore the run loop's path through the same blocks,
//! without the lookups.
//!
//! Slots live in one arena per vCPU, reset with the translation cache
//! (every translation that could name a slot is then stale); an arena
//! that is full gives no more slots until the next flush, and those exits
//! simply return.

use super::emitter::{Asm, Label, RAX, RCX, RDX, RSI};
use crate::cpu::block_cache::{jump_slot, JUMP_ENTRIES};
use crate::cpu::Cpu;

/// One exit's successor. `entry` 0: not known yet.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct ChainSlot {
    /// The successor translation's body (past its prologue).
    pub entry: usize,
    /// The context (`Cpu::chain_ctx`) in which the link holds.
    pub ctx: u64,
    /// CS.base when it was filled (compared by fixed exits outside 64-bit
    /// code: the linear address of a constant target moves with it; a change
    /// between legacy and compatibility mode, where it stops counting,
    /// flushes the TLB and so changes the context).
    pub base: u64,
    /// The successor's block (for the run loop's links).
    pub index: u32,
    /// Where the successor is: compared by `chain_dynamic` (a slot of the
    /// table it looks in serves whatever address hashes there); a fixed
    /// exit's target is a constant of its code.
    pub rip: u64,
    pub lin: u64,
}

/// Slots per arena (per vCPU, at most 8 MiB, touched as used).
pub const SLOTS: usize = 1 << 18;

/// The events word of a vCPU without an irqchip: never set.
pub static NO_EVENTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The arena: a vector that never grows past its capacity, so a slot's
/// address is stable until `reset`; and the table of slots for exits whose
/// target is known only at run time, by linear address.
#[derive(Default)]
pub struct Slots {
    v: Vec<ChainSlot>,
    table: Box<[ChainSlot]>,
}

impl Slots {
    /// The table `chain_dynamic` looks in.
    pub fn table(&mut self) -> *mut ChainSlot {
        if self.table.is_empty() {
            self.table = vec![ChainSlot::default(); JUMP_ENTRIES].into_boxed_slice();
        }
        self.table.as_mut_ptr()
    }

    /// A new empty slot, or `None` when the arena is full.
    pub fn alloc(&mut self) -> Option<*mut ChainSlot> {
        if self.v.capacity() == 0 {
            self.v = Vec::with_capacity(SLOTS);
        }
        if self.v.len() == self.v.capacity() {
            return None;
        }
        self.v.push(ChainSlot::default());
        self.v.last_mut().map(|s| s as *mut ChainSlot)
    }

    /// Forget every slot (the translations naming them are stale).
    pub fn reset(&mut self) {
        self.v.clear();
        self.table.fill(ChainSlot::default());
    }
}

mod off {
    use super::ChainSlot;
    use crate::cpu::{Cpu, Seg};
    use core::mem::offset_of;

    pub const ENTRY: usize = offset_of!(ChainSlot, entry);
    pub const CTX: usize = offset_of!(ChainSlot, ctx);
    pub const BASE: usize = offset_of!(ChainSlot, base);
    pub const INDEX: usize = offset_of!(ChainSlot, index);
    pub const TLB_EPOCH: usize = offset_of!(Cpu, tlb) + crate::mmu::tlb::layout::EPOCH;
    pub const CPL: usize = offset_of!(Cpu, cpl);
    pub const CS_BASE: usize = offset_of!(Cpu, seg)
        + Seg::Cs as usize * core::mem::size_of::<kite_hypervisor::Segment>()
        + offset_of!(kite_hypervisor::Segment, base);
    pub const EVENTS: usize = offset_of!(Cpu, chain_events);
    pub const KICK: usize = offset_of!(Cpu, chain_kick);
    pub const ANY_EPOCH: usize = offset_of!(Cpu, chain_any_epoch);
    pub const SEEN_ANY: usize = offset_of!(Cpu, seen_any_epoch);
    pub const RIP: usize = offset_of!(Cpu, rip);
    pub const END_BLOCK: usize = offset_of!(Cpu, end_block);
    pub const JIT_BLOCK: usize = offset_of!(Cpu, jit_block);
    pub const JIT_EXIT: usize = offset_of!(Cpu, jit_exit);
    pub const JIT_CHAINED: usize = offset_of!(Cpu, jit_chained);
}

/// Emit a chainable exit to `target` (a constant; `cpu.next_rip` holds it)
/// with `status` (DONE or ENDED) for the run loop if it does not chain.
/// `code_bits` is the translation's code size.
pub(super) fn emit_exit(
    a: &mut Asm,
    slot: *mut ChainSlot,
    target: u64,
    code_bits: u32,
    status: u64,
    exit: Label,
) {
    let out = a.label();
    a.mov_imm(RSI, slot as u64);
    a.load_from(true, RAX, RSI, off::ENTRY);
    a.test_rax();
    a.jcc(0x4, out); // jz: not filled
                     // rcx = chain_ctx() = epoch << 8 | (cpl == 3) << 7 | code size.
    a.load(true, RCX, off::TLB_EPOCH);
    a.shift_ri(4, true, RCX, 8); // shl
    a.movzx_r32_m8(RDX, off::CPL);
    a.alu_ri(super::emitter::AluOp::Cmp, false, RDX, 3);
    a.setcc_r8(0x4, RDX); // sete dl (edx's upper bits are 0: movzx)
    a.shift_ri(4, false, RDX, 7);
    a.alu_rr(super::emitter::AluOp::Or, true, RCX, RDX);
    a.alu_ri(super::emitter::AluOp::Or, true, RCX, code_bits as i32);
    a.cmp_r_mem(true, RCX, RSI, off::CTX);
    a.jcc(0x5, out); // jne
    if code_bits != 64 {
        a.load(true, RCX, off::CS_BASE);
        a.cmp_r_mem(true, RCX, RSI, off::BASE);
        a.jcc(0x5, out);
    }
    // Events and kicks.
    a.load(true, RCX, off::EVENTS);
    a.cmp_mem_imm8(false, RCX, 0, 0);
    a.jcc(0x5, out);
    a.load(true, RCX, off::KICK);
    a.cmp_mem_imm8(true, RCX, 0, 0);
    a.jcc(0x5, out);
    // Memory epochs.
    a.load(true, RCX, off::ANY_EPOCH);
    a.load_from(true, RCX, RCX, 0);
    a.cmp_r_mem(true, RCX, 3, off::SEEN_ANY);
    a.jcc(0x5, out);
    // Go on: as the run loop would, RIP = next_rip, a fresh block.
    a.mov_imm(RCX, target);
    a.store(true, RCX, off::RIP);
    a.store_u8(off::END_BLOCK, 0);
    a.load_from(false, RCX, RSI, off::INDEX);
    a.store(false, RCX, off::JIT_BLOCK);
    a.inc_mem64(off::JIT_CHAINED);
    a.jmp_rax();
    a.bind(out);
    a.store(true, RSI, off::JIT_EXIT);
    a.mov_imm(RAX, status);
    a.jmp(exit);
}

/// Fill `slot` (an exit of the translation that just ran) with `index`'s
/// translation at `entry`, found by the run loop at the exit's target.
///
/// # Safety
/// `slot` is a slot of the current arena: the cache's generation has not
/// moved since the exit named it.
pub(crate) unsafe fn fill(slot: usize, cpu: &Cpu, index: u32, entry: usize) {
    // SAFETY: see the function's contract.
    let s = unsafe { &mut *(slot as *mut ChainSlot) };
    *s = ChainSlot {
        entry: entry + Asm::PROLOGUE_LEN,
        ctx: cpu.chain_ctx(),
        base: cpu.seg[crate::cpu::Seg::Cs as usize].base,
        index,
        rip: cpu.rip,
        lin: cpu.rip_lin(),
    };
}

/// Emit the exit of a block that a handler ended (`rax` is its status:
/// ENDED, or FAULTED which returns as it is): into the translation at
/// `cpu.next_rip` if `chain_dynamic` finds one, else back to the run loop.
pub(super) fn emit_dynamic_exit(a: &mut Asm, table: *mut ChainSlot, exit: Label) {
    let stay = a.label();
    a.alu_ri(super::emitter::AluOp::Cmp, false, RAX, 1);
    a.jcc(0x5, exit); // jne: faulted
    a.arg0_cpu();
    a.mov_imm(RSI, table as u64);
    a.mov_imm(RAX, chain_dynamic as *const () as u64);
    a.call_rax();
    a.test_rax();
    a.jcc(0x4, stay); // jz
    a.jmp_rax();
    a.bind(stay);
    a.mov_imm(RAX, super::translate::ENDED);
    a.jmp(exit);
}

/// Called by generated code when a handler ended the block (a branch it
/// took, a mode change, an exit posted...), with `cpu.next_rip` where it
/// went: the body of the translation there to jump to, or 0 (then
/// `cpu.jit_exit` names the table's slot for the run loop to fill). After
/// a handler anything may have changed, so this makes every check of the
/// run loop's top (`Cpu::chain_ready`), and finds the successor as the
/// loop's jump cache does: by linear address in the current context.
///
/// # Safety
/// `cpu` is the vCPU running the translation (see `call_handler`); `table`
/// is its arena's table (`Slots::table`).
pub(crate) unsafe extern "sysv64" fn chain_dynamic(cpu: *mut Cpu, table: *mut ChainSlot) -> usize {
    // SAFETY: see the function's contract.
    let cpu = unsafe { &mut *cpu };
    let rip = cpu.next_rip;
    let lin = cpu.lin_of(rip);
    // SAFETY: `jump_slot` is below JUMP_ENTRIES, the table's length.
    let slot = unsafe { table.add(jump_slot(lin)) };
    // SAFETY: in the table, which lives as long as the arena.
    let s = unsafe { &*slot };
    if s.entry != 0 && s.lin == lin && s.rip == rip && s.ctx == cpu.chain_ctx() && cpu.chain_ready()
    {
        cpu.rip = rip;
        cpu.end_block = false;
        cpu.jit_block = s.index;
        cpu.jit_chained += 1;
        return s.entry;
    }
    cpu.jit_exit = slot as usize;
    0
}

#[cfg(test)]
mod tests {
    use iced_x86::code_asm::*;

    use crate::cpu::block_cache::BlockCache;
    use crate::cpu::exec::Stop;
    use crate::cpu::integer::test_support::{TestCpu, CODE};
    use crate::jit::Tier;

    /// Run `code` (64-bit) on `tier` to its stop: (stop, RIP, GPRs,
    /// blocks entered by chaining).
    fn run(code: &[u8], tier: Tier) -> (Stop, u64, [u64; 16], u64) {
        let mut c = TestCpu::new(64);
        c.write(CODE, code);
        c.cpu.rip = CODE;
        c.cpu.set_tier(tier);
        let mut blocks = BlockCache::new();
        let stop = c.cpu.run(&mut blocks);
        (stop, c.cpu.rip, c.cpu.gpr, c.cpu.jit_chained)
    }

    /// Run `code` on the interpreter (which must stop at its HLT, chaining
    /// nothing), then on the code-generating tiers, which must end in the
    /// same state having chained more than `min_chained` blocks. The
    /// interpreter's GPRs.
    fn tiers_agree(code: &[u8], min_chained: u64) -> [u64; 16] {
        let (stop, rip, gpr, chained) = run(code, Tier::Interp);
        assert_eq!(stop, Stop::Exit, "HLT leaves as an exit");
        assert_eq!(chained, 0);
        for tier in [Tier::All, Tier::Auto] {
            let got = run(code, tier);
            assert_eq!((got.0, got.1, got.2), (stop, rip, gpr), "{tier:?}");
            assert!(
                got.3 >= min_chained,
                "{tier:?}: only {} blocks chained",
                got.3
            );
        }
        gpr
    }

    /// Two blocks that jump to each other 1000 times, through a fall-through
    /// exit and a taken-branch exit: the same result on every tier, and on
    /// the code-generating ones the blocks run into each other.
    #[test]
    fn hot_blocks_run_into_each_other() {
        let mut a = CodeAssembler::new(64).unwrap();
        let mut top = a.create_label();
        let mut other = a.create_label();
        let mut done = a.create_label();
        a.mov(r14, 1000u64).unwrap();
        a.set_label(&mut top).unwrap();
        a.add(rax, r14).unwrap();
        a.dec(r14).unwrap();
        a.je(done).unwrap();
        a.jmp(other).unwrap();
        for _ in 0..40 {
            a.nop().unwrap();
        }
        a.set_label(&mut other).unwrap();
        a.xor(rbx, rax).unwrap();
        a.jmp(top).unwrap();
        a.set_label(&mut done).unwrap();
        a.hlt().unwrap();
        let code = a.assemble(CODE).unwrap();
        let gpr = tiers_agree(&code, 1001);
        assert_eq!(gpr[0], 1000 * 1001 / 2);
    }

    /// A block that jumps to itself forever still leaves `run` when it is
    /// kicked: every chained entry checks for events.
    #[test]
    fn a_kick_stops_a_block_chained_to_itself() {
        let mut a = CodeAssembler::new(64).unwrap();
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        a.inc(rax).unwrap();
        a.jmp(top).unwrap();
        let code = a.assemble(CODE).unwrap();
        let mut c = TestCpu::new(64);
        c.write(CODE, &code);
        c.cpu.rip = CODE;
        c.cpu.set_tier(Tier::All);
        let kick = c.cpu.kick.clone();
        let kicker = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            kick.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut blocks = BlockCache::new();
        let stop = c.cpu.run(&mut blocks);
        kicker.join().unwrap();
        assert_eq!(stop, Stop::Event);
        assert!(c.cpu.jit_chained > 1000, "{}", c.cpu.jit_chained);
        assert_eq!(c.cpu.rip, CODE, "it stops between two runs of the block");
        assert!(c.cpu.gpr[0] > 1000);
    }

    /// A chained successor whose code is rewritten runs its new code: the
    /// loop patches the immediate of the block it jumps to, every time.
    #[test]
    fn a_rewritten_successor_is_not_chained_into() {
        let mut a = CodeAssembler::new(64).unwrap();
        let mut top = a.create_label();
        let mut patched = a.create_label();
        let mut done = a.create_label();
        a.mov(r14, 200u64).unwrap();
        a.set_label(&mut top).unwrap();
        a.add(r9, rax).unwrap();
        a.dec(r14).unwrap();
        a.je(done).unwrap();
        // The imm32 of `mov eax, imm32` (opcode B8, one byte) at `patched`.
        a.lea(rdx, ptr(patched)).unwrap();
        a.mov(dword_ptr(rdx + 1), r14d).unwrap();
        a.jmp(patched).unwrap();
        // The successor on its own page, so the patch does not also
        // rewrite the block that writes it.
        a.db(&[0x90; 4096]).unwrap();
        a.set_label(&mut patched).unwrap();
        a.mov(eax, 0x1234u32).unwrap();
        a.jmp(top).unwrap();
        a.set_label(&mut done).unwrap();
        a.hlt().unwrap();
        let code = a.assemble(CODE).unwrap();
        let want: u64 = (1..200u64).sum();
        let gpr = tiers_agree(&code, 0);
        assert_eq!(gpr[9], want);
    }

    /// Calls and returns (handler-ended blocks) chain through the table by
    /// address: 500 calls of a function, the same result on every tier.
    #[test]
    fn calls_and_returns_chain_by_address() {
        let mut a = CodeAssembler::new(64).unwrap();
        let mut top = a.create_label();
        let mut func = a.create_label();
        let mut done = a.create_label();
        a.mov(rsp, 0x7_0000u64).unwrap();
        a.mov(r14, 500u64).unwrap();
        a.set_label(&mut top).unwrap();
        a.call(func).unwrap();
        a.add(rbx, rax).unwrap();
        a.dec(r14).unwrap();
        a.jne(top).unwrap();
        a.jmp(done).unwrap();
        a.set_label(&mut func).unwrap();
        a.lea(rax, qword_ptr(r14 + r14 * 2)).unwrap();
        a.ret().unwrap();
        a.set_label(&mut done).unwrap();
        a.hlt().unwrap();
        let code = a.assemble(CODE).unwrap();
        let gpr = tiers_agree(&code, 1001);
        assert_eq!(gpr[3], 3 * 500 * 501 / 2);
    }

    /// An exit a handler posts (OUT) always reaches the caller: a chained
    /// loop around an OUT stops at every OUT, on every tier, with the same
    /// state.
    #[test]
    fn a_posted_exit_is_never_chained_past() {
        // Every other round reaches `after` by an indirect jump (a handler
        // ends that block), so the table knows `after` when an OUT, whose
        // handler also ends its block, goes there.
        let mut a = CodeAssembler::new(64).unwrap();
        let mut top = a.create_label();
        let mut after = a.create_label();
        let mut skip = a.create_label();
        a.set_label(&mut top).unwrap();
        a.add(rax, 1).unwrap();
        a.test(al, 1).unwrap();
        a.jz(skip).unwrap();
        a.out(0x80, al).unwrap();
        a.set_label(&mut after).unwrap();
        a.lea(rcx, qword_ptr(rcx + rax)).unwrap();
        a.jmp(top).unwrap();
        a.set_label(&mut skip).unwrap();
        a.lea(rdx, ptr(after)).unwrap();
        a.jmp(rdx).unwrap();
        let code = a.assemble(CODE).unwrap();
        let trace = |tier: Tier| {
            let mut c = TestCpu::new(64);
            c.write(CODE, &code);
            c.cpu.rip = CODE;
            c.cpu.set_tier(tier);
            let mut blocks = BlockCache::new();
            let mut seen = Vec::new();
            for _ in 0..100 {
                let stop = c.cpu.run(&mut blocks);
                let posted = c.cpu.posted.len();
                c.cpu.posted.clear();
                seen.push((stop, posted, c.cpu.rip, c.cpu.gpr[0], c.cpu.gpr[1]));
            }
            (seen, c.cpu.jit_chained)
        };
        let (want, _) = trace(Tier::Interp);
        assert!(want.iter().all(|s| s.0 == Stop::Exit && s.1 == 1));
        assert_eq!(want[99].3, 199, "one OUT per run, every other round");
        for tier in [Tier::All, Tier::Auto] {
            let (got, chained) = trace(tier);
            assert_eq!(got, want, "{tier:?}");
            if tier == Tier::All {
                assert!(chained >= 90, "the loop's blocks chain: {chained}");
            }
        }
    }
}
