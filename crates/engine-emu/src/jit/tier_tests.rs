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
use crate::cpu::integer::test_support::{Rng, TestCpu, CODE, DATA};

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
    let mut c = TestCpu::new(bits);
    c.write(CODE, code);
    let data: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(37) ^ 0x5a) as u8)
        .collect();
    c.write(DATA, &data);
    c.cpu.gpr = *init;
    c.cpu.gpr[4] = STACK_BASE + 0x800;
    c.cpu.flags.set_rflags(rflags);
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

/// Index registers (not RSP/ESP).
const X64: [AsmRegister64; 15] = [
    rax, rcx, rdx, rbx, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
];
const X32: [AsmRegister32; 15] = [
    eax, ecx, edx, ebx, ebp, esi, edi, r8d, r9d, r10d, r11d, r12d, r13d, r14d, r15d,
];

/// One random instruction (64-bit mode). `skip` labels are forward targets.
fn gen64(a: &mut CodeAssembler, r: &mut Rng, fwd: &mut Vec<(CodeLabel, u32)>) {
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
        _ => a.nop(),
    };
    res.expect("assemble");
}

/// A program: R15 = DATA, a loop of `iters` over a random body, HLT.
fn program64(r: &mut Rng, len: usize, iters: u32) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).expect("assembler");
    a.mov(r15, DATA).unwrap();
    a.mov(r14d, iters).unwrap();
    let mut top = a.create_label();
    a.set_label(&mut top).unwrap();
    let mut fwd: Vec<(CodeLabel, u32)> = Vec::new();
    for _ in 0..len {
        gen64(&mut a, r, &mut fwd);
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
    let st = compare_tiers(0x5eed_0001, 300, 24, 3, Tier::All, Templates::ALL);
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
        Templates::NONE,
    ];
    for (i, t) in groups.into_iter().enumerate() {
        compare_tiers(0x5eed_0100 + i as u64, 80, 20, 2, Tier::All, t);
    }
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
