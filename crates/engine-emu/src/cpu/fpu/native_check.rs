//! Differential test: every x87 instruction form (register forms and
//! memory forms on [rdi+disp]) executed on the host CPU and through the
//! engine from the same random register stack (special values, empty
//! registers), control word (precision, rounding, exception masks) and
//! memory operand. The FXSAVE images (except the instruction/data
//! pointers), RFLAGS, RAX and the memory operand must match bit for bit.

use iced_x86::code_asm::*;
use iced_x86::{
    Code, CpuidFeature as F, Decoder, DecoderOptions, Encoder, Instruction, MemoryOperand,
    Mnemonic, Register,
};

use super::host;
use super::testing::{TestCpu, DATA};
use super::F80;

/// State shared with the native stub (offsets fixed below).
#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct State {
    regs: [[u8; 16]; 8], // 0: ST0..ST7 images
    cw: u16,             // 128
    pad0: [u8; 62],
    mem: [u8; 128], // 192
    fx: [u8; 512],  // 320
    flags: u64,     // 832
    rax: u64,       // 840
    host_cw: u16,   // 848
    pad1: [u8; 14],
}

const MEM: i32 = 192;

impl Default for State {
    fn default() -> Self {
        State {
            regs: [[0; 16]; 8],
            cw: 0x37f,
            pad0: [0; 62],
            mem: [0; 128],
            fx: [0; 512],
            flags: 0,
            rax: 0,
            host_cw: 0,
            pad1: [0; 14],
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn f80(&mut self) -> F80 {
        let s = if self.next() & 1 != 0 { 0x8000 } else { 0 };
        let m = self.next();
        let v = match self.next() % 16 {
            0 => F80 { mant: 0, se: 0 },
            1 => F80 {
                mant: 1 << 63,
                se: 0x7fff,
            },
            2 => F80 {
                mant: 0xc000_0000_0000_0000 | (m >> 20),
                se: 0x7fff,
            },
            3 => F80 {
                mant: 0x8000_0000_0000_0000 | (m >> 3 | 1),
                se: 0x7fff,
            },
            4 => F80 {
                mant: m >> 1 | 1,
                se: 0,
            },
            5 => F80 {
                mant: m >> 1,
                se: (self.next() % 0x7ffe + 1) as u16,
            },
            6 => F80 {
                mant: m | 1 << 63,
                se: 0x3fff + 62 + (self.next() % 3) as u16,
            },
            7 => F80 {
                mant: m | 1 << 63,
                se: (self.next() % 0x7ffe + 1) as u16,
            },
            8 => F80 {
                mant: (m >> 40 | 1) << 40 | 1 << 63,
                se: 0x3fff + (self.next() % 40) as u16,
            },
            _ => {
                let f = (self.next() % 2000) as f64 / 7.0 - 100.0;
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&f.to_bits().to_le_bytes());
                F80::from_bytes(&host::ld_m64(0x37f, 0, &[0; 16], &b).r)
            }
        };
        F80 {
            mant: v.mant,
            se: v.se | s,
        }
    }

    fn mem(&mut self) -> [u8; 128] {
        let mut b = [0u8; 128];
        let f = self.f80().to_bytes();
        match self.next() % 5 {
            0 => b[..10].copy_from_slice(&f),
            1 => {
                // Packed BCD, sometimes with invalid digits.
                for x in b.iter_mut().take(9) {
                    let v = self.next() as u8;
                    *x = if self.next().is_multiple_of(8) {
                        v
                    } else {
                        (v % 10) | ((v / 10 % 10) << 4)
                    };
                }
                b[9] = (self.next() as u8) & 0x80;
            }
            2 => b[..8].copy_from_slice(
                &((self.next() % 2000) as f64 - 1000.5)
                    .to_bits()
                    .to_le_bytes(),
            ),
            3 => b[..4].copy_from_slice(&[0x01, 0x00, 0xa0, 0x7f]),
            _ => {
                for x in b.iter_mut() {
                    *x = self.next() as u8;
                }
            }
        }
        b
    }
}

fn run_native(insn: &[u8], empty: u8, st: &mut State) {
    let mut a = CodeAssembler::new(64).unwrap();
    a.fnstcw(word_ptr(rdi + 848)).unwrap();
    a.fninit().unwrap();
    a.fldcw(word_ptr(rdi + 128)).unwrap();
    for i in (0..8).rev() {
        a.fld(tword_ptr(rdi + 16 * i)).unwrap();
    }
    for (i, r) in [st0, st1, st2, st3, st4, st5, st6, st7]
        .into_iter()
        .enumerate()
    {
        if empty & (1 << i) != 0 {
            a.ffree(r).unwrap();
        }
    }
    a.xor(eax, eax).unwrap();
    a.mov(rax, qword_ptr(rdi + 840)).unwrap();
    a.db(insn).unwrap();
    a.pushfq().unwrap();
    a.pop(r8).unwrap();
    a.mov(qword_ptr(rdi + 832), r8).unwrap();
    a.mov(qword_ptr(rdi + 840), rax).unwrap();
    a.fxsave64(ptr(rdi + 320)).unwrap();
    a.fninit().unwrap();
    a.fldcw(word_ptr(rdi + 848)).unwrap();
    a.ret().unwrap();
    let code = a.assemble(0).unwrap();
    crate::cpu::native_stub::run(&code, st);
}

fn run_emu(insn: &[u8], empty: u8, st: &mut State) {
    let mut t = TestCpu::new();
    t.cpu.fpu.finit();
    t.cpu.fpu.fcw = super::control::normalize_fcw(st.cw);
    for i in 0..8 {
        t.cpu.fpu.regs[i] = F80::from_bytes(&st.regs[i]);
        let tag = if empty & (1 << i) != 0 {
            3
        } else {
            t.cpu.fpu.regs[i].tag()
        };
        t.cpu.fpu.set_tag_phys(i, tag);
    }
    t.cpu.gpr[7] = DATA;
    t.cpu.gpr[0] = st.rax;
    t.write(DATA + MEM as u64, &st.mem);
    t.cpu
        .flags
        .set_arith(false, true, false, true, false, false);
    if let Err(e) = t.run_bytes(insn) {
        panic!("emu fault {e:?} for {insn:02x?}");
    }
    // The engine's own FXSAVE makes the image to compare.
    let fx = DATA + 0x400;
    t.cpu.gpr[3] = fx;
    let save = [0x48, 0x0f, 0xae, 0x03]; // fxsave64 [rbx]
    t.run_bytes(&save).unwrap();
    st.fx.copy_from_slice(&t.read(fx, 512));
    st.mem.copy_from_slice(&t.read(DATA + MEM as u64, 128));
    st.flags = t.cpu.flags.rflags();
    st.rax = t.cpu.gpr[0];
}

fn sti(i: usize) -> Register {
    [
        Register::ST0,
        Register::ST1,
        Register::ST2,
        Register::ST3,
        Register::ST4,
        Register::ST5,
        Register::ST6,
        Register::ST7,
    ][i & 7]
}

/// Encode `code` with register operands ST(i) or the memory operand
/// [rdi+MEM]; None when the form does not fit.
fn build(code: Code, i: usize) -> Option<Vec<u8>> {
    let mut probe = Instruction::default();
    probe.set_code(code);
    let mem = MemoryOperand::with_base_displ(Register::RDI, i64::from(MEM));
    let ins = match probe.op_count() {
        0 => Ok(probe),
        1 if format!("{code:?}").contains("_m") => Instruction::with1(code, mem),
        1 if format!("{code:?}").ends_with("_AX") => Instruction::with1(code, Register::AX),
        1 => Instruction::with1(code, sti(i)),
        2 if format!("{code:?}").contains("_st0_sti") => {
            Instruction::with2(code, Register::ST0, sti(i))
        }
        2 => Instruction::with2(code, sti(i), Register::ST0),
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
fn x87_forms_match_the_host_fpu() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ 1);
    let mut tested = 0;
    let mut failures = Vec::new();
    for code in Code::values() {
        let f = code.cpuid_features();
        if f.is_empty()
            || !f.iter().all(|x| [F::FPU, F::FPU387, F::CMOV].contains(x))
            || f == [F::CMOV]
        {
            continue;
        }
        let m = code.mnemonic();
        // 287-only forms.
        if matches!(
            m,
            Mnemonic::Fnstdw | Mnemonic::Fnstsg | Mnemonic::Fstdw | Mnemonic::Fstsg
        ) {
            continue;
        }
        if build(code, 1).is_none() {
            continue;
        }
        tested += 1;
        for _ in 0..iterations() {
            let i = (rng.next() % 8) as usize;
            let Some(insn) = build(code, i) else { continue };
            let mut st = State::default();
            for r in st.regs.iter_mut() {
                r[..10].copy_from_slice(&rng.f80().to_bytes());
            }
            let pc = [0x000, 0x200, 0x300, 0x300][(rng.next() % 4) as usize];
            let rc = ((rng.next() % 4) << 10) as u16;
            let masks = if rng.next().is_multiple_of(4) {
                (rng.next() & 0x3f) as u16
            } else {
                0x3f
            };
            st.cw = 0x40 | pc | rc | masks;
            st.mem = rng.mem();
            st.rax = rng.next();
            let empty = if rng.next().is_multiple_of(3) {
                rng.next() as u8
            } else {
                0
            };
            let input = st;
            let mut native = st;
            run_native(&insn, empty, &mut native);
            run_emu(&insn, empty, &mut st);
            let arith = crate::cpu::flags::ARITH;
            // FNSTENV/FNSAVE images hold the instruction and data
            // pointers (bytes 12..28), which differ by design.
            let ptrs = match code {
                Code::Fnstenv_m14byte | Code::Fnsave_m94byte => 6..14,
                Code::Fnstenv_m28byte | Code::Fnsave_m108byte => 12..24,
                _ => 0..0,
            };
            let mem_same = (0..128).all(|k| ptrs.contains(&k) || native.mem[k] == st.mem[k]);
            // FOP (bytes 6..8): recorded for an unmasked exception only, as
            // both Intel (FOP compatibility off) and this AMD-style FXSAVE
            // show it; FLDENV/FRSTOR load it from memory.
            let fop_same =
                matches!(m, Mnemonic::Fldenv | Mnemonic::Frstor) || native.fx[6..8] == st.fx[6..8];
            let same = native.fx[..6] == st.fx[..6]
                && fop_same
                && native.fx[32..160] == st.fx[32..160]
                && mem_same
                && native.flags & arith == st.flags & arith
                && native.rax == st.rax;
            if !same {
                let regs: Vec<String> = input
                    .regs
                    .iter()
                    .map(|r| format!("{:?}", F80::from_bytes(r)))
                    .collect();
                let diff: Vec<(usize, u8, u8)> = (32..160)
                    .filter(|&k| native.fx[k] != st.fx[k])
                    .map(|k| (k, native.fx[k], st.fx[k]))
                    .collect();
                failures.push(format!(
                    "{code:?} st({i}) cw={:#x} empty={empty:#x}\n  regs {regs:?}\n  mem {:02x?}\n  diff at {diff:?}\n  native fx {:02x?} mem {:02x?} fl {:#x} rax {:#x}\n  emu    fx {:02x?} mem {:02x?} fl {:#x} rax {:#x}",
                    input.cw,
                    &input.mem[..32],
                    &native.fx[..6],
                    &native.mem[..32],
                    native.flags & arith,
                    native.rax,
                    &st.fx[..6],
                    &st.mem[..32],
                    st.flags & arith,
                    st.rax
                ));
                break;
            }
        }
    }
    eprintln!("x87 native check: {tested} instruction forms");
    assert!(tested > 120, "only {tested} instruction forms tested");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Random seed of the differential tests (KITE_NATIVE_SEED, default 0).
pub fn seed() -> u64 {
    std::env::var("KITE_NATIVE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Trials per instruction form (KITE_NATIVE_ITERS, default 96).
pub fn iterations() -> usize {
    std::env::var("KITE_NATIVE_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(96)
}
