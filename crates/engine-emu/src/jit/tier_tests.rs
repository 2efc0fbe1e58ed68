//! The two tiers against each other: the same random instruction streams
//! from the same initial state, run on the interpreter and with blocks
//! translated (every block at once, or hot ones), must end in the same
//! registers, RFLAGS, RIP, memory and stop reason. The streams mix the forms
//! the native templates cover with forms that go through handler calls and
//! read or write the lazy flags (ADC, SETcc, PUSHF, shifts), loads and
//! stores, taken and not-taken branches and loops, and rare faults.

use iced_x86::code_asm::*;

use super::translate::Templates;
use super::Tier;
use crate::cpu::block_cache::BlockCache;
use crate::cpu::exec::Stop;
use crate::cpu::integer::test_support::{Rng, TestCpu, CODE, DATA, MEM_SIZE};

/// Operands the templates care about.
trait Imm {
    fn imm(&mut self) -> u64;
}

impl Imm for Rng {
    /// An interesting immediate: small, boundary or random.
    fn imm(&mut self) -> u64 {
        match self.below(6) {
            0 => self.below(4),
            1 => 0x7fff_ffff,
            2 => 0x8000_0000,
            3 => u64::MAX,
            4 => self.below(256).wrapping_sub(128),
            _ => self.next(),
        }
    }
}

/// The final state of a run, compared between tiers.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    stop: Stop,
    rip: u64,
    gpr: [u64; 16],
    rflags: u64,
    data: Vec<u8>,
    stack: Vec<u8>,
    /// The page tables (64-bit runs): accessed and dirty bits.
    tables: Vec<u8>,
    /// Where a 16-bit SS with base 0 puts the stack (`Segs::SsFlat16`).
    low_stack: Vec<u8>,
}

const STACK_BASE: u64 = 0x7f000;

fn run(
    code: &[u8],
    bits: u32,
    init: &[u64; 16],
    rflags: u64,
    tier: Tier,
    t: Templates,
) -> (Outcome, super::Stats) {
    run_in(code, bits, init, rflags, tier, t, &|_| {})
}

/// The segments of a 32-bit run (64-bit runs ignore them): flat, or one of
/// the states the 32-bit inline paths must decline at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segs {
    Flat,
    /// DS based at 0x100 (not flat).
    DsBased,
    /// SS based at 0x70000 with a 1 MiB limit and B clear: not flat, and a
    /// 16-bit stack pointer.
    SsSmall16,
    /// SS flat but with B clear: SP, not ESP, is the stack pointer.
    SsFlat16,
}

impl Segs {
    fn apply(self, c: &mut TestCpu) {
        use crate::cpu::Seg;
        let seg = &mut c.cpu.seg;
        match self {
            Segs::Flat => {}
            Segs::DsBased => seg[Seg::Ds as usize].base = 0x100,
            Segs::SsSmall16 => {
                let stack = &mut seg[Seg::Ss as usize];
                (stack.base, stack.limit, stack.db) = (0x70000, 0xf_ffff, false);
            }
            Segs::SsFlat16 => seg[Seg::Ss as usize].db = false,
        }
    }
}

/// `run` with `setup` applied to the machine (segments, descriptor
/// tables) before it starts.
fn run_in(
    code: &[u8],
    bits: u32,
    init: &[u64; 16],
    rflags: u64,
    tier: Tier,
    t: Templates,
    setup: &dyn Fn(&mut TestCpu),
) -> (Outcome, super::Stats) {
    let mut c = TestCpu::new(bits);
    c.write(CODE, code);
    let data: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(37) ^ 0x5a) as u8)
        .collect();
    c.write(DATA, &data);
    c.cpu.gpr = *init;
    c.cpu.gpr[4] = STACK_BASE + 0x800;
    if bits == 32 {
        // RSP's upper half, which 32-bit stack operations keep.
        c.cpu.gpr[4] |= init[4] & !0xffff_ffff;
    }
    c.cpu.flags.set_rflags(rflags);
    c.cpu.seg[crate::cpu::Seg::Fs as usize].base = FS_BASE;
    c.cpu.seg[crate::cpu::Seg::Gs as usize].base = GS_BASE;
    setup(&mut c);
    c.cpu.refresh_seg_cache();
    c.cpu.rip = CODE;
    c.cpu.set_tier(tier);
    let mut blocks = BlockCache::new();
    blocks.jit.templates = t;
    let stop = c.cpu.run(&mut blocks);
    let out = Outcome {
        stop,
        rip: c.cpu.rip,
        gpr: c.cpu.gpr,
        rflags: c.cpu.flags.rflags(),
        data: c.read(DATA, 4096),
        stack: c.read(STACK_BASE, 4096),
        tables: c.read(0x1000, 0x3000),
        low_stack: c.read(0xf000, 0x1000),
    };
    (out, blocks.jit.stats)
}

/// Registers the streams may write (64-bit mode): not RSP (the stack), R14
/// (the loop counter) or R15 (the data pointer).
const W64: [AsmRegister64; 13] = [
    rax, rcx, rdx, rbx, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13,
];
const W32: [AsmRegister32; 13] = [
    eax, ecx, edx, ebx, ebp, esi, edi, r8d, r9d, r10d, r11d, r12d, r13d,
];
/// Registers they may read.
const R64: [AsmRegister64; 16] = [
    rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
];
const R32: [AsmRegister32; 16] = [
    eax, ecx, edx, ebx, esp, ebp, esi, edi, r8d, r9d, r10d, r11d, r12d, r13d, r14d, r15d,
];

/// 8/16-bit registers the streams may write: REX-compatible byte
/// registers, the legacy ones (with AH..BH, never mixed with REX), words.
const W8: [AsmRegister8; 12] = [al, cl, dl, bl, bpl, sil, dil, r8b, r9b, r10b, r11b, r12b];
const W8H: [AsmRegister8; 8] = [al, cl, dl, bl, ah, ch, dh, bh];
const L32: [AsmRegister32; 7] = [eax, ecx, edx, ebx, ebp, esi, edi];
const W16: [AsmRegister16; 13] = [ax, cx, dx, bx, bp, si, di, r8w, r9w, r10w, r11w, r12w, r13w];
const R16: [AsmRegister16; 16] = [
    ax, cx, dx, bx, sp, bp, si, di, r8w, r9w, r10w, r11w, r12w, r13w, r14w, r15w,
];

/// FS and GS bases of the test runs: `fs:[r15 + x - FS_BASE]` is DATA + x.
const FS_BASE: u64 = 0x2000;
const GS_BASE: u64 = 0x3000;

/// Index registers (not RSP/ESP).
const X64: [AsmRegister64; 15] = [
    rax, rcx, rdx, rbx, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
];
const X32: [AsmRegister32; 15] = [
    eax, ecx, edx, ebx, ebp, esi, edi, r8d, r9d, r10d, r11d, r12d, r13d, r14d, r15d,
];

/// A random condition code's SETcc into `d`.
fn setcc(a: &mut CodeAssembler, cc: u64, d: AsmRegister8) -> Result<(), IcedError> {
    match cc {
        0 => a.seto(d),
        1 => a.setno(d),
        2 => a.setb(d),
        3 => a.setae(d),
        4 => a.sete(d),
        5 => a.setne(d),
        6 => a.setbe(d),
        7 => a.seta(d),
        8 => a.sets(d),
        9 => a.setns(d),
        10 => a.setp(d),
        11 => a.setnp(d),
        12 => a.setl(d),
        13 => a.setge(d),
        14 => a.setle(d),
        _ => a.setg(d),
    }
}

/// A random condition code's CMOVcc.
macro_rules! cmov {
    ($a:expr, $cc:expr, $d:expr, $s:expr) => {
        match $cc {
            0 => $a.cmovo($d, $s),
            1 => $a.cmovno($d, $s),
            2 => $a.cmovb($d, $s),
            3 => $a.cmovae($d, $s),
            4 => $a.cmove($d, $s),
            5 => $a.cmovne($d, $s),
            6 => $a.cmovbe($d, $s),
            7 => $a.cmova($d, $s),
            8 => $a.cmovs($d, $s),
            9 => $a.cmovns($d, $s),
            10 => $a.cmovp($d, $s),
            11 => $a.cmovnp($d, $s),
            12 => $a.cmovl($d, $s),
            13 => $a.cmovge($d, $s),
            14 => $a.cmovle($d, $s),
            _ => $a.cmovg($d, $s),
        }
    };
}

/// A random ALU operation: ADD OR AND SUB XOR CMP, and TEST when asked.
macro_rules! alu_op {
    ($a:expr, $k:expr, false, $d:expr, $s:expr) => {
        match $k % 6 {
            0 => $a.add($d, $s),
            1 => $a.or($d, $s),
            2 => $a.and($d, $s),
            3 => $a.sub($d, $s),
            4 => $a.xor($d, $s),
            _ => $a.cmp($d, $s),
        }
    };
    ($a:expr, $k:expr, true, $d:expr, $s:expr) => {
        match $k % 7 {
            0 => $a.add($d, $s),
            1 => $a.or($d, $s),
            2 => $a.and($d, $s),
            3 => $a.sub($d, $s),
            4 => $a.xor($d, $s),
            5 => $a.cmp($d, $s),
            _ => $a.test($d, $s),
        }
    };
}

