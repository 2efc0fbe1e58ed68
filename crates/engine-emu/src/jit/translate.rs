//! Translate one decoded block into host code (see JIT.md for the
//! convention). Each guest instruction becomes a native template (the
//! forms below) or a call to `call_handler`, which runs the interpreter's
//! handler exactly as `run_blocks` does.
//!
//! The generated function is `extern "sysv64" fn(*mut Cpu) -> u64`:
//! - 0: the block ran to its end; `cpu.next_rip` is where it continues;
//! - 1: an instruction ended the block (`cpu.end_block` is set, `next_rip`
//!   is where it went);
//! - 2: an instruction faulted; `cpu.rip` is its address and
//!   `cpu.jit_fault` the fault, nothing of it committed;
//! - 3: the block declined at its entry (the CPL or a segment is not what
//!   its inline paths assume, see `entry_check`): nothing ran, `cpu.rip`
//!   is the block's start, and the run loop runs it on the interpreter.

use iced_x86::{Code, FlowControl, Instruction, Mnemonic, OpKind, Register};

use super::chain::{emit_dynamic_exit, emit_exit, Slots};
use super::emitter::{AluOp, Asm, Label, Mem, MIRRORS, RAX, RBX, RCX, RDI, RDX, RSI};
use crate::cpu::block_cache::Decoded;
use crate::cpu::flags::layout as fl;
use crate::cpu::{Cpu, Seg};

/// A translated block.
pub type BlockFn = unsafe extern "sysv64" fn(*mut Cpu) -> u64;

/// The function at `entry`.
///
/// # Safety
/// `entry` is the start of code made by `translate` and still installed
/// executable in its cache.
#[inline]
pub unsafe fn entry(entry: *const u8) -> BlockFn {
    // SAFETY: see the function's contract.
    unsafe { std::mem::transmute::<*const u8, BlockFn>(entry) }
}

pub const DONE: u64 = 0;
pub const ENDED: u64 = 1;
pub const FAULTED: u64 = 2;
pub const DECLINED: u64 = 3;

/// Which guest flags the host's RFLAGS hold at a point in generated code
/// (so a Jcc can test them directly).
#[derive(Clone, Copy, PartialEq, Eq)]
enum HostFlags {
    /// Unknown (a call happened, or nothing set them in this block).
    None,
    /// OF SF ZF PF CF as the guest's (AF is never tested by a branch).
    All,
    /// As `All` but CF unknown (INC/DEC after an unknown CF).
    NoCf,
    /// As `All` but OF unknown (a shift by more than 1).
    NoOf,
}

/// Whether condition `cc` (0..15) reads CF / OF.
fn cc_uses_cf(cc: u8) -> bool {
    matches!(cc >> 1, 1 | 3)
}
fn cc_uses_of(cc: u8) -> bool {
    matches!(cc >> 1, 0 | 6 | 7)
}

/// Which native templates are enabled (all by default; tests disable
/// groups to isolate one).
#[derive(Clone, Copy, Debug)]
pub struct Templates {
    pub mov: bool,
    pub alu: bool,
    pub incdec: bool,
    pub lea: bool,
    pub branch: bool,
    /// MOV between a GPR (any size) or an immediate and memory, and
    /// MOVZX/MOVSX/MOVSXD from memory, in 64-bit code and (32-bit
    /// addresses through flat segments) in 32-bit code, with the soft
    /// TLB's hit path inline.
    pub mem: bool,
    /// NOP (all forms), PAUSE, ENDBR, PREFETCHh: nothing.
    pub nop: bool,
    /// MOVZX/MOVSX/MOVSXD from a register.
    pub extend: bool,
    /// SHL/SAL SHR SAR of a 32/64-bit GPR by an immediate.
    pub shift: bool,
    /// SETcc r8, CMOVcc r,r (32/64-bit).
    pub cond: bool,
    /// PUSH, POP, CALL rel32, RET (64-bit code, and 32-bit code with a
    /// flat 32-bit SS; inline TLB path).
    pub stack: bool,
    /// ADD SUB AND OR XOR CMP TEST with a memory operand (as `mem`).
    pub mem_alu: bool,
    /// ADD SUB AND OR XOR CMP TEST on 8/16-bit registers.
    pub small_alu: bool,
    /// IMUL r,r and r,r,imm (32/64-bit).
    pub imul: bool,
    /// NOT and NEG of a GPR (any size).
    pub unary: bool,
    /// ADC and SBB r,r / r,imm (any size).
    pub carry: bool,
    /// Skip recording flags that nothing can see (`liveness`).
    pub dead_flags: bool,
    /// Keep copies of the block's most used guest registers in host
    /// registers (`Ctx::mirror`).
    pub mirrors: bool,
    /// Test the CPL and flat segments once at the block's entry rather
    /// than at every access (`Ctx::entry_check`).
    pub entry_check: bool,
}

impl Templates {
    pub const ALL: Templates = Templates {
        mov: true,
        alu: true,
        incdec: true,
        lea: true,
        branch: true,
        mem: true,
        nop: true,
        extend: true,
        shift: true,
        cond: true,
        stack: true,
        mem_alu: true,
        small_alu: true,
        imul: true,
        unary: true,
        carry: true,
        dead_flags: true,
        mirrors: true,
        entry_check: true,
    };
    pub const NONE: Templates = Templates {
        mov: false,
        alu: false,
        incdec: false,
        lea: false,
        branch: false,
        mem: false,
        nop: false,
        extend: false,
        shift: false,
        cond: false,
        stack: false,
        mem_alu: false,
        small_alu: false,
        imul: false,
        unary: false,
        carry: false,
        dead_flags: false,
        mirrors: false,
        entry_check: false,
    };
}

/// What a translation contains (for tests and statistics).
#[derive(Default, Clone, Copy, Debug)]
pub struct Counts {
    pub native: u32,
    pub calls: u32,
}

/// Where a guest instruction's host code starts in a translation (for
/// `perf_map`).
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    pub at: usize,
    pub rip: u64,
    pub ins: Instruction,
    pub native: bool,
}

/// A translation: its code, what it contains, and (when `perf_map` is on)
/// where each instruction's code starts.
pub struct Made {
    pub code: Vec<u8>,
    pub counts: Counts,
    pub marks: Vec<Mark>,
    /// Where the block's exits and epilogue start.
    pub exits: usize,
}

fn flags_off() -> usize {
    core::mem::offset_of!(Cpu, flags)
}

fn gpr_off(i: usize) -> usize {
    core::mem::offset_of!(Cpu, gpr) + i * 8
}

fn next_rip_off() -> usize {
    core::mem::offset_of!(Cpu, next_rip)
}

fn end_block_off() -> usize {
    core::mem::offset_of!(Cpu, end_block)
}

fn cpl_off() -> usize {
    core::mem::offset_of!(Cpu, cpl)
}

fn tlb_off() -> usize {
    core::mem::offset_of!(Cpu, tlb)
}

fn seg_base_off(s: Seg) -> usize {
    core::mem::offset_of!(Cpu, seg)
        + s as usize * core::mem::size_of::<kite_hypervisor::Segment>()
        + core::mem::offset_of!(kite_hypervisor::Segment, base)
}

/// The segment bits `seg_cache.rs` keeps for reads or writes: flat, or
/// (`based`) unlimited with any base.
fn seg_bits_off(based: bool, write: bool) -> usize {
    use crate::cpu::seg_cache::SegCache;
    use core::mem::offset_of;
    offset_of!(Cpu, seg_cache)
        + match (based, write) {
            (false, false) => offset_of!(SegCache, flat_read),
            (false, true) => offset_of!(SegCache, flat_write),
            (true, false) => offset_of!(SegCache, based_read),
            (true, true) => offset_of!(SegCache, based_write),
        }
}

fn flat_off(write: bool) -> usize {
    seg_bits_off(false, write)
}

/// The low half of the stack pointer mask (0xffff_ffff: a 32-bit stack).
fn sp_mask_off() -> usize {
    core::mem::offset_of!(Cpu, seg_cache)
        + core::mem::offset_of!(crate::cpu::seg_cache::SegCache, sp_mask)
}

fn cs_limit_off() -> usize {
    core::mem::offset_of!(Cpu, seg)
        + Seg::Cs as usize * core::mem::size_of::<kite_hypervisor::Segment>()
        + core::mem::offset_of!(kite_hypervisor::Segment, limit)
}

/// The GPR number and width (true: 64-bit) of a 32/64-bit GPR.
fn gpr(r: Register) -> Option<(usize, bool)> {
    if r.is_gpr64() {
        Some((r as usize - Register::RAX as usize, true))
    } else if r.is_gpr32() {
        Some((r as usize - Register::EAX as usize, false))
    } else {
        None
    }
}

/// Where a GPR operand of any size lives in `Cpu::gpr`.
#[derive(Clone, Copy)]
struct G {
    /// The GPR number.
    i: usize,
    /// The byte inside it (1 for AH CH DH BH).
    hi: usize,
    /// Bytes (1, 2, 4, 8).
    size: u32,
}

impl G {
    fn mem(self) -> Mem {
        Mem::Cpu(gpr_off(self.i) + self.hi)
    }
}

/// Any 8/16/32/64-bit GPR, numbered as `Cpu::reg_read` does.
fn gpr_any(r: Register) -> Option<G> {
    let n = r as usize;
    if r.is_gpr8() {
        let k = n - Register::AL as usize;
        Some(match k {
            0..=3 => G {
                i: k,
                hi: 0,
                size: 1,
            },
            4..=7 => G {
                i: k - 4,
                hi: 1,
                size: 1,
            },
            _ => G {
                i: k - 4,
                hi: 0,
                size: 1,
            },
        })
    } else if r.is_gpr16() {
        Some(G {
            i: n - Register::AX as usize,
            hi: 0,
            size: 2,
        })
    } else {
        gpr(r).map(|(i, w)| G {
            i,
            hi: 0,
            size: if w { 8 } else { 4 },
        })
    }
}

/// The stack pointer's GPR number.
const RSP: usize = crate::cpu::reg::RSP;

/// The address of a RIP-relative memory operand, as `ea` computes it from
/// the fall-through `fall` (the instruction may have been decoded at
/// another address).
fn rip_relative(ins: &Instruction, fall: u64) -> u64 {
    fall.wrapping_add(ins.memory_displacement64().wrapping_sub(ins.next_ip()))
}

/// The second operand of an ALU template: a host register or an immediate.
#[derive(Clone, Copy)]
enum AluSrc {
    Reg(u8),
    Imm(u64),
}

/// The condition code (0..15) of a Jcc/SETcc/CMOVcc.
fn cond_code(ins: &Instruction) -> Option<u8> {
    // iced's ConditionCode: None = 0, then o no b ae e ne be a s ns p np l ge le g.
    match ins.condition_code() as u8 {
        0 => None,
        c => Some(c - 1),
    }
}

fn size_mask(size: u32) -> u64 {
    crate::cpu::flags::mask(size * 8)
}

/// `extern "sysv64"` entry the generated code calls for an instruction it
/// does not emit natively: the run loop's step for one instruction.
///
/// # Safety
/// `cpu` is the vCPU the translation runs on (exclusively borrowed by the
/// run loop for the duration of the call), `d` points into the block being
/// run (alive: the run loop holds the block cache borrowed).
pub(crate) unsafe extern "sysv64" fn call_handler(
    cpu: *mut Cpu,
    d: *const Decoded,
    rip: u64,
    fallthrough: u64,
) -> u64 {
    // SAFETY: see the function's contract.
    let (cpu, d) = unsafe { (&mut *cpu, &*d) };
    cpu.rip = rip;
    cpu.next_rip = fallthrough;
    if let Some(p) = cpu.profile.as_mut() {
        p.handler_call(&d.ins);
    }
    match (d.handler)(cpu, &d.ins) {
        Ok(()) => u64::from(cpu.end_block),
        Err(f) => {
            cpu.jit_fault = Some(f);
            FAULTED
        }
    }
}

