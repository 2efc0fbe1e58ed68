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
//!   `cpu.jit_fault` the fault, nothing of it committed.

use iced_x86::{Code, FlowControl, Instruction, Mnemonic, OpKind, Register};

use super::chain::{emit_dynamic_exit, emit_exit, Slots};
use super::emitter::{AluOp, Asm, Label, RAX, RCX, RDX, RSI};
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
    /// MOV between a 32/64-bit GPR and memory in 64-bit code, with the
    /// soft TLB's hit path inline.
    pub mem: bool,
}

impl Templates {
    pub const ALL: Templates = Templates {
        mov: true,
        alu: true,
        incdec: true,
        lea: true,
        branch: true,
        mem: true,
    };
    pub const NONE: Templates = Templates {
        mov: false,
        alu: false,
        incdec: false,
        lea: false,
        branch: false,
        mem: false,
    };
}

/// What a translation contains (for tests and statistics).
#[derive(Default, Clone, Copy, Debug)]
pub struct Counts {
    pub native: u32,
    pub calls: u32,
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
) -> Option<(Vec<u8>, Counts)> {
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
        code_bits,
        t,
        counts: Counts::default(),
        slots,
        handler_exits: false,
    };
    let mut rip = rip;
    let mut open = true; // control can reach the end of the block
    let mut last_native = false;
    for d in insns {
        let fall = rip.wrapping_add(d.ins.len() as u64) & ip_mask;
        match c.native(d, rip, fall) {
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
    c.a.bind(exit);
    c.a.epilogue();
    if c.handler_exits {
        c.a.bind(ended);
        let table = c.slots.table();
        emit_dynamic_exit(&mut c.a, table, exit);
    }
    let counts = c.counts;
    c.a.finish().map(|code| (code, counts))
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
    }

    /// Emit `ins` natively if a template covers it: `Some(true)` if it
    /// always leaves the block (JMP), `Some(false)` if it may fall through,
    /// `None` if not covered (nothing emitted).
    fn native(&mut self, d: &Decoded, rip: u64, fall: u64) -> Option<bool> {
        let ins = &d.ins;
        if ins.has_lock_prefix() || ins.has_xacquire_prefix() || ins.has_xrelease_prefix() {
            return None;
        }
        match ins.mnemonic() {
            Mnemonic::Mov if self.t.mov && self.mov(ins) => Some(false),
            Mnemonic::Mov if self.t.mem => self.mov_mem(d, rip, fall).then_some(false),
            Mnemonic::Add if self.t.alu => self.alu(ins, AluOp::Add).then_some(false),
            Mnemonic::Sub if self.t.alu => self.alu(ins, AluOp::Sub).then_some(false),
            Mnemonic::And if self.t.alu => self.alu(ins, AluOp::And).then_some(false),
            Mnemonic::Or if self.t.alu => self.alu(ins, AluOp::Or).then_some(false),
            Mnemonic::Xor if self.t.alu => self.alu(ins, AluOp::Xor).then_some(false),
            Mnemonic::Cmp if self.t.alu => self.alu(ins, AluOp::Cmp).then_some(false),
            Mnemonic::Test if self.t.alu => self.alu(ins, AluOp::Test).then_some(false),
            Mnemonic::Inc if self.t.incdec => self.inc_dec(ins, false).then_some(false),
            Mnemonic::Dec if self.t.incdec => self.inc_dec(ins, true).then_some(false),
            Mnemonic::Lea if self.t.lea => self.lea(ins).then_some(false),
            Mnemonic::Jmp if self.t.branch => self.jmp(d, rip, fall).then_some(true),
            _ if self.t.branch && ins.flow_control() == FlowControl::ConditionalBranch => {
                self.jcc(d, rip, fall).then_some(false)
            }
            _ => None,
        }
    }

    /// MOV r,r and MOV r,imm (32/64-bit GPRs; a 32-bit write zero-extends).
    fn mov(&mut self, ins: &Instruction) -> bool {
        if ins.op_count() != 2 || ins.op0_kind() != OpKind::Register {
            return false;
        }
        let Some((d, w)) = gpr(ins.op0_register()) else {
            return false;
        };
        match ins.op1_kind() {
            OpKind::Register => {
                let Some((s, ws)) = gpr(ins.op1_register()) else {
                    return false;
                };
                if ws != w {
                    return false;
                }
                self.a.load(w, RAX, gpr_off(s));
            }
            OpKind::Immediate32 if !w => self.a.mov_imm(RAX, ins.immediate(1) & 0xffff_ffff),
            OpKind::Immediate64 | OpKind::Immediate32to64 if w => {
                self.a.mov_imm(RAX, ins.immediate(1))
            }
            _ => return false,
        }
        self.a.store(true, RAX, gpr_off(d));
        true
    }

    /// MOV r32/r64, [m] and MOV [m], r32/r64 in 64-bit code, as
    /// `mov_rm_flat`/`mov_mr_flat`: a DS/ES/SS (base 0) operand with a GPR
    /// base and optional index. Inline: the linear address, the canonical
    /// and page-crossing checks, the TLB lookup with the permission
    /// `Cpu::need` asks (user or supervisor by CPL), the access through the
    /// host pointer. Anything else (a miss, MMIO, a fault, a code page's
    /// missing write permission, CPL changed since translation) runs the
    /// handler, which does the whole access again exactly.
    fn mov_mem(&mut self, d: &Decoded, rip: u64, fall: u64) -> bool {
        use crate::mmu::tlb::{layout as tl, READ_S, READ_U, WRITE_S, WRITE_U};
        let ins = &d.ins;
        if self.code_bits != 64 || ins.op_count() != 2 {
            return false;
        }
        let (store, reg, mem_op) = match (ins.op0_kind(), ins.op1_kind()) {
            (OpKind::Register, OpKind::Memory) => (false, ins.op0_register(), 1),
            (OpKind::Memory, OpKind::Register) => (true, ins.op1_register(), 0),
            _ => return false,
        };
        let _ = mem_op;
        let Some((r, w)) = gpr(reg) else {
            return false;
        };
        if ins.memory_size().size() != if w { 8 } else { 4 } {
            return false;
        }
        if !matches!(
            ins.memory_segment(),
            Register::DS | Register::ES | Register::SS
        ) {
            return false;
        }
        let base = match gpr(ins.memory_base()) {
            Some((b, true)) => b,
            _ => return false, // none, RIP-relative, 32-bit addressing
        };
        let index = match ins.memory_index() {
            Register::None => None,
            x => match gpr(x) {
                Some((i, true)) => Some(i),
                _ => return false,
            },
        };
        let Ok(disp) = i32::try_from(ins.memory_displacement64() as i64) else {
            return false;
        };
        let size: u32 = if w { 8 } else { 4 };
        let slow = self.a.label();
        let done = self.a.label();
        // The CPL the permission was chosen for.
        let user = self.cpl3;
        self.a.cmp_mem8(cpl_off(), 3);
        self.a.jcc(if user { 0x5 } else { 0x4 }, slow); // jne / je
                                                        // rax = lin
        self.a.load(true, RCX, gpr_off(base));
        match index {
            Some(i) => self.a.load(true, RDX, gpr_off(i)),
            None => self.a.mov_imm(RDX, 0),
        }
        let scale = if index.is_some() {
            ins.memory_index_scale()
        } else {
            1
        };
        self.a.lea_rcx_rdx(true, RAX, scale, disp);
        // Canonical: sign-extending bit 47 gives it back.
        self.a.mov_rr(true, RCX, RAX);
        self.a.shift_ri(4, true, RCX, 16); // shl
        self.a.shift_ri(7, true, RCX, 16); // sar
        self.a.alu_rr(AluOp::Cmp, true, RCX, RAX);
        self.a.jcc(0x5, slow);
        // Within one page: (lin & 0xfff) <= 0x1000 - size.
        self.a.mov_rr(false, RCX, RAX);
        self.a.alu_ri(AluOp::And, false, RCX, 0xfff);
        self.a
            .alu_ri(AluOp::Cmp, false, RCX, (0x1000 - size) as i32);
        self.a.jcc(0x7, slow); // ja
                               // rdx = &hot[(lin >> 12) & (ENTRIES - 1)]
        self.a.mov_rr(true, RDX, RAX);
        self.a.shift_ri(5, true, RDX, 12); // shr
        self.a
            .alu_ri(AluOp::And, false, RDX, (tl::ENTRIES - 1) as i32);
        self.a.shift_ri(4, true, RDX, 4); // * 16
        self.a.add_r_mem(true, RDX, tlb_off() + tl::HOT_BASE);
        // (tag ^ (lin & PAGE_MASK)) & (PAGE_MASK | need) == need
        let need = match (store, user) {
            (false, false) => READ_S,
            (true, false) => WRITE_S,
            (false, true) => READ_U,
            (true, true) => WRITE_U,
        };
        self.a.mov_rr(true, RCX, RAX);
        self.a.alu_ri(AluOp::And, true, RCX, -4096);
        self.a.xor_r_at_rdx(true, RCX);
        self.a
            .alu_ri(AluOp::And, true, RCX, -4096 | i32::from(need));
        self.a.alu_ri(AluOp::Cmp, true, RCX, i32::from(need));
        self.a.jcc(0x5, slow);
        // host = addend + lin
        self.a.add_r_at_rdx8(true, RAX);
        if store {
            self.a.load(w, RCX, gpr_off(r));
            self.a.store_at_rax(w, RCX);
        } else {
            self.a.load_at_rax(w, RAX);
            self.a.store(true, RAX, gpr_off(r));
        }
        self.a.jmp(done);
        self.a.bind(slow);
        self.call(d, rip, fall);
        self.a.bind(done);
        self.host = HostFlags::None;
        true
    }

    /// Record the lazy flags as `Flags::record` does: `a`, `b`, `res`
    /// already masked, `cin` 0.
    fn record(&mut self, lazy: u8, bits: u32) {
        let f = flags_off();
        self.a.store_u8(f + fl::LAZY, lazy);
        self.a.store_i32(false, f + fl::SIZE, bits as i32);
    }

    /// ADD SUB AND OR XOR CMP TEST with a 32/64-bit GPR destination and a
    /// GPR (same size) or immediate source, as `binop_rr`/`binop_ri`.
    fn alu(&mut self, ins: &Instruction, op: AluOp) -> bool {
        if ins.op_count() != 2 || ins.op0_kind() != OpKind::Register {
            return false;
        }
        let Some((d, w)) = gpr(ins.op0_register()) else {
            return false;
        };
        let bits = if w { 64 } else { 32 };
        let m = if w { u64::MAX } else { 0xffff_ffff };
        // The source: a register, or an immediate the host form can take.
        enum Src {
            Reg(usize),
            Imm(i32, u64),
        }
        let src = match ins.op1_kind() {
            OpKind::Register => match gpr(ins.op1_register()) {
                Some((s, ws)) if ws == w => Src::Reg(s),
                _ => return false,
            },
            OpKind::Immediate8to32 | OpKind::Immediate32 if !w => {
                let b = ins.immediate(1) & m;
                Src::Imm(b as u32 as i32, b)
            }
            OpKind::Immediate8to64 | OpKind::Immediate32to64 if w => {
                let b = ins.immediate(1);
                match i32::try_from(b as i64) {
                    Ok(v) => Src::Imm(v, b),
                    Err(_) => return false,
                }
            }
            _ => return false,
        };
        let f = flags_off();
        let logic = matches!(op, AluOp::And | AluOp::Or | AluOp::Xor | AluOp::Test);
        self.a.load(w, RAX, gpr_off(d));
        if let Src::Reg(s) = src {
            self.a.load(w, RCX, gpr_off(s));
        }
        if logic {
            self.a.store_i32(true, f + fl::A, 0);
            self.a.store_i32(true, f + fl::B, 0);
        } else {
            self.a.store(true, RAX, f + fl::A);
            match src {
                Src::Reg(_) => self.a.store(true, RCX, f + fl::B),
                Src::Imm(_, b) => {
                    self.a.mov_imm(RDX, b);
                    self.a.store(true, RDX, f + fl::B);
                }
            }
        }
        self.a.store_u8(f + fl::CIN, 0);
        // CMP computes as SUB and TEST as AND (same flags), writing nothing.
        let host_op = match op {
            AluOp::Cmp => AluOp::Sub,
            AluOp::Test => AluOp::And,
            o => o,
        };
        match src {
            Src::Reg(_) => self.a.alu_rr(host_op, w, RAX, RCX),
            Src::Imm(v, _) => self.a.alu_ri(host_op, w, RAX, v),
        }
        // From here to the next Jcc only MOVs: the host flags stay the guest's.
        if !matches!(op, AluOp::Cmp | AluOp::Test) {
            self.a.store(true, RAX, gpr_off(d));
        }
        self.a.store(true, RAX, f + fl::RES);
        let lazy = match op {
            AluOp::Add => fl::ADD,
            AluOp::Sub | AluOp::Cmp => fl::SUB,
            _ => fl::LOGIC,
        };
        self.record(lazy, bits);
        self.host = HostFlags::All;
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
        let f = flags_off();
        if self.host == HostFlags::All {
            self.a.setcc_mem(0x2, f + fl::CIN); // setb: the guest's CF
        } else {
            self.a.arg0_cpu();
            self.a.mov_imm(RAX, read_cf as *const () as u64);
            self.a.call_rax();
            self.a.store_u8_from_al(f + fl::CIN);
            self.host = HostFlags::NoCf;
        }
        self.a.load(w, RAX, gpr_off(d));
        self.a.store(true, RAX, f + fl::A);
        self.a.store_i32(true, f + fl::B, 1);
        self.a.inc_dec(dec, w, RAX);
        self.a.store(true, RAX, gpr_off(d));
        self.a.store(true, RAX, f + fl::RES);
        self.record(if dec { fl::DEC } else { fl::INC }, if w { 64 } else { 32 });
        true
    }

    /// LEA with GPR base and/or index into a 32/64-bit GPR.
    fn lea(&mut self, ins: &Instruction) -> bool {
        if ins.op_count() != 2 || ins.op1_kind() != OpKind::Memory {
            return false;
        }
        let Some((d, w)) = gpr(ins.op0_register()) else {
            return false;
        };
        let (base, index) = (ins.memory_base(), ins.memory_index());
        let b = if base == Register::None {
            None
        } else {
            match gpr(base) {
                Some(g) => Some(g),
                None => return false, // RIP-relative, 16-bit
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
        match b {
            Some((r, _)) => self.a.load(true, RCX, gpr_off(r)),
            None => self.a.mov_imm(RCX, 0),
        }
        match x {
            Some((r, _)) => self.a.load(true, RDX, gpr_off(r)),
            None => self.a.mov_imm(RDX, 0),
        }
        self.a
            .lea_rcx_rdx(wide, RAX, ins.memory_index_scale(), disp);
        self.a.store(true, RAX, gpr_off(d));
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
        let cc = ins.condition_code() as u32;
        // iced's ConditionCode: None = 0, then o no b ae e ne be a s ns p np l ge le g.
        if cc == 0 {
            return false;
        }
        let cc = (cc - 1) as u8;
        let uses_cf = matches!(cc >> 1, 1 | 3);
        let not_taken = self.a.label();
        match self.host {
            HostFlags::All => self.a.jcc(cc ^ 1, not_taken),
            HostFlags::NoCf if !uses_cf => self.a.jcc(cc ^ 1, not_taken),
            _ => {
                self.a.arg0_cpu();
                self.a.mov_imm(RSI, u64::from(cc));
                self.a.mov_imm(RAX, read_cond as *const () as u64);
                self.a.call_rax();
                self.a.test_rax();
                self.a.jcc(0x4, not_taken); // jz
                self.host = HostFlags::None;
            }
        }
        self.taken(d, rip, fall, target);
        self.a.bind(not_taken);
        true
    }
}