/// An instruction that reads the flags the previous one left.
fn flag_reader(a: &mut CodeAssembler, r: &mut Rng) -> Result<(), IcedError> {
    let d64 = r.pick(&W64);
    match r.below(6) {
        0 => setcc(a, r.below(16), r.pick(&W8)),
        1 => cmov!(a, r.below(16), d64, r.pick(&R64)),
        2 => a.adc(d64, r.pick(&R64)),
        3 => a.sbb(r.pick(&W8), r.pick(&W8)),
        4 => a.pushfq().and_then(|_| a.pop(d64)),
        _ => a.inc(r.pick(&W32)).and_then(|_| a.adc(d64, 0)),
    }
}

/// One of the forms added for the shift/cond/stack/memory templates.
fn gen64_more(a: &mut CodeAssembler, r: &mut Rng, start: CodeLabel) -> Result<(), IcedError> {
    let d64 = r.pick(&W64);
    let d32 = r.pick(&W32);
    let s64 = r.pick(&R64);
    let s32 = r.pick(&R32);
    let imm = r.imm();
    let k = r.below(7);
    // A DATA offset for an access of 8 bytes (any smaller fits too).
    let off = r.below(4096 - 8) as i32;
    match r.below(27) {
        0 => match r.below(3) {
            0 => a.movzx(d32, r.pick(&W8)),
            1 => a.movzx(d64, r.pick(&R16)),
            _ => a.movzx(r.pick(&L32), r.pick(&W8H)),
        },
        1 => match r.below(4) {
            0 => a.movsx(d64, r.pick(&W8)),
            1 => a.movsx(d32, r.pick(&R16)),
            2 => a.movsx(r.pick(&L32), r.pick(&W8H)),
            _ => a.movsxd(d64, s32),
        },
        2 => match r.below(5) {
            0 => a.movzx(d32, byte_ptr(r15 + off)),
            1 => a.movzx(d64, word_ptr(r15 + off)),
            2 => a.movsx(d64, byte_ptr(r15 + off)),
            3 => a.movsx(d32, word_ptr(r15 + off)),
            _ => a.movsxd(d64, dword_ptr(r15 + off)),
        },
        3 | 4 => {
            // Counts 0, 1, around the width and beyond (masked).
            let n = match r.below(5) {
                0 => r.below(3) as u32,
                1 => 1,
                2 => 31 + r.below(3) as u32,
                3 => 63 + r.below(3) as u32,
                _ => r.below(256) as u32,
            };
            let res = match (r.below(8), r.below(2)) {
                (0, 0) => a.shl(d32, n),
                (0, _) => a.shl(d64, n),
                (1, 0) => a.shr(d32, n),
                (1, _) => a.shr(d64, n),
                (2, 0) => a.sar(d32, n),
                (2, _) => a.sar(d64, n),
                (3, 0) => a.rol(d32, n),
                (3, _) => a.rol(d64, n),
                (4, 0) => a.ror(d32, n),
                (4, _) => a.ror(d64, n),
                // By CL (masked at run time, zero included).
                (5, 0) => a.shl(d32, cl),
                (5, _) => a.shr(d64, cl),
                (6, 0) => a.sar(d32, cl),
                (6, _) => a.shl(d64, cl),
                // A count of 0 modulo the width, often.
                (_, 0) => a
                    .mov(ecx, r.pick(&[0u32, 32, 64, n]))
                    .and_then(|_| a.shr(d32, cl)),
                _ => a
                    .mov(ecx, r.pick(&[0u32, 64, 128, n]))
                    .and_then(|_| a.sar(d64, cl)),
            };
            res.and_then(|_| match r.below(3) {
                0 => flag_reader(a, r),
                1 => a.pushfq().and_then(|_| a.pop(r.pick(&W64))),
                _ => Ok(()),
            })
        }
        5 => setcc(a, r.below(16), r.pick(&W8)),
        6 => setcc(a, r.below(16), r.pick(&W8H)),
        7 => {
            if r.below(2) == 0 {
                cmov!(a, r.below(16), d64, s64)
            } else {
                cmov!(a, r.below(16), d32, s32)
            }
        }
        8 => {
            // A balanced push/pop, possibly with PUSH RSP / a flag op inside.
            let s = if r.below(8) == 0 { rsp } else { s64 };
            a.push(s)
                .and_then(|_| match r.below(3) {
                    0 => a.add(d64, s64),
                    1 => a.mov(d64, qword_ptr(rsp)),
                    _ => a.nop(),
                })
                .and_then(|_| a.pop(r.pick(&W64)))
        }
        9 => {
            // CALL a subroutine that returns (RET, or RET imm16 after a push).
            let mut sub = a.create_label();
            let mut after = a.create_label();
            let imm16 = r.below(2) == 0;
            if imm16 {
                a.push(s64)?;
            }
            a.call(sub)?;
            a.jmp(after)?;
            a.set_label(&mut sub)?;
            alu_op!(a, k, false, d64, s64)?;
            if imm16 {
                a.ret_1(8)?;
            } else {
                a.ret()?;
            }
            a.set_label(&mut after)?;
            a.nop()
        }
        10 => match r.below(4) {
            0 => alu_op!(a, k, false, d64, qword_ptr(r15 + off)),
            1 => alu_op!(a, k, false, d32, dword_ptr(r15 + off)),
            2 => alu_op!(a, k, false, r.pick(&W16), word_ptr(r15 + off)),
            // No REX with AH..BH: an absolute address.
            _ => alu_op!(a, k, false, r.pick(&W8H), byte_ptr(DATA + off as u64)),
        },
        11 => match r.below(4) {
            0 => alu_op!(a, k, true, qword_ptr(r15 + off), s64),
            1 => alu_op!(a, k, true, dword_ptr(r15 + off), s32),
            2 => alu_op!(a, k, true, word_ptr(r15 + off), r.pick(&R16)),
            _ => alu_op!(a, k, true, byte_ptr(r15 + off), r.pick(&W8)),
        },
        12 => match r.below(5) {
            0 => alu_op!(a, k, true, qword_ptr(r15 + off), imm as i32),
            1 => alu_op!(a, k, true, qword_ptr(r15 + off), (imm as i8) as i32),
            2 => alu_op!(a, k, true, dword_ptr(r15 + off), imm as i32),
            3 => alu_op!(a, k, true, word_ptr(r15 + off), imm as u16 as i32),
            _ => alu_op!(a, k, true, byte_ptr(r15 + off), imm as u8 as i32),
        },
        13 => match r.below(6) {
            0 => alu_op!(a, k, true, r.pick(&W8), r.pick(&W8)),
            1 => alu_op!(a, k, true, r.pick(&W8H), r.pick(&W8H)),
            2 => alu_op!(a, k, true, r.pick(&W8H), imm as u8 as i32),
            3 => alu_op!(a, k, true, r.pick(&W16), r.pick(&R16)),
            4 => alu_op!(a, k, true, r.pick(&W16), imm as u16 as i32),
            _ => alu_op!(a, k, true, r.pick(&W16), (imm as i8) as i32),
        },
        14 => match r.below(8) {
            0 => a.mov(byte_ptr(r15 + off), r.pick(&W8)),
            1 => a.mov(byte_ptr(DATA + off as u64), r.pick(&W8H)),
            2 => a.mov(r.pick(&W8H), byte_ptr(DATA + off as u64)),
            3 => a.mov(word_ptr(r15 + off), r.pick(&R16)),
            4 => a.mov(r.pick(&W16), word_ptr(r15 + off)),
            5 => a.mov(byte_ptr(r15 + off), imm as u8 as i32),
            6 => a.mov(word_ptr(r15 + off), imm as u16 as i32),
            _ => a.mov(dword_ptr(r15 + off), imm as u32),
        },
        15 => match r.below(3) {
            0 => a.mov(qword_ptr(r15 + off), imm as i32),
            1 => a.mov(d32, dword_ptr(r15 + off)),
            _ => a.mov(qword_ptr(r15 + off), s64),
        },
        // RIP-relative reads (of the code), FS/GS-relative accesses.
        16 => match r.below(3) {
            0 => a.mov(d64, qword_ptr(start)),
            1 => alu_op!(a, k, false, d32, dword_ptr(start)),
            _ => a.movzx(d32, byte_ptr(start)),
        },
        17 => match r.below(4) {
            0 => a.mov(d64, qword_ptr(r15 + off - FS_BASE as i32).fs()),
            1 => a.mov(qword_ptr(r15 + off - GS_BASE as i32).gs(), s64),
            2 => alu_op!(a, k, true, dword_ptr(r15 + off - GS_BASE as i32).gs(), s32),
            _ => alu_op!(a, k, false, d64, qword_ptr(r15 + off - FS_BASE as i32).fs()),
        },
        // An index register, scaled.
        18 => a.and(ecx, 0x3f8).and_then(|_| match r.below(3) {
            0 => alu_op!(a, k, false, d32, dword_ptr(r15 + rcx * 2 + (off & 0xff))),
            1 => alu_op!(a, k, true, qword_ptr(r15 + rcx * 4 + (off & 0xff)), s64),
            _ => a.movsx(d64, word_ptr(r15 + rcx + off)),
        }),
        19 => match r.below(3) {
            0 => a.nop_1(qword_ptr(rax + rax * 2 + 0x10)),
            1 => a.pause(),
            _ => a.endbr64(),
        },
        20 | 21 => {
            // IMUL after a flag-setting op of some kind (its record known
            // to the translator or not), flags read after.
            let res = match r.below(4) {
                0 => a.imul_2(d32, s32),
                1 => a.imul_2(d64, s64),
                2 => a.imul_3(d32, s32, imm as i32),
                _ => a.imul_3(d64, s64, (imm as i8) as i32),
            };
            res.and_then(|_| match r.below(2) {
                0 => a.pushfq().and_then(|_| a.pop(r.pick(&W64))),
                _ => flag_reader(a, r),
            })
        }
        // 8/16-bit shifts by an immediate (counts past the width too),
        // flags read after.
        25 | 26 if r.below(2) == 0 => {
            let n = r.pick(&[1u32, 2, 5, 7, 8, 9, 15, 16, 17, 31]);
            let res = match r.below(6) {
                0 => a.shl(r.pick(&W8H), n),
                1 => a.shr(r.pick(&W8), n),
                2 => a.sar(r.pick(&W8H), n),
                3 => a.shl(r.pick(&W16), n),
                4 => a.shr(r.pick(&W16), n),
                _ => a.sar(r.pick(&W16), n),
            };
            res.and_then(|_| flag_reader(a, r))
        }
        // NOT/NEG of every size; ADC/SBB chains (one's carry out the next
        // one's carry in) of every size and source; flags read after.
        22..=24 => {
            let res = match r.below(9) {
                0 => a.not(d64),
                1 => a.not(r.pick(&W8H)),
                2 => a.neg(r.pick(&W16)),
                3 => a.neg(d64).and_then(|_| a.neg(r.pick(&W8))),
                4 => a.adc(d32, imm as i32).and_then(|_| a.adc(d64, s64)),
                5 => a.sbb(r.pick(&W8H), imm as u8 as i32),
                6 => a.sbb(d64, (imm as i8) as i32).and_then(|_| a.sbb(d32, s32)),
                7 => a
                    .add(d64, s64)
                    .and_then(|_| a.adc(r.pick(&W16), r.pick(&R16))),
                _ => a
                    .not(d32)
                    .and_then(|_| a.sbb(r.pick(&W16), imm as u16 as i32)),
            };
            res.and_then(|_| flag_reader(a, r))
        }
        _ => flag_reader(a, r),
    }
}

