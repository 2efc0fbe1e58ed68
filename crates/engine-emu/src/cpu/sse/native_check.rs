//! Differential test: every register form and memory form ([rdi+disp],
//! 16-byte aligned) of the MMX/SSE..SSE4.2 instructions, executed on the host CPU and through the engine with the
//! same random operands (special float values mixed in), random immediates
//! and random MXCSR rounding/DAZ/FTZ modes; results, RFLAGS and MXCSR must
//! match bit for bit.

use iced_x86::code_asm::*;
use iced_x86::{
    Code, CpuidFeature as F, Decoder, DecoderOptions, Encoder, Instruction, MemoryOperand, Register,
};

use crate::cpu::fpu::testing::{TestCpu, DATA};
use crate::cpu::fpu::F80;

/// Register state shared with the native stub (layout fixed: offsets below).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct State {
    xmm: [u128; 3],
    mm: [u64; 3],
    gpr: [u64; 3],
    flags: u64,
    csr: u32,
    host_csr: u32,
    /// The memory operand of memory forms, at [rdi + 112].
    mem: [u8; 32],
}

const MEM: i64 = 112;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A 64-bit chunk: random bits, or float/integer special values.
    fn chunk(&mut self) -> u64 {
        const S32: [u32; 12] = [
            0,
            0x8000_0000,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            0x7fa0_0000,
            1,
            0x807f_ffff,
            0x3f80_0000,
            0x4f00_0000,
            0xcf00_0001,
            0x7fff_ffff,
        ];
        const S64: [u64; 8] = [
            0x7ff0_0000_0000_0000,
            0x7ff4_0000_0000_0000,
            0x0000_0000_0000_0001,
            0x43e0_0000_0000_0000,
            0xc3e0_0000_0000_0001,
            0x3ff8_0000_0000_0000,
            0x41e0_0000_0000_0000,
            0x8000_0000_0000_0000,
        ];
        match self.next() % 4 {
            0 => S64[(self.next() % 8) as usize],
            1 => {
                let lo = S32[(self.next() % 12) as usize];
                let hi = S32[(self.next() % 12) as usize];
                u64::from(lo) | (u64::from(hi) << 32)
            }
            2 => self.next() & 0x00ff_00ff_7fff_8000,
            _ => self.next(),
        }
    }

    fn v128(&mut self) -> u128 {
        u128::from(self.chunk()) | (u128::from(self.chunk()) << 64)
    }
}

/// Run `insn` natively on `st`.
fn run_native(insn: &[u8], st: &mut State) {
    let mut a = CodeAssembler::new(64).unwrap();
    a.stmxcsr(dword_ptr(rdi + 108)).unwrap();
    a.ldmxcsr(dword_ptr(rdi + 104)).unwrap();
    a.movdqu(xmm0, xmmword_ptr(rdi)).unwrap();
    a.movdqu(xmm1, xmmword_ptr(rdi + 16)).unwrap();
    a.movdqu(xmm2, xmmword_ptr(rdi + 32)).unwrap();
    a.movq(mm0, qword_ptr(rdi + 48)).unwrap();
    a.movq(mm1, qword_ptr(rdi + 56)).unwrap();
    a.movq(mm2, qword_ptr(rdi + 64)).unwrap();
    a.xor(eax, eax).unwrap(); // ZF = PF = 1, the rest 0
    a.mov(rax, qword_ptr(rdi + 72)).unwrap();
    a.mov(rcx, qword_ptr(rdi + 80)).unwrap();
    a.mov(rdx, qword_ptr(rdi + 88)).unwrap();
    a.db(insn).unwrap();
    a.pushfq().unwrap();
    a.pop(r8).unwrap();
    a.mov(qword_ptr(rdi + 96), r8).unwrap();
    a.movdqu(xmmword_ptr(rdi), xmm0).unwrap();
    a.movdqu(xmmword_ptr(rdi + 16), xmm1).unwrap();
    a.movdqu(xmmword_ptr(rdi + 32), xmm2).unwrap();
    a.movq(qword_ptr(rdi + 48), mm0).unwrap();
    a.movq(qword_ptr(rdi + 56), mm1).unwrap();
    a.movq(qword_ptr(rdi + 64), mm2).unwrap();
    a.mov(qword_ptr(rdi + 72), rax).unwrap();
    a.mov(qword_ptr(rdi + 80), rcx).unwrap();
    a.mov(qword_ptr(rdi + 88), rdx).unwrap();
    a.stmxcsr(dword_ptr(rdi + 104)).unwrap();
    a.ldmxcsr(dword_ptr(rdi + 108)).unwrap();
    a.emms().unwrap();
    a.ret().unwrap();
    let code = a.assemble(0).unwrap();
    crate::cpu::native_stub::run(&code, st);
}

