//! x87 arithmetic: FADD/FSUB/FSUBR/FMUL/FDIV/FDIVR (register, m32fp, m64fp,
//! m16int, m32int, and popping forms), FCOM/FCOMP/FCOMPP/FUCOM*/FICOM*,
//! FCOMI/FCOMIP/FUCOMI/FUCOMIP, FTST, FXAM, FCHS, FABS, FSQRT, FRNDINT,
//! F2XM1, FSIN, FCOS, FSINCOS, FPTAN, FPATAN, FYL2X, FYL2XP1, FSCALE,
//! FXTRACT, FPREM, FPREM1.

use iced_x86::{Instruction, Mnemonic as M, OpKind};

use super::host::{self, Kernel};
use super::{st_index, sw, F80};
use crate::cpu::exec::Handler;
use crate::cpu::{Cpu, Res};

pub fn handler(ins: &Instruction) -> Option<Handler> {
    Some(match ins.mnemonic() {
        M::Fadd
        | M::Faddp
        | M::Fiadd
        | M::Fsub
        | M::Fsubp
        | M::Fisub
        | M::Fsubr
        | M::Fsubrp
        | M::Fisubr
        | M::Fmul
        | M::Fmulp
        | M::Fimul
        | M::Fdiv
        | M::Fdivp
        | M::Fidiv
        | M::Fdivr
        | M::Fdivrp
        | M::Fidivr => arith,
        M::Fcom
        | M::Fcomp
        | M::Fcompp
        | M::Fucom
        | M::Fucomp
        | M::Fucompp
        | M::Ficom
        | M::Ficomp
        | M::Fcomi
        | M::Fcomip
        | M::Fucomi
        | M::Fucomip
        | M::Ftst => compare,
        M::Fxam => fxam,
        M::Fchs | M::Fabs => sign_op,
        M::Fsqrt | M::Frndint | M::F2xm1 | M::Fsin | M::Fcos => unary,
        M::Fptan | M::Fsincos | M::Fxtract => two_results,
        M::Fscale | M::Fprem | M::Fprem1 => with_st1,
        M::Fpatan | M::Fyl2x | M::Fyl2xp1 => with_st1_pop,
        _ => return None,
    })
}

/// The other operand of a two-operand x87 instruction.
#[derive(Debug, Clone, Copy)]
pub enum Src {
    /// ST(i).
    St(usize),
    /// Memory bits of `size` bytes; `int` for the FI* forms.
    Mem { bits: u64, size: u32, int: bool },
}

impl Cpu {
    /// Read the memory operand of an x87 instruction (`size` bytes, up to 8).
    pub fn x87_read_mem(&mut self, ins: &Instruction, size: u32) -> Res<u64> {
        let seg = self.mem_seg(ins);
        let off = self.ea(ins);
        self.read_mem(seg, off, size)
    }
}

fn mem_src(cpu: &mut Cpu, ins: &Instruction, int: bool) -> Res<Src> {
    let size = ins.memory_size().size() as u32;
    let bits = cpu.x87_read_mem(ins, size)?;
    Ok(Src::Mem { bits, size, int })
}

fn buf_u64(v: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&v.to_le_bytes());
    b
}

/// (destination index, source) of FADD-style and FCOM-style instructions.
fn operands(cpu: &mut Cpu, ins: &Instruction, int: bool) -> Res<(usize, Src)> {
    match ins.op_count() {
        0 => Ok((0, Src::St(1))),
        1 if ins.op_kind(0) == OpKind::Memory => Ok((0, mem_src(cpu, ins, int)?)),
        1 => Ok((0, Src::St(st_index(ins.op_register(0))))),
        _ => Ok((
            st_index(ins.op_register(0)),
            Src::St(st_index(ins.op_register(1))),
        )),
    }
}

fn src_empty(cpu: &Cpu, s: Src) -> bool {
    matches!(s, Src::St(i) if cpu.fpu.is_empty(i))
}

fn src_buf(cpu: &Cpu, s: Src) -> [u8; 16] {
    match s {
        Src::St(i) => cpu.fpu.st(i).to_buf(),
        Src::Mem { bits, .. } => buf_u64(bits),
    }
}