/// One random instruction (64-bit mode). `skip` labels are forward targets.
fn gen64(a: &mut CodeAssembler, r: &mut Rng, fwd: &mut Vec<(CodeLabel, u32)>, start: CodeLabel) {
    if r.below(2) == 0 {
        gen64_more(a, r, start).expect("assemble");
        return;
    }
    let d64 = r.pick(&W64);
    let d32 = r.pick(&W32);
    let s64 = r.pick(&R64);
    let s32 = r.pick(&R32);
    let imm = r.imm();
    let i32v = imm as i32;
    let res = match r.below(40) {
        0 => a.mov(d64, s64),
        1 => a.mov(d32, s32),
        2 => a.mov(d32, imm as u32),
        3 => a.mov(d64, imm),
        4 => a.mov(d64, i32v as i64),
        5 => a.add(d64, s64),
        6 => a.add(d32, i32v),
        7 => a.sub(d32, s32),
        8 => a.sub(d64, i32v),
        9 => a.and(d64, s64),
        10 => a.or(d32, i32v),
        11 => a.xor(d32, s32),
        12 => a.xor(d64, i32v),
        13 => a.cmp(d64, s64),
        14 => a.cmp(d32, i32v),
        15 => a.test(d32, s32),
        16 => a.test(d64, i32v),
        17 => a.inc(d32),
        18 => a.dec(d64),
        19 => a.inc(d64),
        20 => a.lea(
            d64,
            qword_ptr(s64 + r.pick(&X64) * r.pick(&[1, 2, 4, 8]) + i32v),
        ),
        21 if r.below(3) == 0 => a.lea(d64, qword_ptr(start)), // RIP-relative
        21 if r.below(2) == 0 => a.lea(d32, dword_ptr(start)),
        21 => a.lea(d32, dword_ptr(s64 + i32v)),
        22 => a.lea(d32, dword_ptr(s32 + r.pick(&X32) * 4 + i32v)),
        23 => a.adc(d64, s64),
        24 => a.sbb(d32, i32v),
        25 => a.setb(al).and_then(|_| a.sete(cl)),
        26 => a.cmovl(d32, s32),
        27 => a.pushfq().and_then(|_| a.pop(d64)),
        28 => a.shl(d64, (imm & 63) as u32),
        29 => a.mov(qword_ptr(r15 + (r.below(500) * 8) as i32), s64),
        30 => a.mov(d32, dword_ptr(r15 + (r.below(1000) * 4) as i32)),
        31 => a.add(d64, qword_ptr(r15 + (r.below(500) * 8) as i32)),
        32..=34 => {
            // A forward conditional branch over the next few instructions.
            let l = a.create_label();
            let cc = r.below(16);
            let res = match cc {
                0 => a.jo(l),
                1 => a.jno(l),
                2 => a.jb(l),
                3 => a.jae(l),
                4 => a.je(l),
                5 => a.jne(l),
                6 => a.jbe(l),
                7 => a.ja(l),
                8 => a.js(l),
                9 => a.jns(l),
                10 => a.jp(l),
                11 => a.jnp(l),
                12 => a.jl(l),
                13 => a.jge(l),
                14 => a.jle(l),
                _ => a.jg(l),
            };
            fwd.push((l, 1 + r.below(4) as u32));
            res
        }
        35 => {
            let l = a.create_label();
            fwd.push((l, 1 + r.below(3) as u32));
            a.jmp(l)
        }
        36 if r.below(2) == 0 => a.neg(d32),
        36 => match r.below(4) {
            // Across the data page's end (the inline path must decline).
            0 => a.mov(qword_ptr(r15 + 4092), s64),
            1 => a.mov(d32, dword_ptr(r15 + 4094)),
            // SS-relative, and with an index register.
            2 => a.mov(d64, qword_ptr(rsp - (r.below(64) * 8) as i32)),
            _ => a
                .and(ecx, 0x3f8)
                .and_then(|_| a.mov(dword_ptr(r15 + rcx * 2 + (r.below(64) * 4) as i32), s32)),
        },
        37 => a.imul_2(d32, s32),
        38 if r.below(8) == 0 => a.div(s32), // may raise #DE
        39 => {
            let m = (r.below(500) * 8) as i32;
            match r.below(8) {
                // CMOVcc from memory, read whatever the condition.
                0 => a
                    .cmp(d64, s64)
                    .and_then(|_| a.cmovb(d64, qword_ptr(r15 + m))),
                1 => a.cmovne(d32, dword_ptr(r15 + m)),
                2 => a.cmovg(d32, dword_ptr(r15 + 4094)), // across the page's end
                // INC/DEC of memory (CF kept: read by the ADC after it).
                3 => a.inc(dword_ptr(r15 + m)).and_then(|_| a.adc(d64, s64)),
                4 => a.sub(d32, s32).and_then(|_| a.dec(qword_ptr(r15 + m))),
                5 => a.dec(dword_ptr(r15 + 4094)).and_then(|_| a.sbb(d32, s32)),
                // MOV between 8/16-bit registers and from immediates.
                6 => a
                    .mov(r.pick(&W8), r.pick(&W8))
                    .and_then(|_| a.mov(r.pick(&W8H), imm as u8 as u32)),
                _ => a
                    .mov(r.pick(&W16), r.pick(&W16))
                    .and_then(|_| a.mov(r.pick(&W16), imm as u16 as u32)),
            }
        }
        _ => a.nop(),
    };
    res.expect("assemble");
}

/// A program: R15 = DATA, a loop of `iters` over a random body, HLT.
fn program64(r: &mut Rng, len: usize, iters: u32) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).expect("assembler");
    let mut start = a.create_label();
    a.set_label(&mut start).unwrap();
    a.mov(r15, DATA).unwrap();
    a.mov(r14d, iters).unwrap();
    let mut top = a.create_label();
    a.set_label(&mut top).unwrap();
    let mut fwd: Vec<(CodeLabel, u32)> = Vec::new();
    for _ in 0..len {
        gen64(&mut a, r, &mut fwd, start);
        // Bind the forward labels whose distance has run out.
        let mut i = 0;
        while i < fwd.len() {
            fwd[i].1 -= 1;
            if fwd[i].1 == 0 {
                let (mut l, _) = fwd.remove(i);
                a.set_label(&mut l).unwrap();
                a.nop().unwrap();
            } else {
                i += 1;
            }
        }
    }
    for (mut l, _) in fwd.drain(..) {
        a.set_label(&mut l).unwrap();
        a.nop().unwrap();
    }
    a.dec(r14d).unwrap();
    a.jne(top).unwrap();
    a.hlt().unwrap();
    a.assemble(CODE).expect("assemble")
}

fn random_state(r: &mut Rng) -> ([u64; 16], u64) {
    let mut g = [0u64; 16];
    for v in g.iter_mut() {
        *v = r.imm();
    }
    // Arithmetic flags and DF random, IF clear (no irqchip anyway).
    let fl = r.next() & 0x8d5;
    (g, fl)
}

fn compare_tiers(
    seed: u64,
    cases: usize,
    len: usize,
    iters: u32,
    tier: Tier,
    t: Templates,
) -> super::Stats {
    let mut r = Rng(seed | 1);
    let mut total = super::Stats::default();
    for case in 0..cases {
        let code = program64(&mut r, len, iters);
        let (init, fl) = random_state(&mut r);
        let (want, _) = run(&code, 64, &init, fl, Tier::Interp, t);
        let (got, st) = run(&code, 64, &init, fl, tier, t);
        assert_eq!(
            got, want,
            "case {case} (seed {seed:#x}): {tier:?} differs from the interpreter; code {code:02x?}"
        );
        total.translated += st.translated;
        total.native_insns += st.native_insns;
        total.call_insns += st.call_insns;
        total.runs += st.runs;
    }
    total
}