/// The guest's CF (for INC/DEC after an unknown flag state).
///
/// # Safety
/// `cpu` as for `call_handler`.
unsafe extern "sysv64" fn read_cf(cpu: *mut Cpu) -> u64 {
    // SAFETY: see the function's contract.
    u64::from(unsafe { &*cpu }.flags.cf())
}

/// Compute the guest's lazy flags into its RFLAGS word (`lazy` none).
///
/// # Safety
/// `cpu` as for `call_handler`.
unsafe extern "sysv64" fn materialize(cpu: *mut Cpu) {
    // SAFETY: see the function's contract.
    unsafe { &mut *cpu }.flags.materialize_now();
}

/// Condition `cc` (0..15) on the guest's flags.
///
/// # Safety
/// `cpu` as for `call_handler`.
unsafe extern "sysv64" fn read_cond(cpu: *mut Cpu, cc: u64) -> u64 {
    // SAFETY: see the function's contract.
    u64::from(unsafe { &*cpu }.flags.cond(cc as u8))
}

struct Ctx<'a> {
    a: Asm,
    /// The guest's flag record is known to be an ADD, SUB or LOGIC of this
    /// many bits with `cin` 0 (a template or handler of this block just
    /// made it, only flag-neutral instructions since): host flags can be
    /// made the guest's again from `a`, `b`, `res` (`resync`).
    known: Option<(u8, u32)>,
    /// CPL 3 when the block was translated (memory templates check it).
    cpl3: bool,
    exit: Label,
    /// Where a handler that ended the block (or faulted) leaves from.
    ended: Label,
    host: HostFlags,
    code_bits: u32,
    t: Templates,
    counts: Counts,
    /// Where chainable exits get their slots.
    slots: &'a mut Slots,
    /// A handler call can leave through `ended`.
    handler_exits: bool,
    /// The instruction being translated writes flags that nothing reads
    /// before they are written again (`liveness::dead`): its template
    /// leaves the guest's flag record as it is.
    dead: bool,
    /// What the block's entry check established and still holds here (no
    /// handler but a template's own has run since): the CPL is the one at
    /// translation time, and the segments of `entry_read`/`entry_write`
    /// are flat for reads/writes (and with `entry_stack` SS is a 32-bit
    /// stack). The inline paths then leave those checks out.
    entry_ok: bool,
    entry_read: u8,
    entry_write: u8,
    entry_stack: bool,
    /// The host register (`MIRRORS`) that mirrors each guest GPR in this
    /// block, 0 for none (`choose_mirrors`).
    mirror: [u8; 16],
    /// The guest GPRs whose mirror holds their value at this point of the
    /// generated code. `Cpu::gpr` is always the truth (every write of a
    /// GPR goes to it; a mirror is only a copy for reads), so a fault, a
    /// handler or the end of the block never has anything to write back;
    /// a handler call forgets every mirror, a partial write its own.
    valid: u16,
    /// The instruction being translated (its index in the block).
    cur: usize,
    /// The templates' slow paths, emitted after the block's exits so that
    /// the inline paths fall through (`Cold`).
    cold: Vec<Cold>,
}

/// A template's slow path, out of line: at `slow`, the handler of
/// instruction `insn` (at `rip`, falling through to `fall`), the mirrors of
/// `valid` reloaded, the host's flags made the guest's again from a known
/// record `resync` (a memory ALU's), then back to `done`.
struct Cold {
    slow: Label,
    done: Label,
    insn: usize,
    rip: u64,
    fall: u64,
    valid: u16,
    resync: Option<(u8, u32)>,
}

/// Whether `ins` is one of the stack forms (PUSH, POP, CALL, RET), which
/// use RSP and SS implicitly.
fn stack_form(ins: &Instruction) -> bool {
    matches!(
        ins.mnemonic(),
        Mnemonic::Push | Mnemonic::Pop | Mnemonic::Call | Mnemonic::Ret
    )
}

/// The guest GPRs (numbers) that instruction `ins` names: register
/// operands, memory base and index, and the stack pointer of the stack
/// forms.
fn named_gprs(ins: &Instruction, mut f: impl FnMut(usize)) {
    for i in 0..ins.op_count() {
        match ins.op_kind(i) {
            OpKind::Register => {
                if let Some(g) = gpr_any(ins.op_register(i)) {
                    f(g.i);
                }
            }
            OpKind::Memory => {
                for r in [ins.memory_base(), ins.memory_index()] {
                    if let Some((g, _)) = gpr(r) {
                        f(g);
                    }
                }
            }
            _ => {}
        }
    }
    if stack_form(ins) {
        f(RSP);
    }
}

/// Which guest GPRs get a mirror in a block: the (at most `MIRRORS.len()`)
/// most often named, each named at least twice (one read gains nothing).
fn choose_mirrors(insns: &[Decoded]) -> [u8; 16] {
    let mut n = [0u32; 16];
    for d in insns {
        named_gprs(&d.ins, |g| n[g] += 1);
    }
    let mut order: Vec<usize> = (0..16).filter(|&g| n[g] >= 2).collect();
    order.sort_by_key(|&g| (std::cmp::Reverse(n[g]), g));
    let mut mirror = [0u8; 16];
    for (&g, &h) in order.iter().zip(MIRRORS.iter()) {
        mirror[g] = h;
    }
    mirror
}

/// Translate `insns` (a block entered at `rip`, code size `code_bits`).
/// `None` if nothing is worth translating.
pub fn translate(
    insns: &[Decoded],
    rip: u64,
    code_bits: u32,
    cpl: u8,
    t: Templates,
    slots: &mut Slots,
) -> Option<Made> {
    let marking = super::perf_map::enabled();
    let mut marks = Vec::new();
    let ip_mask = match code_bits {
        64 => u64::MAX,
        32 => 0xffff_ffff,
        _ => 0xffff,
    };
    let mut a = Asm::new();
    let exit = a.label();
    let ended = a.label();
    a.prologue();
    let mut c = Ctx {
        a,
        cpl3: cpl == 3,
        exit,
        ended,
        host: HostFlags::None,
        known: None,
        code_bits,
        t,
        counts: Counts::default(),
        slots,
        handler_exits: false,
        dead: false,
        mirror: if t.mirrors {
            choose_mirrors(insns)
        } else {
            [0; 16]
        },
        valid: 0,
        entry_ok: false,
        entry_read: 0,
        entry_write: 0,
        entry_stack: false,
        cur: 0,
        cold: Vec::new(),
    };
    let decline = c.a.label();
    let checked = t.entry_check && c.entry_check(insns, decline);
    use super::liveness;
    let uses: Vec<liveness::Use> = insns.iter().map(|d| liveness::flag_use(&d.ins)).collect();
    let live = liveness::live_after(uses.iter().copied());
    let mut rip = rip;
    let mut open = true; // control can reach the end of the block
    let mut last_native = false;
    for (i, d) in insns.iter().enumerate() {
        let fall = rip.wrapping_add(d.ins.len() as u64) & ip_mask;
        c.dead = t.dead_flags && liveness::dead(uses[i], live[i]);
        c.cur = i;
        let at = c.a.buf.len();
        let native = c.native(d, rip, fall);
        if marking {
            marks.push(Mark {
                at,
                rip,
                ins: d.ins,
                native: native.is_some(),
            });
        }
        match native {
            Some(ends) => {
                c.counts.native += 1;
                last_native = true;
                if ends {
                    open = false;
                    break;
                }
            }
            None => {
                c.counts.calls += 1;
                last_native = false;
                c.call(d, rip, fall);
            }
        }
        rip = fall;
    }
    if open {
        // After a handler, its `next_rip` stands (one that moved it set
        // `end_block` and left above); after a native instruction, it is
        // the fall-through, as the run loop sets it.
        if last_native {
            c.a.mov_imm(RAX, rip);
            c.a.store(true, RAX, next_rip_off());
        }
        // A block that ends at an instruction of `ends_block` returns to the
        // run loop, which must look at what it changed before going on.
        let ends = insns
            .last()
            .is_some_and(|d| crate::cpu::exec::ends_block(&d.ins));
        if ends {
            c.a.mov_imm(RAX, DONE);
        } else {
            c.leave(rip, DONE);
        }
    }
    let exits = c.a.buf.len();
    c.a.bind(exit);
    c.a.epilogue();
    if checked {
        c.a.bind(decline);
        c.a.mov_imm(RAX, DECLINED);
        c.a.jmp(exit);
    }
    for p in std::mem::take(&mut c.cold) {
        c.a.bind(p.slow);
        c.call(&insns[p.insn], p.rip, p.fall);
        c.reload(p.valid);
        if let Some(k) = p.resync {
            c.known = Some(k);
            c.resync();
        }
        c.a.jmp(p.done);
    }
    if c.handler_exits {
        c.a.bind(ended);
        let table = c.slots.table();
        emit_dynamic_exit(&mut c.a, table, exit);
    }
    let counts = c.counts;
    c.a.finish().map(|code| Made {
        code,
        counts,
        marks,
        exits,
    })
}