fn arith(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    let m = ins.mnemonic();
    let int = matches!(
        m,
        M::Fiadd | M::Fisub | M::Fisubr | M::Fimul | M::Fidiv | M::Fidivr
    );
    let (dst, src) = operands(cpu, ins, int)?;
    let pop = matches!(
        m,
        M::Faddp | M::Fsubp | M::Fsubrp | M::Fmulp | M::Fdivp | M::Fdivrp
    );
    cpu.x87_note(ins);
    if cpu.fpu.is_empty(dst) || src_empty(cpu, src) {
        if cpu.x87_underflow() {
            cpu.fpu.set_st(dst, F80::INDEFINITE);
            if pop {
                cpu.fpu.pop();
            }
        }
        return Ok(());
    }
    // Which operation, and in which source form.
    let op = match m {
        M::Fadd | M::Faddp | M::Fiadd => 0,
        M::Fsub | M::Fsubp | M::Fisub => 1,
        M::Fsubr | M::Fsubrp | M::Fisubr => 2,
        M::Fmul | M::Fmulp | M::Fimul => 3,
        M::Fdiv | M::Fdivp | M::Fidiv => 4,
        _ => 5,
    };
    const TABLE: [[Kernel; 5]; 6] = [
        [
            host::add_st,
            host::add_m32,
            host::add_m64,
            host::add_i16,
            host::add_i32,
        ],
        [
            host::sub_st,
            host::sub_m32,
            host::sub_m64,
            host::sub_i16,
            host::sub_i32,
        ],
        [
            host::subr_st,
            host::subr_m32,
            host::subr_m64,
            host::subr_i16,
            host::subr_i32,
        ],
        [
            host::mul_st,
            host::mul_m32,
            host::mul_m64,
            host::mul_i16,
            host::mul_i32,
        ],
        [
            host::div_st,
            host::div_m32,
            host::div_m64,
            host::div_i16,
            host::div_i32,
        ],
        [
            host::divr_st,
            host::divr_m32,
            host::divr_m64,
            host::divr_i16,
            host::divr_i32,
        ],
    ];
    let form = match src {
        Src::St(_) => 0,
        Src::Mem {
            size: 4,
            int: false,
            ..
        } => 1,
        Src::Mem { int: false, .. } => 2,
        Src::Mem {
            size: 2, int: true, ..
        } => 3,
        Src::Mem { .. } => 4,
    };
    let a = cpu.fpu.st(dst).to_buf();
    let b = src_buf(cpu, src);
    let out = TABLE[op][form](cpu.fpu.fcw, cpu.fpu.fsw, &a, &b);
    // The kernel started from the guest's condition codes: its C0..C3 are
    // the hardware's, also when an unmasked exception stopped the operation
    // (which clears C1).
    cpu.fpu.set_cc(out.c_bits());
    if cpu.x87_raise(out.exc) {
        cpu.fpu.set_st(dst, F80::from_bytes(&out.r));
        if pop {
            cpu.fpu.pop();
        }
    }
    Ok(())
}

fn compare(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    let m = ins.mnemonic();
    let int = matches!(m, M::Ficom | M::Ficomp);
    let (_, src) = if m == M::Ftst {
        (0, Src::St(0))
    } else {
        operands(cpu, ins, int)?
    };
    let pops = match m {
        M::Fcomp | M::Fucomp | M::Ficomp | M::Fcomip | M::Fucomip => 1,
        M::Fcompp | M::Fucompp => 2,
        _ => 0,
    };
    let eflags = matches!(m, M::Fcomi | M::Fcomip | M::Fucomi | M::Fucomip);
    cpu.x87_note(ins);
    let unordered = sw::C3 | sw::C2 | sw::C0;
    // An unmasked invalid operation still sets the condition codes (to
    // unordered) but does not pop.
    let (cc, done) = if cpu.fpu.is_empty(0) || src_empty(cpu, src) {
        (unordered, cpu.x87_underflow())
    } else {
        let unordered_kind = matches!(
            m,
            M::Fucom | M::Fucomp | M::Fucompp | M::Fucomi | M::Fucomip
        );
        let k: Kernel = match (m, src) {
            (M::Ftst, _) => host::tst,
            (_, Src::St(_)) if unordered_kind => host::ucom_st,
            (_, Src::St(_)) => host::com_st,
            (
                _,
                Src::Mem {
                    size: 4,
                    int: false,
                    ..
                },
            ) => host::com_m32,
            (_, Src::Mem { int: false, .. }) => host::com_m64,
            (_, Src::Mem { size: 2, .. }) => host::com_i16,
            _ => host::com_i32,
        };
        let out = k(
            cpu.fpu.fcw,
            cpu.fpu.fsw,
            &cpu.fpu.st(0).to_buf(),
            &src_buf(cpu, src),
        );
        let done = cpu.x87_raise(out.exc);
        (out.sw_op & unordered, done)
    };
    if eflags {
        cpu.fpu.fsw &= !sw::C1;
        cpu.flags.set_arith(
            cc & sw::C0 != 0,
            cc & sw::C2 != 0,
            false,
            cc & sw::C3 != 0,
            false,
            false,
        );
    } else {
        cpu.fpu.set_cc(cc);
    }
    if done {
        for _ in 0..pops {
            cpu.fpu.pop();
        }
    }
    Ok(())
}

fn fxam(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    cpu.x87_note(ins);
    let v = cpu.fpu.st(0);
    let mut cc = if v.sign() { sw::C1 } else { 0 };
    if cpu.fpu.is_empty(0) {
        cc |= sw::C3 | sw::C0;
    } else {
        let (c3, c2, c0) = v.fxam_class();
        cc |=
            if c3 { sw::C3 } else { 0 } | if c2 { sw::C2 } else { 0 } | if c0 { sw::C0 } else { 0 };
    }
    cpu.fpu.set_cc(cc);
    Ok(())
}