#[test]
fn every_block_translated_matches_the_interpreter() {
    let st = compare_tiers(0x5eed_0001, 600, 24, 3, Tier::All, Templates::ALL);
    // The test is only worth something if generated code ran, and ran
    // native templates as well as handler calls.
    assert!(st.translated > 300 && st.runs > 600, "{st:?}");
    assert!(st.native_insns > st.call_insns / 4, "{st:?}");
    assert!(st.call_insns > 0, "{st:?}");
}

#[test]
fn hot_blocks_translated_match_the_interpreter() {
    // 40 iterations: blocks turn hot after HOT runs, mid-loop.
    let st = compare_tiers(0x5eed_0002, 60, 16, 40, Tier::Auto, Templates::ALL);
    assert!(st.translated > 0 && st.runs > 0, "{st:?}");
}

/// Each template group alone, so a divergence names its group.
#[test]
fn each_template_group_matches_the_interpreter() {
    let groups = [
        Templates {
            mov: true,
            ..Templates::NONE
        },
        Templates {
            alu: true,
            ..Templates::NONE
        },
        Templates {
            incdec: true,
            ..Templates::NONE
        },
        Templates {
            lea: true,
            ..Templates::NONE
        },
        Templates {
            branch: true,
            ..Templates::NONE
        },
        Templates {
            mem: true,
            ..Templates::NONE
        },
        Templates {
            nop: true,
            ..Templates::NONE
        },
        Templates {
            extend: true,
            ..Templates::NONE
        },
        Templates {
            shift: true,
            ..Templates::NONE
        },
        Templates {
            cond: true,
            ..Templates::NONE
        },
        Templates {
            // SETcc/CMOVcc/Jcc after native ALU ops (host flags known).
            cond: true,
            alu: true,
            branch: true,
            ..Templates::NONE
        },
        Templates {
            stack: true,
            ..Templates::NONE
        },
        Templates {
            mem_alu: true,
            ..Templates::NONE
        },
        Templates {
            small_alu: true,
            ..Templates::NONE
        },
        Templates {
            imul: true,
            ..Templates::NONE
        },
        Templates {
            // IMUL after native ALU ops (the record known: materialized
            // from the host's flags).
            imul: true,
            alu: true,
            ..Templates::NONE
        },
        Templates {
            unary: true,
            ..Templates::NONE
        },
        Templates {
            carry: true,
            ..Templates::NONE
        },
        Templates {
            // ADC/SBB after native ALU ops (the carry from the host) and
            // Jcc/SETcc after them (their flags in the host).
            carry: true,
            unary: true,
            alu: true,
            cond: true,
            branch: true,
            ..Templates::NONE
        },
    ];
    for (i, t) in groups.into_iter().enumerate() {
        // With the mirrors (reads of guest registers from host registers)
        // on every other time: each group's reads and writes with and
        // without them.
        let t = Templates {
            mirrors: i % 2 == 0,
            ..t
        };
        let st = compare_tiers(0x5eed_0100 + i as u64, 150, 20, 2, Tier::All, t);
        // Each group alone is worth testing only if it emitted something.
        assert!(
            st.native_insns > 0,
            "group {i} ({t:?}) emitted nothing: {st:?}"
        );
    }
    compare_tiers(0x5eed_01ff, 80, 20, 2, Tier::All, Templates::NONE);
    let no_mirrors = Templates {
        mirrors: false,
        ..Templates::ALL
    };
    compare_tiers(0x5eed_01fe, 150, 20, 2, Tier::All, no_mirrors);
}

/// The comparison sees a difference: one register changed by one bit after
/// an otherwise identical run.
#[test]
fn the_comparison_detects_a_difference() {
    let mut r = Rng(7);
    let code = program64(&mut r, 10, 1);
    let (init, fl) = random_state(&mut r);
    let (a, _) = run(&code, 64, &init, fl, Tier::All, Templates::ALL);
    let (mut b, _) = run(&code, 64, &init, fl, Tier::Interp, Templates::ALL);
    assert_eq!(a, b);
    b.gpr[3] ^= 1;
    assert_ne!(a, b);
}

/// 32-bit protected mode: templates on 32-bit code, and a taken branch past
/// the CS limit raises #GP from generated code exactly as the interpreter
/// does (here: no IDT, so the same shutdown at the same RIP).
#[test]
fn protected_mode_blocks_and_the_cs_limit() {
    let mut a = CodeAssembler::new(32).expect("assembler");
    let mut top = a.create_label();
    let mut far = a.create_label();
    a.mov(ecx, 50u32).unwrap();
    a.set_label(&mut top).unwrap();
    a.add(eax, ecx).unwrap();
    a.lea(edx, dword_ptr(eax + ecx * 2 + 5)).unwrap();
    a.xor(ebx, edx).unwrap();
    a.dec(ecx).unwrap();
    a.jne(top).unwrap();
    a.cmp(eax, 0x100).unwrap();
    a.ja(far).unwrap();
    a.hlt().unwrap();
    for _ in 0..64 {
        a.nop().unwrap();
    }
    a.set_label(&mut far).unwrap();
    a.hlt().unwrap();
    let code = a.assemble(CODE).expect("assemble");
    let far_addr = CODE + code.len() as u64 - 1;
    for limit in [0xffff_ffffu32, (far_addr - 1) as u32] {
        let mut outs = Vec::new();
        for tier in [Tier::Interp, Tier::All, Tier::Auto] {
            let mut c = TestCpu::new(32);
            c.write(CODE, &code);
            c.cpu.seg[crate::cpu::Seg::Cs as usize].limit = limit;
            c.cpu.refresh_seg_cache();
            c.cpu.rip = CODE;
            c.cpu.set_tier(tier);
            let mut blocks = BlockCache::new();
            let stop = c.cpu.run(&mut blocks);
            outs.push((
                stop,
                c.cpu.rip,
                c.cpu.gpr,
                c.cpu.flags.rflags(),
                blocks.jit.stats.translated > 0,
            ));
        }
        for o in &outs[1..] {
            assert_eq!(
                (o.0, o.1, o.2, o.3),
                (outs[0].0, outs[0].1, outs[0].2, outs[0].3),
                "limit {limit:#x}"
            );
            assert!(o.4, "a block was translated");
        }
        if limit != 0xffff_ffff {
            assert_eq!(outs[0].0, Stop::Shutdown, "the jump past the limit faults");
        }
    }
}