impl Ctx<'_> {
    /// Leave the block for `target` with `status` (DONE or ENDED,
    /// `next_rip` set to `target`): into the next block's translation if
    /// the exit's chain slot says where it is and nothing is to be done in
    /// between (see `jit::chain`), else back to the run loop.
    fn leave(&mut self, target: u64, status: u64) {
        match self.slots.alloc() {
            Some(slot) => emit_exit(&mut self.a, slot, target, self.code_bits, status, self.exit),
            None => {
                self.a.mov_imm(RAX, status);
                self.a.jmp(self.exit);
            }
        }
    }

    /// Call the interpreter's handler for `d`; leave if it ended the block
    /// or faulted.
    fn call(&mut self, d: &Decoded, rip: u64, fall: u64) {
        self.a.arg0_cpu();
        self.a.mov_imm(RSI, d as *const Decoded as u64);
        self.a.mov_imm(RDX, rip);
        self.a.mov_imm(RCX, fall);
        self.a.mov_imm(RAX, call_handler as *const () as u64);
        self.a.call_rax();
        self.a.test_rax();
        self.a.jcc(0x5, self.ended); // jnz
        self.handler_exits = true;
        self.host = HostFlags::None;
        self.known = None;
        // The handler may have written any GPR, and changed the CPL or a
        // segment.
        self.valid = 0;
        self.entry_ok = false;
    }

    /// The segments (bits in `Seg` order: ES CS SS DS; FS and GS, whose
    /// bases are seldom 0, are left to the per-access test) the memory
    /// templates of `insns` read and write through, and whether they use
    /// the stack, for the entry check. Any memory operand counts (an
    /// over-approximation only checks more).
    fn block_segments(insns: &[Decoded]) -> (u8, u8, bool, usize) {
        let (mut read, mut write, mut stack, mut n) = (0u8, 0u8, false, 0);
        for d in insns {
            let ins = &d.ins;
            if stack_form(ins) {
                stack = true;
                n += 1;
            }
            if !(0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory)
                || ins.mnemonic() == Mnemonic::Lea
            {
                continue;
            }
            let bit = match ins.memory_segment() {
                Register::ES => 1u8,
                Register::CS => 2,
                Register::SS => 4,
                Register::DS => 8,
                _ => 0,
            };
            n += 1;
            read |= bit;
            if ins.op0_kind() == OpKind::Memory
                && !matches!(ins.mnemonic(), Mnemonic::Cmp | Mnemonic::Test)
            {
                write |= bit;
            }
        }
        (read, write, stack, n)
    }

    /// At the block's entry (and so at every chained entry), before any
    /// instruction: leave with DECLINED unless the CPL is the one at
    /// translation time and, in 32-bit code, the segments the block's
    /// memory forms use are flat (and SS a 32-bit stack if it uses the
    /// stack); from then on the inline paths need not test them again
    /// until a handler runs (`entry_ok`). Nothing for blocks with fewer
    /// than two memory accesses. Uses RCX.
    fn entry_check(&mut self, insns: &[Decoded], decline: Label) -> bool {
        if !matches!(self.code_bits, 32 | 64) {
            return false;
        }
        let (read, write, stack, n) = Self::block_segments(insns);
        if n < 2 {
            return false;
        }
        self.a.cmp_mem8(cpl_off(), 3);
        self.a.jcc(if self.cpl3 { 0x5 } else { 0x4 }, decline); // jne / je
        if self.code_bits == 32 {
            let read = read | if stack { 4 } else { 0 };
            let write = write | if stack { 4 } else { 0 };
            for (mask, w) in [(read, false), (write, true)] {
                if mask != 0 {
                    self.a.movzx_r32_m8(RCX, flat_off(w));
                    self.a.alu_ri(AluOp::And, false, RCX, i32::from(mask));
                    self.a.alu_ri(AluOp::Cmp, false, RCX, i32::from(mask));
                    self.a.jcc(0x5, decline); // jne
                }
            }
            if stack {
                self.a.cmp_mem32(sp_mask_off(), 0xffff_ffff);
                self.a.jcc(0x5, decline); // jne
            }
            self.entry_read = read;
            self.entry_write = write;
            self.entry_stack = stack;
        }
        self.entry_ok = true;
        true
    }

    /// The slow path at `slow` of the instruction being translated (its
    /// handler: a MOV, ALU, PUSH, POP, INC/DEC or CMOVcc with memory, which
    /// changes neither the CPL nor a segment, so what the entry check
    /// established still holds after it), emitted out of line (`Cold`); it
    /// comes back to `done` with the mirrors valid now reloaded, so both
    /// paths agree there.
    fn cold_path(
        &mut self,
        slow: Label,
        done: Label,
        rip: u64,
        fall: u64,
        resync: Option<(u8, u32)>,
    ) {
        self.cold.push(Cold {
            slow,
            done,
            insn: self.cur,
            rip,
            fall,
            valid: self.valid,
            resync,
        });
        self.handler_exits = true;
    }

    /// Read guest GPR `g` into `host` (all of it, or with `w` false its
    /// low half zero-extended, as `load` reads it): from its mirror when
    /// the block has one (filled from `Cpu::gpr` at the first read).
    fn rd(&mut self, w: bool, host: u8, g: usize) {
        let m = self.mirror[g];
        if m == 0 {
            self.a.load(w, host, gpr_off(g));
            return;
        }
        if self.valid & (1 << g) == 0 {
            self.a.load(true, m, gpr_off(g));
            self.valid |= 1 << g;
        }
        self.a.mov_rr(w, host, m);
    }

    /// Write all of guest GPR `g` from `host`: to `Cpu::gpr`, and to its
    /// mirror.
    fn wr(&mut self, host: u8, g: usize) {
        self.a.store(true, host, gpr_off(g));
        let m = self.mirror[g];
        if m != 0 {
            self.a.mov_rr(true, m, host);
            self.valid |= 1 << g;
        }
    }

    /// Guest GPR `g` was written in part (in `Cpu::gpr`): its mirror is
    /// stale.
    fn forget(&mut self, g: usize) {
        self.valid &= !(1 << g);
    }

    /// Make the mirrors of `v` valid again after a path that forgot them
    /// (a handler's): each loaded from `Cpu::gpr`. Where two paths join,
    /// this one then agrees with the other, whose mirrors `v` held.
    fn reload(&mut self, v: u16) {
        for g in 0..16 {
            if v & (1 << g) != 0 && self.valid & (1 << g) == 0 {
                self.a.load(true, self.mirror[g], gpr_off(g));
            }
        }
        self.valid |= v;
    }

    /// Whether the host's flags can answer condition `cc` now.
    fn host_has(&self, cc: u8) -> bool {
        match self.host {
            HostFlags::All => true,
            HostFlags::NoCf => !cc_uses_cf(cc),
            HostFlags::NoOf => !cc_uses_of(cc),
            HostFlags::None => false,
        }
    }

    /// Make the host's flags the guest's again from a known record (see
    /// `known`): a host CMP/ADD of `a` and `b`, or TEST of `res`, at the
    /// record's size. Nothing if the record is not known.
    fn resync(&mut self) {
        let Some((lazy, bits)) = self.known else {
            return;
        };
        let f = flags_off();
        let size = bits / 8;
        if lazy == fl::LOGIC {
            self.a.load(true, RAX, f + fl::RES);
            self.a.alu_rr_x(AluOp::Test, size, RAX, RAX);
        } else {
            self.a.load(true, RAX, f + fl::A);
            self.a.load(true, RCX, f + fl::B);
            let op = if lazy == fl::ADD {
                AluOp::Add
            } else {
                AluOp::Cmp
            };
            self.a.alu_rr_x(op, size, RAX, RCX);
        }
        self.host = HostFlags::All;
    }

    /// Condition `cc` for a native SETcc/CMOVcc/Jcc: `true` if the host's
    /// flags hold it (after a `resync` if need be); else the guest's
    /// condition is computed by `read_cond` into RAX (0 or 1) and the
    /// host's flags are lost.
    fn cond_in_host(&mut self, cc: u8) -> bool {
        if !self.host_has(cc) {
            self.resync();
        }
        if self.host_has(cc) {
            return true;
        }
        self.a.arg0_cpu();
        self.a.mov_imm(RSI, u64::from(cc));
        self.a.mov_imm(RAX, read_cond as *const () as u64);
        self.a.call_rax();
        self.host = HostFlags::None;
        false
    }

    /// Emit `ins` natively if a template covers it: `Some(true)` if it
    /// always leaves the block (JMP), `Some(false)` if it may fall through,
    /// `None` if not covered (nothing emitted).
    fn native(&mut self, d: &Decoded, rip: u64, fall: u64) -> Option<bool> {
        let ins = &d.ins;
        if ins.has_lock_prefix() || ins.has_xacquire_prefix() || ins.has_xrelease_prefix() {
            return None;
        }
        use Mnemonic as M;
        let alu_op = match ins.mnemonic() {
            M::Add => Some(AluOp::Add),
            M::Sub => Some(AluOp::Sub),
            M::And => Some(AluOp::And),
            M::Or => Some(AluOp::Or),
            M::Xor => Some(AluOp::Xor),
            M::Cmp => Some(AluOp::Cmp),
            M::Test => Some(AluOp::Test),
            _ => None,
        };
        if let Some(op) = alu_op {
            return (self.alu(ins, op) || self.alu_mem(d, rip, fall, op)).then_some(false);
        }
        match ins.mnemonic() {
            M::Adc if self.t.carry => self.adc_sbb(ins, false).then_some(false),
            M::Sbb if self.t.carry => self.adc_sbb(ins, true).then_some(false),
            M::Not if self.t.unary => self.not_neg(ins, false).then_some(false),
            M::Neg if self.t.unary => self.not_neg(ins, true).then_some(false),
            Mnemonic::Mov if self.t.mov && self.mov(ins) => Some(false),
            Mnemonic::Mov if self.t.mem => self.mov_mem(d, rip, fall).then_some(false),
            // As `misc::nop`: nothing (a memory operand is not accessed).
            M::Nop
            | M::Reservednop
            | M::Pause
            | M::Endbr32
            | M::Endbr64
            | M::Prefetch
            | M::Prefetchw
            | M::Prefetchnta
            | M::Prefetcht0
            | M::Prefetcht1
            | M::Prefetcht2
                if self.t.nop =>
            {
                Some(false)
            }
            M::Movzx | M::Movsx | M::Movsxd => self.extend(d, rip, fall).then_some(false),
            M::Shl | M::Sal if self.t.shift => self.shift(ins, 4).then_some(false),
            M::Shr if self.t.shift => self.shift(ins, 5).then_some(false),
            M::Sar if self.t.shift => self.shift(ins, 7).then_some(false),
            M::Rol if self.t.shift => self.rotate(ins, 0).then_some(false),
            M::Ror if self.t.shift => self.rotate(ins, 1).then_some(false),
            M::Imul if self.t.imul => self.imul(ins).then_some(false),
            M::Push if self.t.stack => self.push(d, rip, fall).then_some(false),
            M::Pop if self.t.stack => self.pop(d, rip, fall).then_some(false),
            M::Call if self.t.stack => self.call_rel(d, rip, fall).then_some(true),
            M::Ret if self.t.stack => self.ret(d, rip, fall).then_some(true),
            _ if self.t.cond && crate::cpu::integer::is_setcc(ins.mnemonic()) => {
                self.setcc(ins).then_some(false)
            }
            _ if self.t.cond && crate::cpu::integer::is_cmov(ins.mnemonic()) => {
                (self.cmov(ins) || self.cmov_mem(d, rip, fall)).then_some(false)
            }
            Mnemonic::Inc if self.t.incdec => {
                (self.inc_dec(ins, false) || self.inc_dec_mem(d, rip, fall, false)).then_some(false)
            }
            Mnemonic::Dec if self.t.incdec => {
                (self.inc_dec(ins, true) || self.inc_dec_mem(d, rip, fall, true)).then_some(false)
            }
            Mnemonic::Lea if self.t.lea => self.lea(ins, fall).then_some(false),
            Mnemonic::Jmp if self.t.branch => self.jmp(d, rip, fall).then_some(true),
            _ if self.t.branch && ins.flow_control() == FlowControl::ConditionalBranch => {
                self.jcc(d, rip, fall).then_some(false)
            }
            _ => None,
        }
    }

    /// MOV r,r and MOV r,imm between GPRs of any size, as `mov_rr`/
    /// `mov_ri`/`reg_write` (8/16-bit writes merge, a 32-bit write
    /// zero-extends).
    fn mov(&mut self, ins: &Instruction) -> bool {
        if ins.op_count() != 2 || ins.op0_kind() != OpKind::Register {
            return false;
        }
        let Some(d) = gpr_any(ins.op0_register()) else {
            return false;
        };
        match (ins.op1_kind(), d.size) {
            (OpKind::Register, _) => {
                let Some(s) = gpr_any(ins.op1_register()) else {
                    return false;
                };
                if s.size != d.size {
                    return false;
                }
                self.load_g(RAX, s);
            }
            (OpKind::Immediate8, 1)
            | (OpKind::Immediate16, 2)
            | (OpKind::Immediate32, 4)
            | (OpKind::Immediate64 | OpKind::Immediate32to64, 8) => {
                self.a.mov_imm(RAX, ins.immediate(1) & size_mask(d.size))
            }
            _ => return false,
        }
        self.store_g(RAX, d);
        true
    }

    /// Load a guest GPR of any size into `host`, zero-extended.
    fn load_g(&mut self, host: u8, g: G) {
        match g.size {
            1 | 2 => self.a.load_x(g.size, false, false, host, g.mem()),
            _ => self.rd(g.size == 8, host, g.i),
        }
    }

    /// Write `host` to a guest GPR as `Cpu::reg_write` does: 8/16-bit
    /// writes merge, a 32-bit one zero-extends (`host` holds the value
    /// zero-extended from 32 bits, as every 32-bit host write leaves it).
    fn store_g(&mut self, host: u8, g: G) {
        match g.size {
            1 | 2 => {
                self.a.store_x(g.size, host, g.mem());
                self.forget(g.i);
            }
            _ => self.wr(host, g.i),
        }
    }

    /// Whether `lin` covers the memory operand of `ins`: `lin64_ok` in
    /// 64-bit code; in 32-bit code a 32-bit address of one of the forms
    /// `addr32::form` names, through ES, CS, SS, DS, FS or GS.
    fn lin_ok(&self, ins: &Instruction) -> bool {
        match self.code_bits {
            64 => self.lin64_ok(ins),
            32 => {
                crate::cpu::addr32::form(ins) != crate::cpu::addr32::GENERIC
                    && matches!(
                        ins.memory_segment(),
                        Register::ES
                            | Register::CS
                            | Register::SS
                            | Register::DS
                            | Register::FS
                            | Register::GS
                    )
            }
            _ => false,
        }
    }

    /// The linear address of `ins`'s memory operand (`lin_ok`) for an
    /// access of `size` bytes into RAX: `lin64` in 64-bit code; in 32-bit
    /// code the offset as `Cpu::off32` sums it, taken as the linear
    /// address only when the segment is flat for the access (`write`) and
    /// the access ends below 4 GiB, as `Cpu::mem_lin` does; anything else
    /// jumps to `slow`. Uses RCX, RDX.
    fn lin(&mut self, ins: &Instruction, fall: u64, size: u32, write: bool, slow: Label) {
        if self.code_bits == 64 {
            self.lin64(ins, fall);
            return;
        }
        let g32 = |r: Register| (r as usize).wrapping_sub(Register::EAX as usize) & 15;
        let (base, index) = (ins.memory_base(), ins.memory_index());
        let base = (base != Register::None).then(|| g32(base));
        let index = (index != Register::None).then(|| (g32(index), ins.memory_index_scale()));
        // A 32-bit sum: it wraps at 4 GiB, as `off32` masks it.
        self.address(
            false,
            base,
            index,
            ins.memory_displacement64() as u32 as i32,
        );
        let seg = ins.memory_segment() as u32 - Register::ES as u32;
        if matches!(ins.memory_segment(), Register::FS | Register::GS) {
            // Seldom based at 0, often unlimited: offset checked below
            // 4 GiB, then the base added, wrapping at 4 GiB.
            self.a.movzx_r32_m8(RCX, seg_bits_off(true, write));
            self.a.alu_ri(AluOp::And, false, RCX, 1 << seg);
            self.a.jcc(0x4, slow); // jz
            self.below_4g(size, slow);
            let s = if seg == Seg::Fs as u32 {
                Seg::Fs
            } else {
                Seg::Gs
            };
            self.a.add_r_mem(false, RAX, seg_base_off(s));
            return;
        }
        self.flat_or(seg, write, slow);
        self.below_4g(size, slow);
    }

    /// base + index * scale + disp into RAX, 64-bit or (`w` false) 32-bit
    /// (wrapping at 4 GiB), the registers read as GPRs of that width. Uses
    /// RCX, RDX.
    fn address(&mut self, w: bool, base: Option<usize>, index: Option<(usize, u32)>, disp: i32) {
        match (base, index) {
            (None, None) if w => self.a.mov_imm(RAX, disp as i64 as u64),
            (None, None) => self.a.mov_imm(RAX, u64::from(disp as u32)),
            (Some(b), None) => {
                self.rd(w, RCX, b);
                self.a.lea_rcx(w, RAX, disp);
            }
            (base, Some((i, scale))) => {
                match base {
                    Some(b) => self.rd(w, RCX, b),
                    None => self.a.mov_imm(RCX, 0),
                }
                self.rd(w, RDX, i);
                self.a.lea_rcx_rdx(w, RAX, scale, disp);
            }
        }
    }

    /// Jump to `slow` unless segment `seg` (in `Seg` order) is flat for
    /// the access (`seg_cache.rs`). Uses RCX.
    fn flat_or(&mut self, seg: u32, write: bool, slow: Label) {
        let checked = if write {
            self.entry_write
        } else {
            self.entry_read
        };
        if self.entry_ok && checked & (1 << seg) != 0 {
            return; // the entry check made sure
        }
        self.a.movzx_r32_m8(RCX, flat_off(write));
        self.a.alu_ri(AluOp::And, false, RCX, 1 << seg);
        self.a.jcc(0x4, slow); // jz
    }

    /// Jump to `slow` unless an access of `size` bytes at the 32-bit offset
    /// in EAX ends below 4 GiB (a flat segment's only limit).
    fn below_4g(&mut self, size: u32, slow: Label) {
        if size > 1 {
            self.a
                .alu_ri(AluOp::Cmp, false, RAX, (0u32.wrapping_sub(size)) as i32);
            self.a.jcc(0x7, slow); // ja
        }
    }

    /// Whether `lin64` covers the memory operand of `ins`: 64-bit code, a
    /// 64-bit base (or RIP, or none) and an optional 64-bit index, a
    /// displacement that fits the host's disp32.
    fn lin64_ok(&self, ins: &Instruction) -> bool {
        if self.code_bits != 64 {
            return false;
        }
        let base = ins.memory_base();
        let index = ins.memory_index();
        let idx_ok = index == Register::None || matches!(gpr(index), Some((_, true)));
        if !matches!(
            ins.memory_segment(),
            Register::ES | Register::CS | Register::SS | Register::DS | Register::FS | Register::GS
        ) {
            return false;
        }
        match base {
            Register::RIP => index == Register::None,
            Register::None => idx_ok && i32::try_from(ins.memory_displacement64() as i64).is_ok(),
            b => {
                matches!(gpr(b), Some((_, true)))
                    && idx_ok
                    && i32::try_from(ins.memory_displacement64() as i64).is_ok()
            }
        }
    }

    /// The linear address of `ins`'s memory operand (see `lin64_ok`) into
    /// RAX, as `ea` and `seg_lin` in long mode compute it: base + index *
    /// scale + displacement (RIP-relative: from the fall-through), plus
    /// the FS/GS base. Uses RCX, RDX.
    fn lin64(&mut self, ins: &Instruction, fall: u64) {
        let base = ins.memory_base();
        if base == Register::RIP {
            self.a.mov_imm(RAX, rip_relative(ins, fall));
        } else {
            let base = gpr(base).map(|(b, _)| b);
            let index = gpr(ins.memory_index()).map(|(i, _)| (i, ins.memory_index_scale()));
            self.address(true, base, index, ins.memory_displacement64() as i64 as i32);
        }
        match ins.memory_segment() {
            Register::FS => self.a.add_r_mem(true, RAX, seg_base_off(Seg::Fs)),
            Register::GS => self.a.add_r_mem(true, RAX, seg_base_off(Seg::Gs)),
            _ => {}
        }
    }

    /// The soft TLB's hit path for an access of `size` bytes at the linear
    /// address in RAX, as `read_lin`/`write_lin` take it: the CPL the
    /// permission was chosen for, the canonical check (64-bit code), the
    /// entry of the first byte's page compared with the last byte's page
    /// (so an access across pages misses) and with the permission
    /// `Cpu::need` asks (`read` and/or `write`). On a hit RAX becomes the
    /// host pointer; anything else jumps to `slow`. Uses RCX, RDX.
    fn tlb_hit(&mut self, size: u32, read: bool, write: bool, slow: Label) {
        use crate::mmu::tlb::{layout as tl, READ_S, READ_U, WRITE_S, WRITE_U};
        let user = self.cpl3;
        if !self.entry_ok {
            self.a.cmp_mem8(cpl_off(), 3);
            self.a.jcc(if user { 0x5 } else { 0x4 }, slow); // jne / je
        }
        if self.code_bits == 64 {
            // Canonical: sign-extending bit 47 gives it back (a 32-bit
            // linear address always is).
            self.a.mov_rr(true, RCX, RAX);
            self.a.shift_ri(4, true, RCX, 16); // shl
            self.a.shift_ri(7, true, RCX, 16); // sar
            self.a.alu_rr(AluOp::Cmp, true, RCX, RAX);
            self.a.jcc(0x5, slow);
        }
        // rdx = &hot[(lin >> 12) & (ENTRIES - 1)]: the byte offset
        // ((lin >> 12) & (ENTRIES - 1)) * 16 is (lin >> 8) & mask << 4.
        const _: () = assert!(tl::ENTRY_SIZE == 16);
        self.a.mov_rr(true, RDX, RAX);
        self.a.shift_ri(5, true, RDX, 8); // shr
        self.a
            .alu_ri(AluOp::And, false, RDX, ((tl::ENTRIES - 1) << 4) as i32);
        self.a.add_r_mem(true, RDX, tlb_off() + tl::HOT_BASE);
        // (tag ^ (last & PAGE_MASK)) & (PAGE_MASK | need) == need, where
        // `last` is the access's last byte: an access that crosses into
        // the next page compares that page with the entry of the first
        // one, and misses (the entry's tag is its own page).
        let mut need = 0u8;
        if read {
            need |= if user { READ_U } else { READ_S };
        }
        if write {
            need |= if user { WRITE_U } else { WRITE_S };
        }
        if size > 1 {
            self.a.lea_rax_disp8(RCX, (size - 1) as i8);
        } else {
            self.a.mov_rr(true, RCX, RAX);
        }
        self.a.alu_ri(AluOp::And, true, RCX, -4096);
        self.a.xor_r_at_rdx(true, RCX);
        self.a
            .alu_ri(AluOp::And, true, RCX, -4096 | i32::from(need));
        self.a.alu_ri(AluOp::Cmp, true, RCX, i32::from(need));
        self.a.jcc(0x5, slow);
        // host = addend + lin
        self.a.add_r_at_rdx8(true, RAX);
    }

    /// A flag-neutral instruction with one memory access of `size` bytes
    /// at `ins`'s operand (`lin64_ok`): the inline hit path, then `body`
    /// with the host pointer in RAX; anything else runs the handler. The
    /// guest's flags are untouched either way (`known` stays).
    fn mem_access(
        &mut self,
        d: &Decoded,
        rip: u64,
        fall: u64,
        size: u32,
        write: bool,
        body: impl FnOnce(&mut Self),
    ) -> bool {
        if !self.lin_ok(&d.ins) {
            return false;
        }
        self.guarded(rip, fall, |c, slow| {
            c.lin(&d.ins, fall, size, write, slow);
            c.tlb_hit(size, !write, write, slow);
            body(c);
        })
    }

    /// MOV between a GPR (any size) or an immediate and memory in 64-bit
    /// code, as `mov_rm_flat`/`mov_mr_flat`/`mov_rm`/`mov_mr`/
    /// `mov_rm_small`/`mov_mr_small`/`mov_mi` (see `mem_access`).
    fn mov_mem(&mut self, d: &Decoded, rip: u64, fall: u64) -> bool {
        let ins = &d.ins;
        if ins.op_count() != 2 {
            return false;
        }
        let size = ins.memory_size().size() as u32;
        match (ins.op0_kind(), ins.op1_kind()) {
            (OpKind::Register, OpKind::Memory) => {
                let Some(g) = gpr_any(ins.op0_register()) else {
                    return false;
                };
                if g.size != size {
                    return false;
                }
                self.mem_access(d, rip, fall, size, false, |c| {
                    c.a.load_x(size, false, false, RCX, Mem::AtRax);
                    c.store_g(RCX, g);
                })
            }
            (OpKind::Memory, OpKind::Register) => {
                let Some(g) = gpr_any(ins.op1_register()) else {
                    return false;
                };
                if g.size != size {
                    return false;
                }
                self.mem_access(d, rip, fall, size, true, |c| {
                    c.load_g(RCX, g);
                    c.a.store_x(size, RCX, Mem::AtRax);
                })
            }
            (OpKind::Memory, k) => {
                let ok = match k {
                    OpKind::Immediate8 => size == 1,
                    OpKind::Immediate16 => size == 2,
                    OpKind::Immediate32 => size == 4,
                    OpKind::Immediate32to64 => size == 8,
                    _ => false,
                };
                if !ok {
                    return false;
                }
                let v = ins.immediate(1) & size_mask(size);
                self.mem_access(d, rip, fall, size, true, |c| {
                    c.a.mov_imm(RCX, v);
                    c.a.store_x(size, RCX, Mem::AtRax);
                })
            }
            _ => false,
        }
    }

    /// MOVZX/MOVSX/MOVSXD into a 32/64-bit GPR from a register (`extend`
    /// group) or memory (`mem`), as `data_move::extend`.
    fn extend(&mut self, d: &Decoded, rip: u64, fall: u64) -> bool {
        let ins = &d.ins;
        if ins.op_count() != 2 || ins.op0_kind() != OpKind::Register {
            return false;
        }
        let Some((dst, w)) = gpr(ins.op0_register()) else {
            return false;
        };
        let sign = ins.mnemonic() != Mnemonic::Movzx;
        match ins.op1_kind() {
            OpKind::Register if self.t.extend => {
                let Some(s) = gpr_any(ins.op1_register()) else {
                    return false;
                };
                if s.size > 4 {
                    return false;
                }
                self.a.load_x(s.size, sign, w, RAX, s.mem());
                self.wr(RAX, dst);
                true
            }
            OpKind::Memory if self.t.mem => {
                let size = ins.memory_size().size() as u32;
                if !matches!(size, 1 | 2 | 4) {
                    return false;
                }
                self.mem_access(d, rip, fall, size, false, |c| {
                    c.a.load_x(size, sign, w, RCX, Mem::AtRax);
                    c.wr(RCX, dst);
                })
            }
            _ => false,
        }
    }

    /// Record the lazy flags as `Flags::record` does: `a`, `b`, `res`
    /// already masked, `cin` 0.
    fn record(&mut self, lazy: u8, bits: u32) {
        let f = flags_off();
        self.a.store_u8(f + fl::LAZY, lazy);
        self.a.store_i32(false, f + fl::SIZE, bits as i32);
    }

    /// The first half of an ALU template: `a` (in host register `a`,
    /// zero-extended) and `b` recorded as `binop_flags` records them, then
    /// the host operation on `a` (CMP as SUB, TEST as AND: the result is
    /// computed but the caller does not write it back). Uses RDX for an
    /// immediate `b`. Fields the `known` record already holds are not
    /// stored again: `cin` 0 after any, `a` and `b` 0 after a logic one.
    fn alu_core(&mut self, op: AluOp, size: u32, a: u8, b: AluSrc) {
        let f = flags_off();
        let logic = matches!(op, AluOp::And | AluOp::Or | AluOp::Xor | AluOp::Test);
        if logic {
            if !matches!(self.known, Some((fl::LOGIC, _))) {
                self.a.store_i32(true, f + fl::A, 0);
                self.a.store_i32(true, f + fl::B, 0);
            }
        } else {
            self.a.store(true, a, f + fl::A);
            match b {
                AluSrc::Reg(r) => self.a.store(true, r, f + fl::B),
                AluSrc::Imm(v) => {
                    self.a.mov_imm(RDX, v);
                    self.a.store(true, RDX, f + fl::B);
                }
            }
        }
        if self.known.is_none() {
            self.a.store_u8(f + fl::CIN, 0);
        }
        let host_op = match op {
            AluOp::Cmp => AluOp::Sub,
            AluOp::Test => AluOp::And,
            o => o,
        };
        self.host_alu(host_op, size, a, b);
    }

    /// The host operation `op` on `a` and `b` at `size` bytes.
    fn host_alu(&mut self, op: AluOp, size: u32, a: u8, b: AluSrc) {
        match b {
            AluSrc::Reg(r) => self.a.alu_rr_x(op, size, a, r),
            AluSrc::Imm(v) => self.a.alu_ri_x(op, size, a, v),
        }
    }

    /// The lazy kind an ALU operation records.
    fn alu_lazy(op: AluOp) -> u8 {
        match op {
            AluOp::Add => fl::ADD,
            AluOp::Sub | AluOp::Cmp => fl::SUB,
            _ => fl::LOGIC,
        }
    }

    /// The second half: the result (host register `res`, zero-extended)
    /// recorded (its kind and size only if the `known` record is not
    /// already of that kind and size); the host's flags are the guest's
    /// from here to the next flag-changing host instruction.
    fn alu_finish(&mut self, op: AluOp, size: u32, res: u8) {
        self.a.store(true, res, flags_off() + fl::RES);
        let lazy = Self::alu_lazy(op);
        if self.known != Some((lazy, size * 8)) {
            self.record(lazy, size * 8);
        }
        self.host = HostFlags::All;
        self.known = Some((lazy, size * 8));
    }

    /// ADD SUB AND OR XOR CMP TEST with a GPR destination and a GPR (same
    /// size) or immediate source, as `binop_rr`/`binop_ri` (32/64-bit,
    /// `alu` group) and `binop_small_r` (8/16-bit, merged writes,
    /// `small_alu` group).
    fn alu(&mut self, ins: &Instruction, op: AluOp) -> bool {
        let Some((g, src)) = self.reg_operands(ins, self.t.alu, self.t.small_alu) else {
            return false;
        };
        let size = g.size;
        if self.dead && matches!(op, AluOp::Cmp | AluOp::Test) {
            return true; // nothing but flags, and no one sees them
        }
        self.load_g(RAX, g);
        let b = match src {
            Ok(s) => {
                self.load_g(RCX, s);
                AluSrc::Reg(RCX)
            }
            Err(v) => AluSrc::Imm(v),
        };
        if self.dead {
            self.host_alu(op, size, RAX, b);
            self.store_g(RAX, g);
            self.host = HostFlags::None;
            return true;
        }
        self.alu_core(op, size, RAX, b);
        if !matches!(op, AluOp::Cmp | AluOp::Test) {
            self.store_g(RAX, g);
        }
        self.alu_finish(op, size, RAX);
        true
    }

    /// The operands of a two-operand ALU form on registers: a GPR
    /// destination and a GPR of its size or an immediate (masked to the
    /// size; 64-bit: a sign-extended imm32) as the handlers read them, if
    /// the size's group is enabled (`wide` for 32/64-bit, `small`).
    fn reg_operands(
        &self,
        ins: &Instruction,
        wide: bool,
        small: bool,
    ) -> Option<(G, Result<G, u64>)> {
        if ins.op_count() != 2 || ins.op0_kind() != OpKind::Register {
            return None;
        }
        let g = gpr_any(ins.op0_register())?;
        let size = g.size;
        if !(if size >= 4 { wide } else { small }) {
            return None;
        }
        let m = size_mask(size);
        let src = match (ins.op1_kind(), size) {
            (OpKind::Register, _) => match gpr_any(ins.op1_register()) {
                Some(s) if s.size == size => Ok(s),
                _ => return None,
            },
            (OpKind::Immediate8, 1)
            | (OpKind::Immediate16 | OpKind::Immediate8to16, 2)
            | (OpKind::Immediate8to32 | OpKind::Immediate32, 4) => Err(ins.immediate(1) & m),
            (OpKind::Immediate8to64 | OpKind::Immediate32to64, 8) => {
                let b = ins.immediate(1);
                i32::try_from(b as i64).ok()?;
                Err(b)
            }
            _ => return None,
        };
        Some((g, src))
    }

    /// The guest's CF into `flags.cin` and into the host's CF (for ADC and
    /// SBB): from the host's flags where they hold it, else from
    /// `read_cf` (then `neg al` makes the host's CF the guest's).
    fn carry_in(&mut self) {
        let f = flags_off();
        if !self.host_has(0x2) {
            self.resync();
        }
        if self.host_has(0x2) {
            self.a.setcc_mem(0x2, f + fl::CIN); // setb
        } else {
            self.a.arg0_cpu();
            self.a.mov_imm(RAX, read_cf as *const () as u64);
            self.a.call_rax();
            self.a.store_u8_from_al(f + fl::CIN);
            self.a.not_neg(true, 1, RAX); // CF = (al != 0)
        }
    }

    /// ADC and SBB r,r / r,imm (any size), as `binop_rr`/`binop_ri`/`binop_small_r` with ADC/SBB: the
    /// guest's CF as the carry in (`carry_in`), `a`, `b`, `cin` and the
    /// result recorded as `set_add`/`set_sub` record them; the host's
    /// flags are the guest's after it (the record's `cin` is not what
    /// `resync` replays, so `known` is dropped).
    fn adc_sbb(&mut self, ins: &Instruction, sbb: bool) -> bool {
        let Some((g, src)) = self.reg_operands(ins, true, true) else {
            return false;
        };
        let size = g.size;
        let f = flags_off();
        // Flags are live from here: only MOVs until the host operation.
        self.carry_in();
        self.load_g(RAX, g);
        let op = if sbb { AluOp::Sbb } else { AluOp::Adc };
        if self.dead {
            // `carry_in` wrote the record's `cin`: not what `known` says.
            match src {
                Ok(s) => {
                    self.load_g(RCX, s);
                    self.a.alu_rr_x(op, size, RAX, RCX);
                }
                Err(v) => self.a.alu_ri_x(op, size, RAX, v),
            }
            self.store_g(RAX, g);
            self.host = HostFlags::None;
            self.known = None;
            return true;
        }
        self.a.store(true, RAX, f + fl::A);
        match src {
            Ok(s) => {
                self.load_g(RCX, s);
                self.a.store(true, RCX, f + fl::B);
                self.a.alu_rr_x(op, size, RAX, RCX);
            }
            Err(v) => {
                self.a.mov_imm(RDX, v);
                self.a.store(true, RDX, f + fl::B);
                self.a.alu_ri_x(op, size, RAX, v);
            }
        }
        self.store_g(RAX, g);
        self.a.store(true, RAX, f + fl::RES);
        self.record(if sbb { fl::SUB } else { fl::ADD }, size * 8);
        self.host = HostFlags::All;
        self.known = None;
        true
    }

    /// NOT and NEG of a GPR (any size), as `unop`: NOT leaves the flags
    /// (the host's stay what they were); NEG records `set_sub(0, a)` and
    /// the host's NEG sets the guest's flags.
    fn not_neg(&mut self, ins: &Instruction, neg: bool) -> bool {
        if ins.op_count() != 1 || ins.op0_kind() != OpKind::Register {
            return false;
        }
        let Some(g) = gpr_any(ins.op0_register()) else {
            return false;
        };
        let size = g.size;
        self.load_g(RAX, g);
        if !neg || self.dead {
            self.a.not_neg(neg, size, RAX);
            self.store_g(RAX, g);
            if neg {
                self.host = HostFlags::None;
            }
            return true;
        }
        let f = flags_off();
        self.a.store_i32(true, f + fl::A, 0);
        self.a.store(true, RAX, f + fl::B);
        self.a.store_u8(f + fl::CIN, 0);
        self.a.not_neg(true, size, RAX);
        self.store_g(RAX, g);
        self.alu_finish(AluOp::Sub, size, RAX);
        true
    }

    /// ADD SUB AND OR XOR CMP TEST with a memory operand of 1, 2, 4 or 8
    /// bytes (`lin_ok`) and a GPR or immediate, as
    /// `binop_rm`/`binop_m`/`binop_small_r`/`binop`: the inline TLB path
    /// (read, and write when the memory is the destination of a writing
    /// operation); anything else runs the handler, after which the host's
    /// flags are made the guest's again from its record (`resync`).
    fn alu_mem(&mut self, d: &Decoded, rip: u64, fall: u64, op: AluOp) -> bool {
        let ins = &d.ins;
        if !self.t.mem_alu || ins.op_count() != 2 || !self.lin_ok(ins) {
            return false;
        }
        let size = ins.memory_size().size() as u32;
        if !matches!(size, 1 | 2 | 4 | 8) {
            return false;
        }
        enum Form {
            RegMem(G),
            MemReg(G),
            MemImm(u64),
        }
        let form = match (ins.op0_kind(), ins.op1_kind()) {
            (OpKind::Register, OpKind::Memory) => match gpr_any(ins.op0_register()) {
                Some(g) if g.size == size => Form::RegMem(g),
                _ => return false,
            },
            (OpKind::Memory, OpKind::Register) => match gpr_any(ins.op1_register()) {
                Some(g) if g.size == size => Form::MemReg(g),
                _ => return false,
            },
            (OpKind::Memory, k) => {
                let ok = match k {
                    OpKind::Immediate8 => size == 1,
                    OpKind::Immediate16 | OpKind::Immediate8to16 => size == 2,
                    OpKind::Immediate32 | OpKind::Immediate8to32 => size == 4,
                    OpKind::Immediate8to64 | OpKind::Immediate32to64 => size == 8,
                    _ => false,
                };
                if !ok {
                    return false;
                }
                Form::MemImm(ins.immediate(1) & size_mask(size))
            }
            _ => return false,
        };
        let reads_only = matches!(op, AluOp::Cmp | AluOp::Test);
        let write = !reads_only && !matches!(form, Form::RegMem(_));
        let slow = self.a.label();
        let done = self.a.label();
        self.lin(ins, fall, size, write, slow);
        self.tlb_hit(size, true, write, slow);
        match form {
            Form::RegMem(g) => {
                self.a.load_x(size, false, false, RCX, Mem::AtRax);
                self.load_g(RAX, g);
                self.alu_core(op, size, RAX, AluSrc::Reg(RCX));
                if !reads_only {
                    self.store_g(RAX, g);
                }
                self.alu_finish(op, size, RAX);
            }
            Form::MemReg(_) | Form::MemImm(_) => {
                self.a.load_x(size, false, false, RCX, Mem::AtRax);
                let b = match form {
                    Form::MemReg(g) => {
                        self.load_g(RDX, g);
                        AluSrc::Reg(RDX)
                    }
                    Form::MemImm(v) => AluSrc::Imm(v),
                    Form::RegMem(_) => unreachable!(),
                };
                self.alu_core(op, size, RCX, b);
                if write {
                    self.a.store_x(size, RCX, Mem::AtRax);
                }
                self.alu_finish(op, size, RCX);
            }
        }
        // The handler recorded the same operation: its flags into the host.
        let lazy = Self::alu_lazy(op);
        self.cold_path(slow, done, rip, fall, Some((lazy, size * 8)));
        self.a.bind(done);
        self.host = HostFlags::All;
        self.known = Some((lazy, size * 8));
        true
    }

    /// SHL/SAL SHR SAR (`digit` 4, 5, 7) of a 32/64-bit GPR by an
    /// immediate or CL, as `shift_r`, and of an 8/16-bit one by an
    /// immediate whose masked count is 1 .. width - 1, as `shift` (other
    /// counts run the handler): the count masked; a zero count only
    /// rewrites the register (zero-extending a 32-bit one); otherwise the
    /// flags as `set_shift` sets them (`lazy` none, CF ZF SF PF of the
    /// result as the host computes them for a count below the width, AF
    /// set, OF as `of_left`/`of_right`: MSB(result) XOR CF, the second
    /// bit of the result, 0 for SAR). After an immediate count the shift is
    /// repeated on the original value so that the host's flags are the
    /// guest's (but OF for counts above 1).
    fn shift(&mut self, ins: &Instruction, digit: u8) -> bool {
        if ins.op_count() != 2 || ins.op0_kind() != OpKind::Register {
            return false;
        }
        let Some(g) = gpr_any(ins.op0_register()) else {
            return false;
        };
        let bits = g.size * 8;
        match ins.op1_kind() {
            OpKind::Immediate8 => {}
            OpKind::Register if ins.op1_register() == Register::CL && g.size >= 4 => {
                return self.shift_cl(g.i, g.size == 8, digit);
            }
            _ => return false,
        }
        // As `shift` masks it: & 63 or & 31.
        let count = u32::from(ins.immediate8()) & (bits.max(32) - 1);
        if g.size < 4 && (count == 0 || count >= bits) {
            // 8/16-bit counts of 0 or the width and more: the handler.
            return false;
        }
        self.load_g(RAX, g);
        if count == 0 {
            // Flags (guest and host) untouched.
            self.store_g(RAX, g);
            return true;
        }
        if self.dead {
            self.a.shift_ri_x(digit, g.size, RAX, count as u8);
            self.store_g(RAX, g);
            self.host = HostFlags::None;
            return true;
        }
        self.a.mov_rr(true, RSI, RAX);
        self.a.shift_ri_x(digit, g.size, RAX, count as u8);
        self.a.flags_to_rcx();
        self.store_g(RAX, g);
        self.shift_flags(digit, bits);
        // The same shift again on the original (in RDX: a byte shift of
        // SIL would need a REX prefix): the host's CF ZF SF PF (and OF for
        // a count of 1) are the guest's.
        self.a.mov_rr(true, RDX, RSI);
        self.a.shift_ri_x(digit, g.size, RDX, count as u8);
        self.host = if count == 1 {
            HostFlags::All
        } else {
            HostFlags::NoOf
        };
        self.known = None;
        true
    }

    /// `shift` by CL: the masked count tested at run time.
    fn shift_cl(&mut self, r: usize, w: bool, digit: u8) -> bool {
        let bits: u32 = if w { 64 } else { 32 };
        let zero = self.a.label();
        let done = self.a.label();
        self.rd(w, RAX, r);
        self.rd(false, RCX, crate::cpu::reg::RCX);
        if self.dead {
            // The host masks the count the same way; a zero count leaves
            // the value.
            self.a.shift_cl(digit, w, RAX);
            self.wr(RAX, r);
            self.host = HostFlags::None;
            return true;
        }
        self.a.alu_ri(AluOp::And, false, RCX, (bits - 1) as i32);
        self.a.jcc(0x4, zero); // jz: flags untouched
        let v = self.valid;
        self.a.shift_cl(digit, w, RAX);
        self.a.flags_to_rcx();
        self.wr(RAX, r);
        self.shift_flags(digit, bits);
        let shifted = self.valid;
        self.a.jmp(done);
        self.a.bind(zero);
        self.valid = v;
        self.wr(RAX, r);
        self.a.bind(done);
        self.valid &= shifted;
        self.host = HostFlags::None;
        self.known = None;
        true
    }

    /// The flags of a SHL/SHR/SAR by a nonzero count into the guest's
    /// RFLAGS word (`lazy` none), from the result (RAX, zero-extended) and
    /// the host's flags after the shift (RCX). Uses RDX.
    fn shift_flags(&mut self, digit: u8, bits: u32) {
        let f = flags_off();
        // CF PF ZF SF from the host, AF set.
        self.a.alu_ri(AluOp::And, false, RCX, 0xc5);
        self.a.alu_ri(AluOp::Or, false, RCX, 0x10);
        match digit {
            4 => {
                // OF = MSB(result) ^ CF
                self.a.mov_rr(true, RDX, RAX);
                self.a.shift_ri(5, true, RDX, (bits - 1) as u8);
                self.a.alu_rr(AluOp::Xor, false, RDX, RCX);
                self.a.alu_ri(AluOp::And, false, RDX, 1);
                self.a.shift_ri(4, false, RDX, 11);
                self.a.alu_rr(AluOp::Or, false, RCX, RDX);
            }
            5 => {
                // OF = bit (bits - 2) of the result (its top bit is 0).
                self.a.mov_rr(true, RDX, RAX);
                self.a.shift_ri(5, true, RDX, (bits - 2) as u8);
                self.a.alu_ri(AluOp::And, false, RDX, 1);
                self.a.shift_ri(4, false, RDX, 11);
                self.a.alu_rr(AluOp::Or, false, RCX, RDX);
            }
            _ => {} // SAR: the two top bits of the result are equal.
        }
        self.a.load(true, RAX, f + fl::BITS);
        self.a.alu_ri(
            AluOp::And,
            true,
            RAX,
            !crate::cpu::flags::ARITH as i64 as i32,
        );
        self.a.alu_rr(AluOp::Or, true, RAX, RCX);
        self.a.store(true, RAX, f + fl::BITS);
        self.a.store_u8(f + fl::LAZY, fl::NONE);
    }

    /// RSI = the guest's RFLAGS word with the lazy flags materialized and
    /// CF and OF clear (for `set_cf_of`): from the host's flags when the
    /// record is `known` (after a `resync` if need be: SF ZF PF, and AF
    /// but after a logic operation, where the guest's AF is 0 and the
    /// host's undefined), else through a call to `materialize`.
    fn materialized_to_rsi(&mut self) {
        use kite_hypervisor::x86::{
            RFLAGS_AF, RFLAGS_CF, RFLAGS_OF, RFLAGS_PF, RFLAGS_SF, RFLAGS_ZF,
        };
        let f = flags_off();
        match self.known {
            Some((lazy, _)) => {
                if self.host != HostFlags::All {
                    self.resync();
                }
                let mut keep = RFLAGS_PF | RFLAGS_ZF | RFLAGS_SF;
                if lazy != fl::LOGIC {
                    keep |= RFLAGS_AF;
                }
                self.a.flags_to_rcx();
                self.a.alu_ri(AluOp::And, false, RCX, keep as i32);
                self.a.load(true, RSI, f + fl::BITS);
                self.a.alu_ri(
                    AluOp::And,
                    true,
                    RSI,
                    !crate::cpu::flags::ARITH as i64 as i32,
                );
                self.a.alu_rr(AluOp::Or, true, RSI, RCX);
            }
            None => {
                self.a.arg0_cpu();
                self.a.mov_imm(RAX, materialize as *const () as u64);
                self.a.call_rax();
                self.a.load(true, RSI, f + fl::BITS);
                self.a.alu_ri(
                    AluOp::And,
                    true,
                    RSI,
                    !(RFLAGS_CF | RFLAGS_OF) as i64 as i32,
                );
            }
        }
    }

    /// ROL/ROR (`digit` 0, 1) of a 32/64-bit GPR by an immediate, as
    /// `shift_r`: the count masked; a zero count only rewrites the
    /// register; otherwise CF and OF set as `set_cf_of` does (ROL: CF =
    /// bit 0 of the result, OF = MSB ^ CF; ROR: CF = MSB, OF = the XOR of
    /// the two top bits), the other flags materialized.
    fn rotate(&mut self, ins: &Instruction, digit: u8) -> bool {
        if ins.op_count() != 2
            || ins.op0_kind() != OpKind::Register
            || ins.op1_kind() != OpKind::Immediate8
        {
            return false;
        }
        let Some((r, w)) = gpr(ins.op0_register()) else {
            return false;
        };
        let bits: u32 = if w { 64 } else { 32 };
        let count = u32::from(ins.immediate8()) & (bits - 1);
        if count == 0 {
            self.rd(w, RAX, r);
            self.wr(RAX, r);
            return true;
        }
        if self.dead {
            // CF and OF are not seen; the others stay as recorded.
            self.rd(w, RAX, r);
            self.a.shift_ri(digit, w, RAX, count as u8);
            self.wr(RAX, r);
            self.host = HostFlags::None;
            return true;
        }
        let f = flags_off();
        self.materialized_to_rsi();
        self.rd(w, RAX, r);
        self.a.shift_ri(digit, w, RAX, count as u8);
        self.wr(RAX, r);
        // RDX = CF, RCX = the bit OF compares it with.
        self.a.mov_rr(true, RDX, RAX);
        self.a.mov_rr(true, RCX, RAX);
        if digit == 0 {
            self.a.alu_ri(AluOp::And, false, RDX, 1);
            self.a.shift_ri(5, true, RCX, (bits - 1) as u8);
        } else {
            self.a.shift_ri(5, true, RDX, (bits - 1) as u8);
            self.a.shift_ri(5, true, RCX, (bits - 2) as u8);
            self.a.alu_ri(AluOp::And, false, RCX, 1);
        }
        self.a.alu_rr(AluOp::Xor, false, RCX, RDX);
        self.a.shift_ri(4, false, RCX, 11);
        self.a.alu_rr(AluOp::Or, false, RCX, RDX);
        self.a.alu_rr(AluOp::Or, true, RSI, RCX);
        self.a.store(true, RSI, f + fl::BITS);
        self.a.store_u8(f + fl::LAZY, fl::NONE);
        self.host = HostFlags::None;
        self.known = None;
        true
    }

    /// IMUL r,r and r,r,imm (32/64-bit GPRs), as `imul_rr`/`imul`: the
    /// truncated product; CF = OF = "the signed product does not fit"
    /// (the host's); the other flags as they were (`set_cf_of`
    /// materializes them first). The materialization is native when the
    /// record is `known` (the host's flags are the guest's after a
    /// `resync`: SF ZF PF, and AF but after a logic operation, where the
    /// guest's AF is 0), else a call to `materialize`.
    fn imul(&mut self, ins: &Instruction) -> bool {
        let n = ins.op_count();
        if !(2..=3).contains(&n)
            || ins.op0_kind() != OpKind::Register
            || ins.op1_kind() != OpKind::Register
        {
            return false;
        }
        let (Some((dr, w)), Some((sr, ws))) = (gpr(ins.op0_register()), gpr(ins.op1_register()))
        else {
            return false;
        };
        if w != ws {
            return false;
        }
        let imm = if n == 3 {
            match (ins.op2_kind(), w) {
                (OpKind::Immediate8to32 | OpKind::Immediate32, false) => {
                    Some(ins.immediate(2) as u32 as i32)
                }
                (OpKind::Immediate8to64 | OpKind::Immediate32to64, true) => {
                    match i32::try_from(ins.immediate(2) as i64) {
                        Ok(v) => Some(v),
                        Err(_) => return false,
                    }
                }
                _ => return false,
            }
        } else {
            None
        };
        use kite_hypervisor::x86::{RFLAGS_CF, RFLAGS_OF};
        let f = flags_off();
        if !self.dead {
            self.materialized_to_rsi();
        }
        self.rd(w, RAX, dr);
        self.rd(w, RCX, sr);
        match imm {
            Some(v) => self.a.imul_rri(w, RAX, RCX, v),
            None => self.a.imul_rr(w, RAX, RCX),
        }
        self.wr(RAX, dr);
        if self.dead {
            // CF and OF are not seen; the others stay as recorded.
            self.host = HostFlags::None;
            return true;
        }
        self.a.flags_to_rcx();
        self.a
            .alu_ri(AluOp::And, false, RCX, (RFLAGS_CF | RFLAGS_OF) as i32);
        self.a.alu_rr(AluOp::Or, true, RSI, RCX);
        self.a.store(true, RSI, f + fl::BITS);
        self.a.store_u8(f + fl::LAZY, fl::NONE);
        // The host's SF ZF PF are undefined after IMUL.
        self.host = HostFlags::None;
        self.known = None;
        true
    }

    /// SETcc into an 8-bit register, as `setcc_r`.
    fn setcc(&mut self, ins: &Instruction) -> bool {
        if ins.op_count() != 1 || ins.op0_kind() != OpKind::Register {
            return false;
        }
        let Some(g) = gpr_any(ins.op0_register()) else {
            return false;
        };
        let Some(cc) = cond_code(ins) else {
            return false;
        };
        if g.size != 1 {
            return false;
        }
        let at = gpr_off(g.i) + g.hi;
        if self.cond_in_host(cc) {
            self.a.setcc_mem(cc, at);
        } else {
            self.a.store_u8_from_al(at);
        }
        self.forget(g.i);
        true
    }

    /// CMOVcc between 32/64-bit GPRs, as `cmov_r`: a 32-bit destination is
    /// zero-extended whatever the condition.
    fn cmov(&mut self, ins: &Instruction) -> bool {
        if ins.op_count() != 2
            || ins.op0_kind() != OpKind::Register
            || ins.op1_kind() != OpKind::Register
        {
            return false;
        }
        let (Some((dr, w)), Some((sr, ws))) = (gpr(ins.op0_register()), gpr(ins.op1_register()))
        else {
            return false;
        };
        let Some(cc) = cond_code(ins) else {
            return false;
        };
        if w != ws {
            return false;
        }
        if self.cond_in_host(cc) {
            self.rd(w, RAX, dr);
            self.rd(w, RCX, sr);
            self.a.cmov_rr(cc, w, RAX, RCX);
            self.wr(RAX, dr);
        } else {
            self.rd(w, RCX, dr);
            self.rd(w, RDX, sr);
            self.a.test_rax();
            self.a.cmov_rr(0x5, w, RCX, RDX); // cmovne: the condition held
            self.wr(RCX, dr);
        }
        true
    }

    /// The guest's condition `cc` as 0 or 1 into RSI, computed before a
    /// memory access's inline path changes the host's flags: from the
    /// host's flags where they hold it, else from `read_cond`. Uses RAX,
    /// RCX.
    fn cond_to_rsi(&mut self, cc: u8) {
        if self.cond_in_host(cc) {
            self.a.mov_imm(RCX, 0); // a MOV: the flags stay
            self.a.setcc_r(cc, RCX);
            self.a.mov_rr(false, RSI, RCX);
        } else {
            self.a.mov_rr(false, RSI, RAX);
        }
    }

    /// CMOVcc r32/r64, [m] (`lin_ok`), as `cmov_r` with a memory source:
    /// the memory is read whatever the condition (through the inline TLB
    /// path, else the handler, which raises its fault); a 32-bit
    /// destination is zero-extended even when nothing moves.
    fn cmov_mem(&mut self, d: &Decoded, rip: u64, fall: u64) -> bool {
        let ins = &d.ins;
        if !self.t.mem
            || ins.op_count() != 2
            || ins.op0_kind() != OpKind::Register
            || ins.op1_kind() != OpKind::Memory
            || !self.lin_ok(ins)
        {
            return false;
        }
        let Some((dr, w)) = gpr(ins.op0_register()) else {
            return false;
        };
        let Some(cc) = cond_code(ins) else {
            return false;
        };
        let size = if w { 8 } else { 4 };
        if ins.memory_size().size() as u32 != size {
            return false;
        }
        self.cond_to_rsi(cc);
        self.guarded(rip, fall, |c, slow| {
            c.lin(ins, fall, size, false, slow);
            c.tlb_hit(size, true, false, slow);
            c.a.load_x(size, false, w, RCX, Mem::AtRax);
            c.rd(w, RAX, dr);
            c.a.alu_rr(AluOp::Test, false, RSI, RSI);
            c.a.cmov_rr(0x5, w, RAX, RCX); // cmovne: the condition held
            c.wr(RAX, dr);
        })
    }

    /// The stack width of this block's templates: 8 in 64-bit code, 4 in
    /// 32-bit code (whose stack forms also check at run time that SS is
    /// flat and 32-bit, see `stack_ok`), else none.
    fn stack_size(&self) -> Option<u32> {
        match self.code_bits {
            64 => Some(8),
            32 => Some(4),
            _ => None,
        }
    }

    /// In 32-bit code: jump to `slow` unless SS is flat for the access and
    /// its B bit makes ESP the stack pointer (`Cpu::sp_mask` 0xffff_ffff),
    /// as `Cpu::push`/`stack_peek` then reduce to. 64-bit code: nothing
    /// (SS has base 0 and no limit). Uses RCX.
    fn stack_ok(&mut self, write: bool, slow: Label) {
        if self.code_bits == 64 {
            return;
        }
        self.flat_or(Seg::Ss as u32, write, slow);
        if !(self.entry_ok && self.entry_stack) {
            self.a.cmp_mem32(sp_mask_off(), 0xffff_ffff);
            self.a.jcc(0x5, slow); // jne
        }
    }

    /// The stack pointer plus `delta` (wrapped as `sp_mask` wraps it) into
    /// RAX, the address of a `size`-byte stack access (32-bit code: checked
    /// to end below 4 GiB, else `slow`). Uses RCX.
    fn stack_addr(&mut self, size: u32, delta: i32, slow: Label) {
        let w = size == 8;
        self.rd(w, RAX, RSP);
        if delta != 0 {
            self.a.alu_ri(AluOp::Add, w, RAX, delta);
        }
        if !w {
            self.below_4g(size, slow);
        }
    }

    /// Commit the stack pointer in `r` as `Cpu::set_sp` does: all of RSP
    /// in 64-bit code, ESP alone (RSP's upper half kept) in 32-bit code.
    fn commit_sp(&mut self, size: u32, r: u8) {
        if size == 8 {
            self.wr(r, RSP);
        } else {
            self.a.store(false, r, gpr_off(RSP));
            self.forget(RSP);
        }
    }

    /// PUSH r64 (64-bit code) and PUSH r32 (32-bit code), as
    /// `push_r`/`Cpu::push`: the old value (PUSH rSP pushes it), the write
    /// through the inline TLB path at rSP - size, then rSP committed;
    /// anything else runs the handler, which commits nothing on a fault.
    fn push(&mut self, d: &Decoded, rip: u64, fall: u64) -> bool {
        let Some((size, s)) = self.stack_reg(&d.ins, Code::Push_r64, Code::Push_r32) else {
            return false;
        };
        self.guarded(rip, fall, |c, slow| {
            c.stack_ok(true, slow);
            c.rd(size == 8, RSI, s);
            c.stack_addr(size, -(size as i32), slow);
            c.a.mov_rr(true, RDI, RAX);
            c.tlb_hit(size, false, true, slow);
            c.a.store_x(size, RSI, Mem::AtRax);
            c.commit_sp(size, RDI);
        })
    }

    /// POP r64 (64-bit code) and POP r32 (32-bit code), as `pop_r`: the
    /// read at rSP, then rSP + size, then the register (POP rSP loads the
    /// popped value).
    fn pop(&mut self, d: &Decoded, rip: u64, fall: u64) -> bool {
        let Some((size, r)) = self.stack_reg(&d.ins, Code::Pop_r64, Code::Pop_r32) else {
            return false;
        };
        self.guarded(rip, fall, |c, slow| {
            c.stack_ok(false, slow);
            c.stack_addr(size, 0, slow);
            c.tlb_hit(size, true, false, slow);
            c.a.load_x(size, false, false, RCX, Mem::AtRax);
            c.rd(size == 8, RAX, RSP);
            c.a.alu_ri(AluOp::Add, size == 8, RAX, size as i32);
            c.commit_sp(size, RAX);
            // A 32-bit register write zero-extends (`reg_write`).
            c.wr(RCX, r);
        })
    }

    /// The stack width and register of a PUSH/POP r form: `code64` in
    /// 64-bit code, `code32` in 32-bit code.
    fn stack_reg(&self, ins: &Instruction, code64: Code, code32: Code) -> Option<(u32, usize)> {
        let size = self.stack_size()?;
        if ins.code() != if size == 8 { code64 } else { code32 } {
            return None;
        }
        let (r, _) = gpr(ins.op0_register())?;
        Some((size, r))
    }

    /// A flag-neutral instruction's inline path: `body` (which jumps to
    /// the label it gets for anything it does not handle), else the
    /// handler of the instruction being translated (out of line,
    /// `cold_path`). The guest's flags are untouched either way (`known`
    /// stays); the host's are lost.
    fn guarded(&mut self, rip: u64, fall: u64, body: impl FnOnce(&mut Self, Label)) -> bool {
        let known = self.known;
        let slow = self.a.label();
        let done = self.a.label();
        body(self, slow);
        self.cold_path(slow, done, rip, fall, None);
        self.a.bind(done);
        self.host = HostFlags::None;
        self.known = known;
        true
    }

    /// Leave the block at the target in RCX (`branch_to`), on into its
    /// translation if `chain_dynamic` finds one (see `jit::chain`).
    fn leave_to_rcx(&mut self) {
        self.a.store(true, RCX, next_rip_off());
        self.a.store_u8(end_block_off(), 1);
        self.a.mov_imm(RAX, ENDED);
        self.a.jmp(self.ended);
        self.handler_exits = true;
    }

    /// CALL rel32 (64-bit code, and 32-bit code), as `control::call`: the
    /// (constant) target checked first (canonical at translation time, or
    /// against CS.limit at run time), the fall-through pushed through the
    /// inline path, rSP committed, the block left at the target.
    fn call_rel(&mut self, d: &Decoded, rip: u64, fall: u64) -> bool {
        let ins = &d.ins;
        let Some(size) = self.stack_size() else {
            return false;
        };
        if ins.code()
            != if size == 8 {
                Code::Call_rel32_64
            } else {
                Code::Call_rel32_32
            }
        {
            return false;
        }
        let Some(target) = self.rel_target(ins, fall) else {
            return false;
        };
        if !self.canonical_ok(target) {
            return false;
        }
        let slow = self.a.label();
        if size == 4 {
            // CS.limit < target: #GP before the push, through the handler.
            self.a.cmp_mem32(cs_limit_off(), target as u32);
            self.a.jcc(0x2, slow); // jb
        }
        self.stack_ok(true, slow);
        self.stack_addr(size, -(size as i32), slow);
        self.a.mov_rr(true, RDI, RAX);
        self.tlb_hit(size, false, true, slow);
        self.a.mov_imm(RCX, fall);
        self.a.store_x(size, RCX, Mem::AtRax);
        self.commit_sp(size, RDI);
        self.a.mov_imm(RCX, target);
        self.a.store(true, RCX, next_rip_off());
        self.a.store_u8(end_block_off(), 1);
        self.leave(target, ENDED);
        self.a.bind(slow);
        self.call(d, rip, fall);
        self.a.jmp(self.exit);
        true
    }

    /// RET / RET imm16 (64-bit code, and 32-bit code), as `control::ret`:
    /// the target read at rSP through the inline path and checked
    /// (canonical, or within CS.limit; else the handler raises #GP), rSP +
    /// size + imm committed, the block left at the target.
    fn ret(&mut self, d: &Decoded, rip: u64, fall: u64) -> bool {
        let ins = &d.ins;
        let Some(size) = self.stack_size() else {
            return false;
        };
        let imm = match (size, ins.code()) {
            (8, Code::Retnq) | (4, Code::Retnd) => 0,
            (8, Code::Retnq_imm16) | (4, Code::Retnd_imm16) => i32::from(ins.immediate16()),
            _ => return false,
        };
        let w = size == 8;
        let slow = self.a.label();
        self.stack_ok(false, slow);
        self.stack_addr(size, 0, slow);
        self.tlb_hit(size, true, false, slow);
        self.a.load_x(size, false, w, RCX, Mem::AtRax);
        if w {
            self.a.mov_rr(true, RDX, RCX);
            self.a.shift_ri(4, true, RDX, 16); // shl
            self.a.shift_ri(7, true, RDX, 16); // sar
            self.a.alu_rr(AluOp::Cmp, true, RDX, RCX);
            self.a.jcc(0x5, slow);
        } else {
            // target > CS.limit: #GP, through the handler.
            self.a.cmp_r_mem(false, RCX, RBX, cs_limit_off());
            self.a.jcc(0x7, slow); // ja
        }
        self.rd(w, RAX, RSP);
        self.a.alu_ri(AluOp::Add, w, RAX, size as i32 + imm);
        self.commit_sp(size, RAX);
        self.leave_to_rcx();
        self.a.bind(slow);
        self.call(d, rip, fall);
        self.a.jmp(self.exit);
        true
    }

    /// INC/DEC of a 32/64-bit GPR, as `incdec_r` (CF kept as `cin`).
    fn inc_dec(&mut self, ins: &Instruction, dec: bool) -> bool {
        if ins.op_count() != 1 || ins.op0_kind() != OpKind::Register {
            return false;
        }
        let Some((d, w)) = gpr(ins.op0_register()) else {
            return false;
        };
        if self.dead {
            // OF SF ZF AF PF are not seen; CF stays as recorded.
            self.rd(w, RAX, d);
            self.a.inc_dec(dec, w, RAX);
            self.wr(RAX, d);
            self.host = HostFlags::None;
            return true;
        }
        let f = flags_off();
        if !self.host_has(0x2) {
            self.resync();
        }
        if self.host_has(0x2) {
            self.a.setcc_mem(0x2, f + fl::CIN); // setb: the guest's CF
                                                // INC/DEC set OF SF ZF PF and keep CF: the host's are the guest's.
            self.host = HostFlags::All;
        } else {
            self.a.arg0_cpu();
            self.a.mov_imm(RAX, read_cf as *const () as u64);
            self.a.call_rax();
            self.a.store_u8_from_al(f + fl::CIN);
            self.host = HostFlags::NoCf;
        }
        self.rd(w, RAX, d);
        self.a.store(true, RAX, f + fl::A);
        self.a.store_i32(true, f + fl::B, 1);
        self.a.inc_dec(dec, w, RAX);
        self.wr(RAX, d);
        self.a.store(true, RAX, f + fl::RES);
        self.record(if dec { fl::DEC } else { fl::INC }, if w { 64 } else { 32 });
        self.known = None;
        true
    }

    /// INC/DEC of a 32/64-bit memory operand (`lin_ok`), as `unop`: the
    /// guest's CF taken first (into RSI), then the read-modify-write
    /// through the inline TLB path (read and write permission) and the
    /// record of `set_inc`/`set_dec` (`cin` the CF), written only once the
    /// access is done; anything else runs the handler, which raises the
    /// fault with the flags untouched.
    fn inc_dec_mem(&mut self, d: &Decoded, rip: u64, fall: u64, dec: bool) -> bool {
        let ins = &d.ins;
        if !self.t.mem_alu
            || ins.op_count() != 1
            || ins.op0_kind() != OpKind::Memory
            || !self.lin_ok(ins)
        {
            return false;
        }
        let size = ins.memory_size().size() as u32;
        if !matches!(size, 4 | 8) {
            return false;
        }
        let w = size == 8;
        let f = flags_off();
        self.cond_to_rsi(0x2); // CF (condition B)
        self.guarded(rip, fall, |c, slow| {
            c.lin(ins, fall, size, true, slow);
            c.tlb_hit(size, true, true, slow);
            c.a.load_x(size, false, w, RCX, Mem::AtRax);
            c.a.store(true, RCX, f + fl::A);
            c.a.store_i32(true, f + fl::B, 1);
            c.a.inc_dec(dec, w, RCX);
            c.a.store_x(size, RCX, Mem::AtRax);
            c.a.store(true, RCX, f + fl::RES);
            c.a.mov_rr(false, RDX, RSI);
            c.a.store_x(1, RDX, Mem::Cpu(f + fl::CIN));
            c.record(if dec { fl::DEC } else { fl::INC }, size * 8);
        });
        self.known = None;
        true
    }

    /// LEA with GPR base and/or index, or RIP-relative, into a 32/64-bit
    /// GPR.
    fn lea(&mut self, ins: &Instruction, fall: u64) -> bool {
        if ins.op_count() != 2 || ins.op1_kind() != OpKind::Memory {
            return false;
        }
        let Some((d, w)) = gpr(ins.op0_register()) else {
            return false;
        };
        let (base, index) = (ins.memory_base(), ins.memory_index());
        if base == Register::RIP && index == Register::None {
            // A constant; a 32-bit destination takes its low half.
            let lin = rip_relative(ins, fall);
            self.a.mov_imm(RAX, if w { lin } else { lin & 0xffff_ffff });
            self.wr(RAX, d);
            return true;
        }
        let b = if base == Register::None {
            None
        } else {
            match gpr(base) {
                Some(g) => Some(g),
                None => return false, // EIP-relative, 16-bit
            }
        };
        let x = if index == Register::None {
            None
        } else {
            match gpr(index) {
                Some(g) => Some(g),
                None => return false,
            }
        };
        let addr64 = match (b, x) {
            (None, None) => return false,
            (Some((_, w1)), Some((_, w2))) if w1 != w2 => return false,
            (Some((_, aw)), _) | (None, Some((_, aw))) => aw,
        };
        let disp = ins.memory_displacement64();
        // A 64-bit result needs the displacement as the host's disp32; a
        // 32-bit result (or address) is the low half of the same sum.
        let wide = w && addr64;
        let disp = if wide {
            match i32::try_from(disp as i64) {
                Ok(v) => v,
                Err(_) => return false,
            }
        } else {
            disp as u32 as i32
        };
        let scale = ins.memory_index_scale();
        self.address(wide, b.map(|(r, _)| r), x.map(|(r, _)| (r, scale)), disp);
        self.wr(RAX, d);
        true
    }

    /// The target of a relative branch as `Cpu::branch_target` computes it
    /// with `next_rip` = `fall`, if the form is one the templates take.
    fn rel_target(&self, ins: &Instruction, fall: u64) -> Option<u64> {
        let t = fall.wrapping_add(ins.near_branch_target().wrapping_sub(ins.next_ip()));
        match ins.op0_kind() {
            OpKind::NearBranch32 => Some(t & 0xffff_ffff),
            OpKind::NearBranch64 => Some(t),
            _ => None,
        }
    }

    /// Leave the block at `target` as `branch_to` does, after the target
    /// check `check_near_target` makes; a target the check refuses runs the
    /// instruction's handler instead (which raises the fault exactly).
    fn taken(&mut self, d: &Decoded, rip: u64, fall: u64, target: u64) {
        let slow = if self.code_bits == 64 {
            // 64-bit mode: the canonical check does not depend on state
            // (the caller refused a non-canonical target).
            None
        } else {
            // CS.limit < target: #GP, through the handler.
            let slow = self.a.label();
            self.a.cmp_mem32(cs_limit_off(), target as u32);
            self.a.jcc(0x2, slow); // jb
            Some(slow)
        };
        self.a.mov_imm(RAX, target);
        self.a.store(true, RAX, next_rip_off());
        self.a.store_u8(end_block_off(), 1);
        self.leave(target, ENDED);
        if let Some(slow) = slow {
            self.a.bind(slow);
            self.call(d, rip, fall);
            // The handler faulted (or ended the block): leave with its status.
            self.a.jmp(self.exit);
        }
    }

    fn canonical_ok(&self, target: u64) -> bool {
        self.code_bits != 64 || crate::cpu::access::canonical(target)
    }

    /// JMP rel8/rel32.
    fn jmp(&mut self, d: &Decoded, rip: u64, fall: u64) -> bool {
        let ins = &d.ins;
        if !matches!(
            ins.code(),
            Code::Jmp_rel8_64 | Code::Jmp_rel32_64 | Code::Jmp_rel8_32 | Code::Jmp_rel32_32
        ) {
            return false;
        }
        let Some(target) = self.rel_target(ins, fall) else {
            return false;
        };
        if !self.canonical_ok(target) {
            return false;
        }
        self.taken(d, rip, fall, target);
        true
    }

    /// Jcc rel8/rel32: the condition from the host's flags where they are
    /// the guest's, else from `read_cond`.
    fn jcc(&mut self, d: &Decoded, rip: u64, fall: u64) -> bool {
        let ins = &d.ins;
        if !ins.is_jcc_short_or_near() {
            return false;
        }
        let Some(target) = self.rel_target(ins, fall) else {
            return false;
        };
        if !self.canonical_ok(target) {
            return false;
        }
        let Some(cc) = cond_code(ins) else {
            return false;
        };
        let not_taken = self.a.label();
        if self.cond_in_host(cc) {
            self.a.jcc(cc ^ 1, not_taken);
        } else {
            self.a.test_rax();
            self.a.jcc(0x4, not_taken); // jz
        }
        // The taken path leaves; the other goes on as things were.
        let (v, host, known, e) = (self.valid, self.host, self.known, self.entry_ok);
        self.taken(d, rip, fall, target);
        self.a.bind(not_taken);
        (self.valid, self.host, self.known, self.entry_ok) = (v, host, known, e);
        true
    }
}