fn run_emu(insn: &[u8], st: &mut State) {
    let mut t = TestCpu::new();
    t.cpu.fpu.xmm[..3].copy_from_slice(&st.xmm);
    for i in 0..3 {
        t.cpu.fpu.regs[i] = F80 {
            mant: st.mm[i],
            se: 0xffff,
        };
    }
    t.cpu.gpr[0] = st.gpr[0];
    t.cpu.gpr[1] = st.gpr[1];
    t.cpu.gpr[2] = st.gpr[2];
    t.cpu.fpu.mxcsr = st.csr;
    t.cpu.gpr[7] = DATA;
    t.write(DATA + MEM as u64, &st.mem);
    t.cpu
        .flags
        .set_arith(false, true, false, true, false, false);
    if let Err(e) = t.run_bytes(insn) {
        panic!("emu fault {e:?} for {insn:02x?}");
    }
    st.xmm.copy_from_slice(&t.cpu.fpu.xmm[..3]);
    for i in 0..3 {
        st.mm[i] = t.cpu.fpu.regs[i].mant;
    }
    st.gpr = [t.cpu.gpr[0], t.cpu.gpr[1], t.cpu.gpr[2]];
    st.flags = t.cpu.flags.rflags();
    st.csr = t.cpu.fpu.mxcsr;
    st.mem.copy_from_slice(&t.read(DATA + MEM as u64, 32));
}

#[derive(Clone, Copy)]
enum Op {
    R(Register),
    Imm,
    /// [rdi + MEM].
    M,
}

/// Operand patterns tried for each instruction, first match wins.
fn patterns() -> Vec<Vec<Op>> {
    use Op::*;
    use Register as G;
    let regs2 = [
        (G::XMM1, G::XMM2),
        (G::MM1, G::MM2),
        (G::EAX, G::XMM2),
        (G::RAX, G::XMM2),
        (G::EAX, G::MM2),
        (G::RAX, G::MM2),
        (G::XMM1, G::EAX),
        (G::XMM1, G::RAX),
        (G::MM1, G::EAX),
        (G::MM1, G::RAX),
        (G::XMM1, G::MM2),
        (G::MM1, G::XMM2),
        (G::EAX, G::ECX),
        (G::RAX, G::RCX),
        (G::EAX, G::CX),
        (G::EAX, G::CL),
        (G::RAX, G::CL),
    ];
    let mut v: Vec<Vec<Op>> = vec![vec![]];
    for (a, b) in regs2 {
        v.push(vec![R(a), R(b)]);
        v.push(vec![R(a), R(b), Imm]);
    }
    v.push(vec![R(G::XMM1), Imm]);
    v.push(vec![R(G::MM1), Imm]);
    v
}

/// Memory-operand patterns, first match wins.
fn mem_patterns() -> Vec<Vec<Op>> {
    use Op::*;
    use Register as G;
    let mut v = Vec::new();
    for r in [G::XMM1, G::MM1, G::EAX, G::RAX] {
        v.push(vec![R(r), M]);
        v.push(vec![M, R(r)]);
        v.push(vec![R(r), M, Imm]);
        v.push(vec![M, R(r), Imm]);
    }
    v
}