/// The forms the templates claim are translated natively (one native
/// instruction, no handler call), and their near relatives that must not
/// be (they would need what the templates do not do).
#[test]
fn the_templated_forms_are_native() {
    use super::translate::translate;
    use crate::cpu::block_cache::Decoded;
    let native = |bits: u32, f: &dyn Fn(&mut CodeAssembler) -> Result<(), IcedError>| {
        let mut a = CodeAssembler::new(bits).unwrap();
        f(&mut a).unwrap();
        let code = a.assemble(CODE).unwrap();
        let mut dec = iced_x86::Decoder::with_ip(bits, &code, CODE, iced_x86::DecoderOptions::NONE);
        let ins = dec.decode();
        let d = [Decoded {
            ins,
            handler: crate::cpu::exec::handler_for(&ins),
        }];
        let counts = translate(
            &d,
            CODE,
            bits,
            0,
            Templates::ALL,
            &mut super::chain::Slots::default(),
        )
        .unwrap()
        .counts;
        (counts.native, counts.calls)
    };
    type F = fn(&mut CodeAssembler) -> Result<(), IcedError>;
    let yes: &[(&str, F)] = &[
        ("nop", |a| a.nop()),
        ("nop m", |a| a.nop_1(dword_ptr(rax + rax + 8))),
        ("pause", |a| a.pause()),
        ("endbr64", |a| a.endbr64()),
        ("prefetch", |a| a.prefetcht0(byte_ptr(rdi))),
        ("movzx r32,r8", |a| a.movzx(eax, bh)),
        ("movzx r64,r16", |a| a.movzx(r9, r10w)),
        ("movsx r32,r8", |a| a.movsx(ecx, sil)),
        ("movsxd", |a| a.movsxd(rdx, r11d)),
        ("movzx r,m8", |a| a.movzx(eax, byte_ptr(rdi + 3))),
        ("movsx r,m16", |a| a.movsx(rax, word_ptr(rsp + rcx * 2))),
        ("movsxd r,m32", |a| a.movsxd(rax, dword_ptr(rdx))),
        ("movzx r,m8 rip", |a| {
            with_label(a, |a, l| a.movzx(eax, byte_ptr(l)))
        }),
        ("lea r64 rip", |a| {
            with_label(a, |a, l| a.lea(rax, qword_ptr(l)))
        }),
        ("lea r32 rip", |a| {
            with_label(a, |a, l| a.lea(r9d, dword_ptr(l)))
        }),
        ("shl r32,imm", |a| a.shl(eax, 3u32)),
        ("shl r32,1", |a| a.shl(eax, 1u32)),
        ("shr r64,imm", |a| a.shr(r12, 63u32)),
        ("sar r64,imm", |a| a.sar(rbx, 7u32)),
        ("sal r32,imm", |a| a.sal(ebx, 0u32)),
        ("shl by cl", |a| a.shl(eax, cl)),
        ("sar r64 by cl", |a| a.sar(r9, cl)),
        ("rol r32,imm", |a| a.rol(eax, 3u32)),
        ("ror r64,1", |a| a.ror(r11, 1u32)),
        ("setcc r8", |a| a.setne(ah)),
        ("setcc r8 rex", |a| a.setl(r10b)),
        ("cmov r64", |a| a.cmova(rax, r8)),
        ("cmov r32", |a| a.cmovs(ecx, edx)),
        ("imul r32,r32", |a| a.imul_2(ecx, edx)),
        ("imul r64,r64,imm", |a| a.imul_3(r8, rax, -7)),
        ("push", |a| a.push(rbp)),
        ("pop", |a| a.pop(r13)),
        ("add r8,r8", |a| a.add(al, ah)),
        ("cmp r16,imm", |a| a.cmp(r9w, 0x1234)),
        ("test r8,imm", |a| a.test(dil, 1)),
        ("add r,m", |a| a.add(rax, qword_ptr(rbx + 8))),
        ("cmp r8,m", |a| a.cmp(cl, byte_ptr(rdx))),
        ("sub m,r", |a| a.sub(dword_ptr(rsp + 4), esi)),
        ("and m16,imm", |a| a.and(word_ptr(rax), 0xff0)),
        ("cmp m64,imm8", |a| a.cmp(qword_ptr(rdi + 0x40), -1)),
        ("test m8,imm", |a| a.test(byte_ptr(rsi + 1), 0x80)),
        ("or m,r gs", |a| a.or(qword_ptr(rax + 0x10).gs(), rcx)),
        ("mov r,m rip", |a| {
            with_label(a, |a, l| a.mov(rax, qword_ptr(l)))
        }),
        ("cmp m,imm rip", |a| {
            with_label(a, |a, l| a.cmp(dword_ptr(l), 5))
        }),
        ("mov r,m abs", |a| a.mov(rax, qword_ptr(DATA))),
        ("mov r,m gs", |a| a.mov(rax, qword_ptr(0x28).gs())),
        ("mov m8,r8", |a| a.mov(byte_ptr(rdi), dh)),
        ("mov r16,m", |a| a.mov(r8w, word_ptr(rsi + rdi))),
        ("mov m,imm32", |a| a.mov(qword_ptr(rdi), -5)),
        ("mov m8,imm", |a| a.mov(byte_ptr(rdi), 7)),
        ("cmov r,m", |a| a.cmove(eax, dword_ptr(rdi))),
        ("cmov r64,m", |a| {
            a.cmovb(rax, qword_ptr(rsp + rdx * 8 + 16))
        }),
        ("inc m32", |a| a.inc(dword_ptr(rdi + 4))),
        ("dec m64", |a| a.dec(qword_ptr(rax))),
        ("mov r8,r8", |a| a.mov(sil, r9b)),
        ("mov ah,bh", |a| a.mov(ah, bh)),
        ("mov r8,imm", |a| a.mov(ch, 0x80u32)),
        ("mov r16,r16", |a| a.mov(r10w, ax)),
        ("mov r16,imm", |a| a.mov(dx, 0xfffeu32)),
    ];
    for (name, f) in yes {
        assert_eq!(native(64, f), (1, 0), "{name}");
    }
    let no: &[(&str, F)] = &[
        ("shl r8 by cl", |a| a.shl(al, cl)),
        ("rol by cl", |a| a.rol(eax, cl)),
        ("rcl", |a| a.rcl(eax, 1u32)),
        ("inc m8", |a| a.inc(byte_ptr(rdi))),
        ("dec m16", |a| a.dec(word_ptr(rdi))),
        ("lock inc", |a| a.lock().inc(dword_ptr(rdi))),
        ("cmov r16,m", |a| a.cmove(ax, word_ptr(rdi))),
        ("setcc m", |a| a.sete(byte_ptr(rdi))),
        ("push imm", |a| a.push(5)),
        ("push m", |a| a.push(qword_ptr(rdi))),
        ("lock add", |a| a.lock().add(dword_ptr(rdi), eax)),
        ("adc m,r", |a| a.adc(dword_ptr(rdi), eax)),
        ("addr32", |a| a.mov(eax, dword_ptr(edi))),
        ("call r", |a| a.call(rax)),
        ("imul r,m", |a| a.imul_2(eax, dword_ptr(rdi))),
        ("imul r16", |a| a.imul_2(ax, cx)),
        ("imul one operand", |a| a.imul(rcx)),
    ];
    for (name, f) in no {
        assert_eq!(native(64, f).0, 0, "{name}");
    }
    // The RIP-relative and absolute forms are what the names say.
    let first = |f: F| {
        let mut a = CodeAssembler::new(64).unwrap();
        f(&mut a).unwrap();
        let code = a.assemble(CODE).unwrap();
        iced_x86::Decoder::with_ip(64, &code, CODE, iced_x86::DecoderOptions::NONE).decode()
    };
    let ins = first(|a| with_label(a, |a, l| a.mov(rax, qword_ptr(l))));
    assert_eq!(ins.memory_base(), iced_x86::Register::RIP);
    let ins = first(|a| a.mov(ah, byte_ptr(DATA + 5)));
    assert_eq!(ins.memory_displacement64(), DATA + 5);
    // ADC/SBB on registers, NOT/NEG (any size); not with memory.
    assert_eq!(native(64, &|a| a.adc(rax, rcx)), (1, 0));
    assert_eq!(native(64, &|a| a.sbb(r9w, 0x1234)), (1, 0));
    assert_eq!(native(64, &|a| a.adc(ah, 1)), (1, 0));
    assert_eq!(native(64, &|a| a.not(r12b)), (1, 0));
    assert_eq!(native(64, &|a| a.neg(r8)), (1, 0));
    assert_eq!(native(64, &|a| a.adc(rax, qword_ptr(rbx))).0, 0);
    assert_eq!(native(64, &|a| a.neg(dword_ptr(rbx))).0, 0);
    // 8/16-bit shifts by an immediate below the width.
    assert_eq!(native(64, &|a| a.shr(bx, 5u32)), (1, 0));
    assert_eq!(native(64, &|a| a.shl(ah, 3u32)), (1, 0));
    assert_eq!(native(64, &|a| a.sar(sil, 7u32)), (1, 0));
    assert_eq!(native(64, &|a| a.shr(cx, 16u32)).0, 0);
    // 32-bit code: register, memory (32-bit addresses) and stack forms.
    assert_eq!(native(32, &|a| a.shr(eax, 2u32)), (1, 0));
    assert_eq!(native(32, &|a| a.movzx(eax, cl)), (1, 0));
    assert_eq!(native(32, &|a| a.push(eax)), (1, 0));
    assert_eq!(native(32, &|a| a.pop(ebp)), (1, 0));
    assert_eq!(native(32, &|a| a.ret_1(4)), (1, 0));
    assert_eq!(native(32, &|a| a.add(eax, dword_ptr(ebx))), (1, 0));
    assert_eq!(
        native(32, &|a| a.mov(dword_ptr(esi + edi * 8 - 4), 7u32)),
        (1, 0)
    );
    assert_eq!(native(32, &|a| a.movsx(ecx, byte_ptr(0x1234))), (1, 0));
    assert_eq!(
        native(32, &|a| a.cmp(byte_ptr(ecx * 2 + 9).fs(), 1)),
        (1, 0)
    );
    // ... but not 16-bit addresses, 16-bit stack forms or 16-bit code.
    assert_eq!(native(32, &|a| a.mov(eax, dword_ptr(bx + si))).0, 0);
    assert_eq!(native(32, &|a| a.push(ax)).0, 0);
    assert_eq!(native(16, &|a| a.mov(eax, dword_ptr(ebx))).0, 0);
    assert_eq!(native(16, &|a| a.push(eax)).0, 0);
}

/// `f` with a label bound just after what it emits (a RIP-relative
/// operand's target).
fn with_label(
    a: &mut CodeAssembler,
    f: impl FnOnce(&mut CodeAssembler, CodeLabel) -> Result<(), IcedError>,
) -> Result<(), IcedError> {
    let mut l = a.create_label();
    f(a, l)?;
    a.set_label(&mut l)?;
    a.nop()
}