fn sign_op(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    cpu.x87_note(ins);
    if cpu.fpu.is_empty(0) {
        if cpu.x87_underflow() {
            cpu.fpu.set_st(0, F80::INDEFINITE);
        }
        return Ok(());
    }
    let mut v = cpu.fpu.st(0);
    if ins.mnemonic() == M::Fchs {
        v.se ^= 0x8000;
    } else {
        v.se &= 0x7fff;
    }
    cpu.fpu.set_st(0, v);
    cpu.fpu.fsw &= !sw::C1;
    Ok(())
}

fn unary(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    cpu.x87_note(ins);
    if cpu.fpu.is_empty(0) {
        clear_c2_on_stack_fault(cpu, ins);
        if cpu.x87_underflow() {
            cpu.fpu.set_st(0, F80::INDEFINITE);
        }
        return Ok(());
    }
    let k: Kernel = match ins.mnemonic() {
        M::Fsqrt => host::sqrt,
        M::Frndint => host::rndint,
        M::F2xm1 => host::f2xm1,
        M::Fsin => host::sin,
        _ => host::cos,
    };
    let out = k(cpu.fpu.fcw, cpu.fpu.fsw, &cpu.fpu.st(0).to_buf(), &[0; 16]);
    cpu.fpu.set_cc(out.c_bits());
    if cpu.x87_raise(out.exc) {
        // FSIN/FCOS out of range (C2): the kernel left ST(0) unchanged.
        cpu.fpu.set_st(0, F80::from_bytes(&out.r));
    }
    Ok(())
}

/// FPTAN, FSINCOS, FXTRACT: ST(0) is replaced and a second value pushed.
fn two_results(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    cpu.x87_note(ins);
    if cpu.fpu.is_empty(0) || !cpu.fpu.is_empty(7) {
        clear_c2_on_stack_fault(cpu, ins);
        let masked = if cpu.fpu.is_empty(0) {
            cpu.x87_underflow()
        } else {
            cpu.x87_overflow()
        };
        if masked {
            cpu.fpu.set_st(0, F80::INDEFINITE);
            cpu.fpu.push(F80::INDEFINITE);
        }
        return Ok(());
    }
    let k: Kernel = match ins.mnemonic() {
        M::Fptan => host::ptan,
        M::Fsincos => host::sincos,
        _ => host::xtract,
    };
    let out = k(cpu.fpu.fcw, cpu.fpu.fsw, &cpu.fpu.st(0).to_buf(), &[0; 16]);
    cpu.fpu.set_cc(out.c_bits());
    if !cpu.x87_raise(out.exc) {
        return Ok(());
    }
    // The host pushed (TOP 7 -> 6) unless the operand was out of range
    // (C2): then nothing changes but C2.
    if out.top() == 6 {
        cpu.fpu.set_st(0, F80::from_bytes(&out.r));
        cpu.fpu.push(F80::from_bytes(&out.r2));
    }
    Ok(())
}

fn st01(cpu: &mut Cpu, ins: &Instruction, k: Kernel) -> Res<Option<F80>> {
    cpu.fpu_check()?;
    cpu.x87_note(ins);
    if cpu.fpu.is_empty(0) || cpu.fpu.is_empty(1) {
        clear_c2_on_stack_fault(cpu, ins);
        return Ok(if cpu.x87_underflow() {
            Some(F80::INDEFINITE)
        } else {
            None
        });
    }
    let out = k(
        cpu.fpu.fcw,
        cpu.fpu.fsw,
        &cpu.fpu.st(0).to_buf(),
        &cpu.fpu.st(1).to_buf(),
    );
    cpu.fpu.set_cc(out.c_bits());
    Ok(if cpu.x87_raise(out.exc) {
        Some(F80::from_bytes(&out.r))
    } else {
        None
    })
}

/// FSCALE, FPREM, FPREM1: ST(0) = f(ST(0), ST(1)).
fn with_st1(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let k: Kernel = match ins.mnemonic() {
        M::Fscale => host::scale,
        M::Fprem => host::prem,
        _ => host::prem1,
    };
    if let Some(v) = st01(cpu, ins, k)? {
        cpu.fpu.set_st(0, v);
    }
    Ok(())
}

/// FPATAN, FYL2X, FYL2XP1: ST(1) = f(ST(0), ST(1)), then pop.
fn with_st1_pop(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let k: Kernel = match ins.mnemonic() {
        M::Fpatan => host::patan,
        M::Fyl2x => host::yl2x,
        _ => host::yl2xp1,
    };
    if let Some(v) = st01(cpu, ins, k)? {
        cpu.fpu.set_st(1, v);
        cpu.fpu.pop();
    }
    Ok(())
}

/// A stack fault (underflow or overflow) in the instructions that define
/// C2 (FPREM/FPREM1 "incomplete", FSIN/FCOS/FSINCOS/FPTAN "out of range")
/// clears C2: the operation did not run, so it is neither incomplete nor
/// out of range (what the hardware reports).
fn clear_c2_on_stack_fault(cpu: &mut Cpu, ins: &Instruction) {
    if matches!(
        ins.mnemonic(),
        M::Fprem | M::Fprem1 | M::Fsin | M::Fcos | M::Fsincos | M::Fptan
    ) {
        cpu.fpu.fsw &= !sw::C2;
    }
}