fn build(code: Code, pat: &[Op], imm: u8) -> Option<Vec<u8>> {
    let op = |o: Op| o;
    let mem = MemoryOperand::with_base_displ(Register::RDI, MEM);
    let ins = match pat {
        [] => {
            let mut i = Instruction::default();
            i.set_code(code);
            Ok(i)
        }
        [a, b] => match (op(*a), op(*b)) {
            (Op::R(a), Op::R(b)) => Instruction::with2(code, a, b),
            (Op::R(a), Op::Imm) => Instruction::with2(code, a, u32::from(imm)),
            (Op::R(a), Op::M) => Instruction::with2(code, a, mem),
            (Op::M, Op::R(b)) => Instruction::with2(code, mem, b),
            _ => return None,
        },
        [Op::R(a), Op::R(b), Op::Imm] => Instruction::with3(code, *a, *b, u32::from(imm)),
        [Op::R(a), Op::M, Op::Imm] => Instruction::with3(code, *a, mem, u32::from(imm)),
        [Op::M, Op::R(b), Op::Imm] => Instruction::with3(code, mem, *b, u32::from(imm)),
        _ => return None,
    }
    .ok()?;
    let mut e = Encoder::new(64);
    e.encode(&ins, 0).ok()?;
    let bytes = e.take_buffer();
    let back = Decoder::with_ip(64, &bytes, 0, DecoderOptions::NONE).decode();
    (back.code() == code && back.len() == bytes.len()).then_some(bytes)
}

#[test]
fn register_and_memory_forms_match_the_host_cpu() {
    let feats = [
        F::MMX,
        F::SSE,
        F::SSE2,
        F::SSE3,
        F::SSSE3,
        F::SSE4_1,
        F::SSE4_2,
    ];
    let pats = patterns();
    let mems = mem_patterns();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ crate::cpu::fpu::native_check::seed());
    let mut tested = 0;
    let mut failures = Vec::new();
    for code in Code::values() {
        let f = code.cpuid_features();
        if f.is_empty() || !f.iter().all(|x| feats.contains(x)) {
            continue;
        }
        let mut probe = Instruction::default();
        probe.set_code(code);
        let n = probe.op_count() as usize;
        let reg = pats
            .iter()
            .find(|p| p.len() == n && build(code, p, 0).is_some());
        let mem = mems
            .iter()
            .find(|p| p.len() == n && build(code, p, 0).is_some());
        for pat in [reg, mem].into_iter().flatten() {
            tested += 1;
            for _ in 0..crate::cpu::fpu::native_check::iterations() {
                let imm = rng.next() as u8;
                let Some(insn) = build(code, pat, imm) else {
                    continue;
                };
                let mut m = [0u8; 32];
                for c in m.chunks_mut(8) {
                    c.copy_from_slice(&rng.chunk().to_le_bytes());
                }
                let mut st = State {
                    xmm: [rng.v128(), rng.v128(), rng.v128()],
                    mm: [rng.chunk(), rng.chunk(), rng.chunk()],
                    gpr: [rng.next() % 40, rng.chunk(), rng.next() % 40],
                    csr: 0x1f80
                        | (((rng.next() % 4) as u32) << 13)
                        | ((rng.next() % 2) as u32 * 0x8040),
                    mem: m,
                    ..Default::default()
                };
                let input = st;
                let mut native = st;
                run_native(&insn, &mut native);
                run_emu(&insn, &mut st);
                let arith = crate::cpu::flags::ARITH;
                native.flags &= arith;
                st.flags &= arith;
                native.host_csr = 0;
                if native != st {
                    failures.push(format!(
                        "{code:?} imm={imm:#x}\n  input  {input:x?}\n  native {native:x?}\n  emu    {st:x?}"
                    ));
                    break;
                }
            }
        }
    }
    eprintln!("native check: {tested} instruction forms");
    assert!(tested > 600, "only {tested} instruction forms tested");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