/// The memory and stack templates' slow paths: non-canonical stack and
/// return addresses (#SS, #GP), a page crossing, an unmapped page (#PF),
/// MMIO (an exit): the same stop, registers (RSP not committed by a
/// faulting PUSH/POP/CALL/RET) and memory as the interpreter, with the
/// fault raised from generated code.
#[test]
fn memory_and_stack_faults_match_the_interpreter() {
    const NONCANON: u64 = 0x8000_0000_0000_0010;
    const UNMAPPED: u64 = 0x4000_0010; // past the identity map (1 GiB)
    const MMIO: u64 = 0x1000_0000; // mapped, not RAM
    type F = fn(&mut CodeAssembler) -> Result<(), IcedError>;
    let progs: &[(&str, F)] = &[
        ("push noncanonical", |a| {
            a.mov(rsp, NONCANON)?;
            a.push(rax)
        }),
        ("pop noncanonical", |a| {
            a.mov(rsp, NONCANON)?;
            a.pop(rax)
        }),
        ("call noncanonical", |a| {
            let mut l = a.create_label();
            a.mov(rsp, NONCANON)?;
            a.call(l)?;
            a.set_label(&mut l)?;
            a.nop()
        }),
        ("ret noncanonical target", |a| {
            a.mov(rax, NONCANON)?;
            a.push(rax)?;
            a.ret()
        }),
        ("ret imm noncanonical target", |a| {
            a.mov(rax, NONCANON)?;
            a.push(rax)?;
            a.ret_1(16)
        }),
        ("push unmapped", |a| {
            a.mov(rsp, UNMAPPED)?;
            a.push(rbx)
        }),
        ("push across a page", |a| {
            a.mov(rsp, STACK_BASE + 0x1004)?;
            a.push(rbx)?;
            a.pop(rcx)?;
            a.add(rcx, 1)?;
            a.push(rcx)?;
            a.pop(rdx)
        }),
        ("ret across a page", |a| {
            let mut l = a.create_label();
            a.mov(rsp, STACK_BASE + 0x1004)?;
            a.call(l)?;
            a.hlt()?;
            a.set_label(&mut l)?;
            a.ret()
        }),
        ("pop rsp, push rsp", |a| {
            a.mov(rax, STACK_BASE + 0x900)?;
            a.push(rax)?;
            a.pop(rsp)?;
            a.push(rsp)?;
            a.pop(rcx)?;
            a.push(rbx)?;
            a.pop(rdx)
        }),
        ("read, then read-modify-write (the dirty bit)", |a| {
            a.mov(eax, dword_ptr(r15 + 0x10))?;
            a.add(dword_ptr(r15 + 0x10), eax)
        }),
        ("alu m unmapped", |a| {
            a.mov(rdi, UNMAPPED)?;
            a.add(dword_ptr(rdi + 4), eax)
        }),
        ("alu m noncanonical", |a| {
            a.mov(rdi, NONCANON)?;
            a.cmp(qword_ptr(rdi), 3)
        }),
        ("alu r,m mmio", |a| {
            a.mov(rdi, MMIO)?;
            a.sub(ecx, dword_ptr(rdi))
        }),
        ("alu m,r mmio", |a| {
            a.mov(rdi, MMIO)?;
            a.xor(qword_ptr(rdi + 8), rcx)
        }),
        ("mov m8 mmio", |a| {
            a.mov(rdi, MMIO)?;
            a.mov(byte_ptr(rdi), cl)
        }),
        ("movzx mmio", |a| {
            a.mov(rdi, MMIO)?;
            a.movzx(eax, word_ptr(rdi))
        }),
        ("mov gs noncanonical", |a| {
            a.mov(rdi, NONCANON - GS_BASE)?;
            a.mov(rax, qword_ptr(rdi).gs())
        }),
        ("alu across a page", |a| {
            a.mov(rdi, DATA + 0xffd)?;
            a.add(qword_ptr(rdi), rdi)?;
            a.sete(al)?;
            a.cmp(dword_ptr(rdi), 7)?;
            a.setb(cl)?;
            a.movsx(rdx, word_ptr(rdi + 2))
        }),
        // Flags written before a fault or exit and overwritten after it
        // (dead but for the fault): the stop must find them.
        ("flags before a store to unmapped memory", |a| {
            a.add(rax, rbx)?;
            a.mov(rdi, UNMAPPED)?;
            a.mov(qword_ptr(rdi), rcx)?;
            a.sub(rax, rcx)
        }),
        ("flags before a push to a noncanonical stack", |a| {
            a.cmp(eax, ebx)?;
            a.mov(rsp, NONCANON)?;
            a.push(rax)?;
            a.xor(eax, eax)
        }),
        ("flags before a load from mmio", |a| {
            a.imul_2(rax, rbx)?;
            a.shl(rcx, 3)?;
            a.mov(rdi, MMIO)?;
            a.mov(edx, dword_ptr(rdi))?;
            a.add(rax, 1)
        }),
        ("flags of an inc before an alu m unmapped", |a| {
            a.sub(rax, rbx)?;
            a.inc(ecx)?;
            a.mov(rdi, UNMAPPED)?;
            a.or(dword_ptr(rdi), 1)?;
            a.and(ecx, edx)
        }),
        // An ADC's record (cin 1 or 0) before an INC of memory that
        // faults: the INC's record must not be half written.
        ("flags of an adc before an inc m unmapped", |a| {
            a.adc(rax, rbx)?;
            a.mov(rdi, UNMAPPED)?;
            a.inc(dword_ptr(rdi))?;
            a.and(ecx, edx)
        }),
        ("dec m mmio", |a| {
            a.cmp(rax, rbx)?;
            a.mov(rdi, MMIO)?;
            a.dec(qword_ptr(rdi + 8))?;
            a.adc(rcx, rdx)
        }),
        ("cmov m unmapped, condition false", |a| {
            a.xor(eax, eax)?;
            a.mov(rdi, UNMAPPED)?;
            a.cmovne(rcx, qword_ptr(rdi))
        }),
        // The last RAM page, then past the end of RAM: the access crosses
        // into unbacked memory (an MMIO exit), and its first page's entry
        // must not serve it.
        ("load across the end of ram into mmio", |a| {
            a.mov(rdi, MEM_SIZE as u64 - 4)?;
            a.mov(rax, qword_ptr(rdi - 8))?;
            a.mov(rcx, qword_ptr(rdi))
        }),
        ("cmov m mmio", |a| {
            a.cmp(rax, rbx)?;
            a.mov(rdi, MMIO)?;
            a.cmovae(ecx, dword_ptr(rdi))
        }),
    ];
    let mut r = Rng(0x5eed_0300);
    for (name, f) in progs {
        let mut a = CodeAssembler::new(64).unwrap();
        a.mov(r15, DATA).unwrap();
        f(&mut a).unwrap();
        // Flags are read after the slow path too.
        a.pushfq().unwrap();
        a.pop(r8).unwrap();
        a.hlt().unwrap();
        let code = a.assemble(CODE).unwrap();
        let (init, fl) = random_state(&mut r);
        let (want, _) = run(&code, 64, &init, fl, Tier::Interp, Templates::ALL);
        // The programs do what their names say (no IDT: a fault shuts down).
        let expect = if name.contains("noncanonical") || name.contains("unmapped") {
            Stop::Shutdown
        } else {
            Stop::Exit
        };
        assert_eq!(want.stop, expect, "{name}");
        for tier in [Tier::All, Tier::Auto] {
            let (got, st) = run(&code, 64, &init, fl, tier, Templates::ALL);
            assert_eq!(got, want, "{name}: {tier:?}");
            if tier == Tier::All {
                assert!(st.native_insns > 0, "{name}: {st:?}");
            }
        }
    }
}

/// Registers the 32-bit streams may write: not ESP (the stack), ESI and
/// EBP (the data pointer, through DS and SS) or EDI (the loop counter).
const W32L: [AsmRegister32; 4] = [eax, ecx, edx, ebx];
/// Registers they may read.
const R32L: [AsmRegister32; 8] = [eax, ecx, edx, ebx, esp, ebp, esi, edi];
const W8L: [AsmRegister8; 8] = [al, cl, dl, bl, ah, ch, dh, bh];
const W16L: [AsmRegister16; 4] = [ax, cx, dx, bx];

/// One random instruction (or a short group) of 32-bit code: the memory
/// and stack forms of the 32-bit inline paths (every address form
/// `addr32::form` names, DS, SS, FS and GS, all sizes, a wrap of the
/// 32-bit offset, a page crossing), CALL/RET to the subroutines `subs`
/// (RET, RET 8), register forms and flag readers between them.
fn gen32(a: &mut CodeAssembler, r: &mut Rng, subs: &[CodeLabel; 2]) {
    let k = r.below(7);
    let d = r.pick(&W32L);
    let s = r.pick(&R32L);
    let imm = r.imm();
    let off = r.below(4096 - 8) as i32;
    let res = match r.below(34) {
        0 => a.mov(d, dword_ptr(esi + off)),
        1 => a.mov(dword_ptr(esi + off), s),
        2 => a.mov(d, dword_ptr(ebp + off)), // SS
        3 => a.mov(dword_ptr(ebp + off), s),
        4 => a
            .and(ecx, 0x3f8)
            .and_then(|_| a.mov(dword_ptr(esi + ecx * 2 + (r.below(64) * 4) as i32), s)),
        5 => a
            .and(ecx, 0x3fc)
            .and_then(|_| a.mov(d, dword_ptr(ecx * 4 + DATA as i32))),
        6 => a.mov(d, dword_ptr(DATA as i32 + off)),
        7 => a.mov(byte_ptr(esi + off), r.pick(&W8L)),
        8 => a.mov(r.pick(&W8L), byte_ptr(ebp + off)),
        9 => a.mov(word_ptr(esi + off), r.pick(&W16L)),
        10 => match r.below(3) {
            0 => a.mov(byte_ptr(esi + off), imm as u8 as u32),
            1 => a.mov(word_ptr(esi + off), imm as u16 as u32),
            _ => a.mov(dword_ptr(ebp + off), imm as u32),
        },
        11 => match r.below(4) {
            0 => a.movzx(d, byte_ptr(esi + off)),
            1 => a.movsx(d, word_ptr(ebp + off)),
            2 => a.movzx(d, word_ptr(esi + off)),
            _ => a.movsx(d, byte_ptr(esi + off)),
        },
        12 => alu_op!(a, k, false, d, dword_ptr(esi + off)),
        13 => alu_op!(a, k, true, dword_ptr(ebp + off), s),
        14 => match r.below(4) {
            0 => alu_op!(a, k, true, dword_ptr(esi + off), imm as i32),
            1 => alu_op!(a, k, true, word_ptr(esi + off), imm as u16 as i32),
            2 => alu_op!(a, k, true, byte_ptr(esi + off), imm as u8 as i32),
            _ => alu_op!(a, k, true, dword_ptr(esi + off), (imm as i8) as i32),
        },
        15 => alu_op!(a, k, false, r.pick(&W8L), byte_ptr(esi + off)),
        // FS and GS have bases: not flat, the handler path.
        16 => a.mov(d, dword_ptr(esi + (off - FS_BASE as i32)).fs()),
        17 => alu_op!(a, k, true, dword_ptr(esi + (off - GS_BASE as i32)).gs(), s),
        // A 32-bit offset that wraps: ESI - 2 + ...
        18 => a.mov(d, dword_ptr(esi + (0xffff_f000u32 as i32) + 0x100)),
        // Across the data page's end (the inline path must decline).
        19 => a.mov(dword_ptr(esi + 4094), s),
        20 => a.push(s).and_then(|_| a.pop(d)),
        21 => a
            .push(r.pick(&W32L))
            .and_then(|_| a.push(esp))
            .and_then(|_| a.pop(d))
            .and_then(|_| a.pop(r.pick(&W32L))),
        22 => a.call(subs[0]),
        23 => a.sub(esp, 8).and_then(|_| a.call(subs[1])),
        24 => a.pushfd().and_then(|_| a.pop(d)),
        25 => a.add(d, s),
        26 => a.sub(d, imm as i32),
        27 => a.adc(d, s),
        28 => setcc(a, r.below(16), r.pick(&W8L)),
        29 => a.lea(
            d,
            dword_ptr(s + r.pick(&[eax, ecx, edx, ebx]) * 2 + imm as i32),
        ),
        30 => match r.below(6) {
            0 => a.inc(d),
            1 => a.not(r.pick(&W8L)),
            2 => a.neg(d).and_then(|_| a.sbb(r.pick(&W16L), r.pick(&W16L))),
            3 => a.sbb(d, imm as i32),
            4 => a.adc(r.pick(&W8L), r.pick(&W8L)),
            _ => a
                .neg(r.pick(&W16L))
                .and_then(|_| setcc(a, r.below(16), r.pick(&W8L))),
        },
        31 => {
            let n = r.pick(&[1u32, 3, 5, 8, 12, 16, 20]);
            match r.below(4) {
                0 => a.shr(r.pick(&W16L), n),
                1 => a.shl(r.pick(&W8L), n),
                2 => a.sar(r.pick(&W16L), n),
                _ => a.shr(r.pick(&W8L), n),
            }
            .and_then(|_| a.adc(d, s))
        }
        32 => match r.below(6) {
            0 => a.cmovae(d, dword_ptr(ebp + off)),
            1 => a.cmp(d, s).and_then(|_| a.cmovl(d, dword_ptr(esi + off))),
            2 => a.inc(dword_ptr(esi + off)).and_then(|_| a.adc(d, s)),
            3 => a
                .dec(dword_ptr(ebp + off))
                .and_then(|_| setcc(a, r.below(16), r.pick(&W8L))),
            4 => a
                .mov(r.pick(&W8L), r.pick(&W8L))
                .and_then(|_| a.mov(r.pick(&W8L), imm as u8 as u32)),
            _ => a
                .mov(r.pick(&W16L), r.pick(&W16L))
                .and_then(|_| a.mov(r.pick(&W16L), imm as u16 as u32)),
        },
        _ => a.nop(),
    };
    res.expect("assemble");
}

/// A 32-bit program: ESI = EBP = DATA, a loop of `iters` over a random
/// body, HLT, then the two subroutines.
fn program32(r: &mut Rng, len: usize, iters: u32) -> Vec<u8> {
    let mut a = CodeAssembler::new(32).expect("assembler");
    let mut subs = [a.create_label(), a.create_label()];
    a.mov(esi, DATA as u32).unwrap();
    a.mov(ebp, DATA as u32).unwrap();
    a.mov(edi, iters).unwrap();
    let mut top = a.create_label();
    a.set_label(&mut top).unwrap();
    for _ in 0..len {
        gen32(&mut a, r, &subs);
    }
    a.dec(edi).unwrap();
    a.jne(top).unwrap();
    a.hlt().unwrap();
    a.set_label(&mut subs[0]).unwrap();
    a.add(eax, ecx).unwrap();
    a.ret().unwrap();
    a.set_label(&mut subs[1]).unwrap();
    a.xor(edx, dword_ptr(esp + 4)).unwrap();
    a.ret_1(8).unwrap();
    a.assemble(CODE).expect("assemble")
}

/// 32-bit streams on both tiers, in flat segments and in the segment
/// states the inline paths must decline at run time (a based DS, a small
/// 16-bit SS, a flat SS with B clear): the same outcome as the
/// interpreter. In flat segments the memory and stack templates must have
/// run natively.
#[test]
fn streams_of_32_bit_code_match_the_interpreter() {
    let mut r = Rng(0x5eed_0400 | 1);
    for segs in [Segs::Flat, Segs::DsBased, Segs::SsSmall16, Segs::SsFlat16] {
        let mut total = super::Stats::default();
        for case in 0..120 {
            let code = program32(&mut r, 20, 3);
            let (mut init, fl) = random_state(&mut r);
            // Upper halves zero but RSP's (kept by 32-bit stack forms).
            for (i, g) in init.iter_mut().enumerate() {
                if i != 4 {
                    *g &= 0xffff_ffff;
                }
            }
            let setup = |c: &mut TestCpu| segs.apply(c);
            let (want, _) = run_in(&code, 32, &init, fl, Tier::Interp, Templates::ALL, &setup);
            for tier in [Tier::All, Tier::Auto] {
                let (got, st) = run_in(&code, 32, &init, fl, tier, Templates::ALL, &setup);
                assert_eq!(
                    got, want,
                    "{segs:?} case {case}: {tier:?} differs from the interpreter; code {code:02x?}"
                );
                total.native_insns += st.native_insns;
                total.translated += st.translated;
            }
        }
        assert!(total.translated > 100, "{segs:?}: {total:?}");
    }
    // The memory and stack groups alone, in flat segments: they emitted
    // native code (the forms are templated in 32-bit code).
    for (i, t) in [
        Templates {
            mem: true,
            ..Templates::NONE
        },
        Templates {
            mem_alu: true,
            ..Templates::NONE
        },
        Templates {
            stack: true,
            ..Templates::NONE
        },
    ]
    .into_iter()
    .enumerate()
    {
        let mut native = 0;
        for case in 0..60 {
            let code = program32(&mut r, 20, 2);
            let (init, fl) = random_state(&mut r);
            let (want, _) = run(&code, 32, &init, fl, Tier::Interp, t);
            let (got, st) = run(&code, 32, &init, fl, Tier::All, t);
            assert_eq!(got, want, "group {i} case {case}; code {code:02x?}");
            native += st.native_insns;
        }
        assert!(native > 0, "group {i} ({t:?}) emitted nothing");
    }
}

/// The 32-bit memory and stack templates' slow paths: an offset past 4 GiB
/// (#GP), a stack at the top of the 4 GiB (#SS), RET and CALL past the CS
/// limit (#GP before anything is committed), MMIO (an exit), an
/// expand-down DS: the same stop, registers and memory as the interpreter.
#[test]
fn memory_and_stack_faults_of_32_bit_code_match_the_interpreter() {
    const MMIO: u32 = 0x1000_0000;
    type F = fn(&mut CodeAssembler) -> Result<(), IcedError>;
    let progs: &[(&str, F)] = &[
        ("read past 4 GiB", |a| {
            a.mov(ecx, 0xffff_fffeu32)?;
            a.mov(eax, dword_ptr(ecx))
        }),
        ("alu past 4 GiB", |a| {
            a.mov(ecx, 0xffff_fffdu32)?;
            a.add(dword_ptr(ecx), eax)
        }),
        ("push at the bottom of the 4 GiB", |a| {
            a.mov(esp, 2u32)?;
            a.push(eax)
        }),
        ("pop at the top", |a| {
            a.mov(esp, 0xffff_fffeu32)?;
            a.pop(eax)
        }),
        ("ret past the CS limit", |a| {
            a.push(0x7fff_f800u32)?;
            a.ret()
        }),
        ("call past the CS limit", |a| a.call(0x7fff_f800u64)),
        ("mov mmio", |a| {
            a.mov(edi, MMIO)?;
            a.mov(dword_ptr(edi + 8), ecx)
        }),
        ("movzx mmio", |a| {
            a.mov(edi, MMIO)?;
            a.movzx(eax, byte_ptr(edi))
        }),
        ("expand-down es", |a| {
            a.mov(eax, 0x18u32)?;
            a.mov(es, ax)?;
            a.mov(ecx, dword_ptr(esi + 0x10).es())?;
            a.mov(dword_ptr(esi + 0x20).es(), ecx)
        }),
        // FS based and unlimited (the inline path adds the base), then
        // based near 4 GiB (the linear address wraps), then with a 4 KiB
        // limit (the handler, and #GP past it).
        // (Each wrong linear address the inline path could take is read
        // through DS first, so that the TLB would hit there.)
        ("fs based, and based near 4 GiB: wraps", |a| {
            a.mov(eax, dword_ptr(esi + (0x10 - FS_BASE as i32)))?;
            a.mov(ecx, dword_ptr(esi + (0x10 - FS_BASE as i32)).fs())?;
            a.mov(dword_ptr(esi + (0x20 - FS_BASE as i32)).fs(), ecx)?;
            a.mov(eax, 0x28u32)?;
            a.mov(fs, ax)?;
            a.mov(edx, dword_ptr(esi + 0x1010).fs())?;
            a.add(dword_ptr(esi + 0x1020).fs(), edx)
        }),
        ("fs with a 4 KiB limit, then past it", |a| {
            a.mov(eax, dword_ptr(0x2000))?;
            a.mov(eax, 0x20u32)?;
            a.mov(fs, ax)?;
            a.mov(ecx, dword_ptr(0x800).fs())?;
            a.mov(edx, dword_ptr(0x1000).fs())
        }),
        // A segment load in the middle of a block (LES, whose handler ends
        // the block at run time): the access after it sees the new ES,
        // and below the expand-down segment's limit raises #GP.
        ("les, then an access below an expand-down limit", |a| {
            a.mov(dword_ptr(esi + 0x40), 0x10u32)?;
            a.mov(word_ptr(esi + 0x44), 0x18u32)?;
            a.mov(ecx, dword_ptr(esi + 0x10).es())?;
            a.les(edx, fword_ptr(esi + 0x40))?;
            a.mov(ecx, dword_ptr(0x8000).es())
        }),
    ];
    let mut r = Rng(0x5eed_0500);
    for (name, f) in progs {
        let mut a = CodeAssembler::new(32).unwrap();
        a.mov(esi, DATA as u32).unwrap();
        f(&mut a).unwrap();
        a.pushfd().unwrap();
        a.pop(ebx).unwrap();
        a.hlt().unwrap();
        let code = a.assemble(CODE).unwrap();
        let (mut init, fl) = random_state(&mut r);
        for g in init.iter_mut() {
            *g &= 0xffff_ffff;
        }
        let setup = |c: &mut TestCpu| {
            // CS limited to 2 GiB; a GDT whose selector 0x18 is an
            // expand-down writable data segment above 64 KiB.
            c.cpu.seg[crate::cpu::Seg::Cs as usize].limit = 0x7fff_efff;
            let gdt = 0x3000u64;
            let mut ed = kite_hypervisor::Segment::flat(0x18, kite_hypervisor::FlatKind::Data);
            (ed.type_, ed.limit) = (0x7, 0xffff);
            c.write(gdt + 0x18, &ed.to_descriptor().to_le_bytes());
            // 0x20: data at 0x1000 with a 4 KiB limit; 0x28: unlimited
            // data based at 4 GiB - 4 KiB.
            let mut small = kite_hypervisor::Segment::flat(0x20, kite_hypervisor::FlatKind::Data);
            (small.base, small.limit, small.g) = (0x1000, 0xfff, false);
            c.write(gdt + 0x20, &small.to_descriptor().to_le_bytes());
            let mut high = kite_hypervisor::Segment::flat(0x28, kite_hypervisor::FlatKind::Data);
            high.base = 0xffff_f000;
            c.write(gdt + 0x28, &high.to_descriptor().to_le_bytes());
            c.cpu.gdtr = kite_hypervisor::DescriptorTable {
                base: gdt,
                limit: 0x2f,
            };
        };
        let (want, _) = run_in(&code, 32, &init, fl, Tier::Interp, Templates::ALL, &setup);
        // The programs do what their names say (no IDT: a fault shuts
        // down; the expand-down segment's offsets are within it).
        if name.contains("mmio") {
            assert_eq!(want.stop, Stop::Exit, "{name}");
        } else if name.starts_with("expand") || name.ends_with("wraps") {
            assert_ne!(want.stop, Stop::Shutdown, "{name}");
        } else {
            assert_eq!(want.stop, Stop::Shutdown, "{name}");
        }
        for tier in [Tier::All, Tier::Auto] {
            let (got, st) = run_in(&code, 32, &init, fl, tier, Templates::ALL, &setup);
            assert_eq!(got, want, "{name}: {tier:?}");
            if tier == Tier::All {
                assert!(st.native_insns > 0, "{name}: nothing native");
            }
        }
    }
}

/// Guest registers read again and again in a block are loaded from
/// `Cpu::gpr` once, then read from their mirrors; the block still ends in
/// the interpreter's state (with the mirrors on and off), and each write
/// still reaches `Cpu::gpr`.
#[test]
fn repeated_reads_come_from_the_mirrors() {
    use super::translate::translate;
    use crate::cpu::block_cache::Decoded;
    let mut a = CodeAssembler::new(64).unwrap();
    a.imul_3(rax, rcx, 3).unwrap();
    a.add(rax, rcx).unwrap();
    a.shr(rax, 3u32).unwrap();
    a.add(rax, rcx).unwrap();
    a.mov(rdx, qword_ptr(rax + 8)).unwrap();
    a.add(rax, rdx).unwrap();
    a.hlt().unwrap();
    let code = a.assemble(CODE).unwrap();
    let mut dec = iced_x86::Decoder::with_ip(64, &code, CODE, iced_x86::DecoderOptions::NONE);
    let mut d = Vec::new();
    while dec.can_decode() {
        let ins = dec.decode();
        d.push(Decoded {
            ins,
            handler: crate::cpu::exec::handler_for(&ins),
        });
    }
    // (loads, stores) of `Cpu::gpr[g]` in the translation.
    let traffic = |t: Templates, g: usize| {
        let made = translate(&d, CODE, 64, 0, t, &mut super::chain::Slots::default()).unwrap();
        let at = (core::mem::offset_of!(crate::cpu::Cpu, gpr) + g * 8) as u64;
        let mut dd = iced_x86::Decoder::new(64, &made.code, iced_x86::DecoderOptions::NONE);
        let (mut loads, mut stores) = (0, 0);
        while dd.can_decode() {
            let ins = dd.decode();
            let mem_at = |i: u32| {
                ins.op_kind(i) == iced_x86::OpKind::Memory
                    && ins.memory_base() == iced_x86::Register::RBX
                    && ins.memory_displacement64() == at
            };
            if ins.mnemonic() == iced_x86::Mnemonic::Mov && ins.op_count() == 2 {
                loads += usize::from(mem_at(1));
                stores += usize::from(mem_at(0));
            }
        }
        (loads, stores)
    };
    let off = Templates {
        mirrors: false,
        ..Templates::ALL
    };
    // RAX: read by all six instructions, written by five of them. Without
    // mirrors every read loads it; with them, only the handler's slow path
    // of the memory load reloads it (after a handler, `Cpu::gpr` is the
    // truth), besides the first read.
    let (l_off, s_off) = traffic(off, 0);
    let (l_on, s_on) = traffic(Templates::ALL, 0);
    assert!(l_off >= 6, "{l_off} loads of RAX without mirrors");
    assert!(l_on <= 2, "{l_on} loads of RAX with mirrors");
    assert_eq!(s_on, s_off, "every write reaches Cpu::gpr");
    // RCX: read three times, never written: one load, and one reload on
    // the memory load's handler path.
    assert_eq!(traffic(off, 1).0, 3);
    assert_eq!(traffic(Templates::ALL, 1).0, 2);
    // Both run as the interpreter does.
    let mut r = Rng(11);
    let (mut init, fl) = random_state(&mut r);
    // RCX = 2k: RAX = 3k after the arithmetic, so the load reads the
    // data page.
    init[1] = 2 * (DATA / 3 + 1);
    for t in [Templates::ALL, off] {
        let (want, _) = run(&code, 64, &init, fl, Tier::Interp, t);
        let (got, st) = run(&code, 64, &init, fl, Tier::All, t);
        assert_eq!(got, want);
        assert!(st.native_insns > 0, "{st:?}");
    }
}

/// The entry check declines exactly when what it tests does not hold: a
/// flat 64-bit and 32-bit block (ending at CPUID, whose handler does not
/// end the block, so the block's own end is reached) never declines; the
/// same 32-bit block with a based DS declines at every entry, runs on the
/// interpreter, and ends in the interpreter's state.
#[test]
fn the_entry_check_declines_only_when_it_must() {
    let mut a = CodeAssembler::new(64).unwrap();
    a.mov(r15, DATA).unwrap();
    a.mov(ecx, 50u32).unwrap();
    let mut top = a.create_label();
    a.set_label(&mut top).unwrap();
    a.mov(qword_ptr(r15 + 8), rcx).unwrap();
    a.add(rax, qword_ptr(r15 + 8)).unwrap();
    a.push(rax).unwrap();
    a.pop(rdx).unwrap();
    a.mov(r14, rcx).unwrap();
    a.xor(eax, eax).unwrap();
    a.cpuid().unwrap();
    a.mov(rcx, r14).unwrap();
    a.dec(ecx).unwrap();
    a.jne(top).unwrap();
    a.hlt().unwrap();
    let code64 = a.assemble(CODE).unwrap();
    let mut a = CodeAssembler::new(32).unwrap();
    a.mov(esi, DATA as u32).unwrap();
    a.mov(edi, 50u32).unwrap();
    let mut top = a.create_label();
    a.set_label(&mut top).unwrap();
    a.mov(dword_ptr(esi + 8), edi).unwrap();
    a.add(ebx, dword_ptr(esi + 8)).unwrap();
    a.push(ebx).unwrap();
    a.pop(edx).unwrap();
    a.mov(dword_ptr(esi + 12), eax).unwrap();
    a.xor(eax, eax).unwrap();
    a.cpuid().unwrap();
    a.dec(edi).unwrap();
    a.jne(top).unwrap();
    a.hlt().unwrap();
    let code32 = a.assemble(CODE).unwrap();
    let mut r = Rng(0x5eed_0700);
    let (mut init, fl) = random_state(&mut r);
    for g in init.iter_mut() {
        *g &= 0xffff_ffff;
    }
    for (code, bits, segs) in [
        (&code64, 64, Segs::Flat),
        (&code32, 32, Segs::Flat),
        (&code32, 32, Segs::DsBased),
    ] {
        let setup = |c: &mut TestCpu| segs.apply(c);
        let (want, _) = run_in(code, bits, &init, fl, Tier::Interp, Templates::ALL, &setup);
        assert_eq!(want.stop, Stop::Exit, "{bits} {segs:?}");
        let (got, st) = run_in(code, bits, &init, fl, Tier::All, Templates::ALL, &setup);
        assert_eq!(got, want, "{bits} {segs:?}");
        if segs == Segs::Flat {
            assert_eq!(st.declined, 0, "{bits}: {st:?}");
            assert!(st.native_insns > 0, "{bits}: {st:?}");
        } else {
            // Each of the 50 rounds enters the loop's first block once.
            assert!(st.declined >= 50, "{st:?}");
        }
    }
}
