//! Differential test of the emu engine's CPU against the host CPU, for every
//! user-mode instruction form the emu advertises (see `difftest/`).
//!
//! `cargo test -p kite-engine-emu --test differential` runs the CI set: a
//! fixed seed and `CI_CASES` random cases per form. Environment:
//! - `KITE_DIFF_CASES=N`: cases per form (the larger set: e.g. 5000);
//! - `KITE_DIFF_SEED=S`: another seed (decimal or 0x-hex);
//! - `KITE_DIFF_FILTER=text`: only forms whose name contains `text`
//!   (names are iced `Code`s, `/r` or `/m` for the r/m operand, e.g.
//!   `Adc_rm32_imm8/m`, `rep+Movsb_m8_m8`, `lock+Xadd_rm32_r32/m`);
//! - `KITE_DIFF_REPORT=path`: also write the results table there (of the
//!   interpreter's run);
//! - `KITE_DIFF_TIER=interp|auto|all`: the tier `every_form_matches_the_host`
//!   runs on (`every_form_matches_the_host_on_the_jit_tier` always runs on
//!   `all`: every case's block translated before it runs).
//!
//! Extensions covered (`forms::Ext`): the base x86-64 integer set, x87,
//! CMOV, CMPXCHG8B, CMPXCHG16B, MOVBE, POPCNT, LZCNT, BMI1, BMI2, ADX,
//! CLFLUSH, MMX, SSE, SSE2, SSE3, SSSE3, SSE4.1, SSE4.2. A form runs only if
//! the emu's CPUID advertises its extension (and the host has it); the
//! others are listed as SKIP(cpuid). Forms that do not exist in 64-bit mode
//! (BCD, PUSHA/POPA, BOUND, ARPL, SALC, the short INC/DEC, 32-bit branches)
//! run in 32-bit compatibility mode (names end in `[32]`): natively through
//! a far jump to Linux's 32-bit user code segment, on the emu with a 32-bit
//! CS (their upper GPR halves are not compared).

mod difftest;

use difftest::compare::{self, Verdict};
use difftest::forms::{self, Ext, Form, RepPrefix};
use difftest::gen::Case;
use difftest::{
    emu, native, CpuState, Outcome, Settings, DATA_ADDR, DATA_SIZE, END_ADDR, TEST_ADDR,
};
use iced_x86::code_asm::*;
use iced_x86::{Code, Decoder, DecoderOptions, Mnemonic};
use kite_engine_emu::jit::Tier;

/// Assemble test code at TEST_ADDR, ending with `jmp END_ADDR`.
fn code(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.jmp(END_ADDR).unwrap();
    a.assemble(TEST_ADDR).unwrap()
}

/// A case from hand-written code and inputs.
fn manual_case(bytes: Vec<u8>, state: CpuState) -> Case {
    let ins = Decoder::with_ip(64, &bytes, TEST_ADDR, DecoderOptions::NONE).decode();
    let mut data = Box::new([0u8; DATA_SIZE]);
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    Case {
        bits: 64,
        code: bytes,
        ins,
        state,
        data,
        flags_undefined: 0,
        fsw_undefined: 0,
        mem: None,
        result_undefined: false,
        upper_undefined: 0,
    }
}

fn run_native(cases: &[Case]) -> Vec<difftest::Result> {
    difftest::run_native(&native::Stubs::new(), cases)
}

fn base_state() -> CpuState {
    let mut s = CpuState::default();
    for (i, g) in s.gpr.iter_mut().enumerate() {
        *g = 0x1111_1111_1111_1111u64.wrapping_mul(i as u64 + 1);
    }
    s.gpr[4] = DATA_ADDR + 0x800;
    s.set_fcw(0x37f);
    s.set_mxcsr(0x1f80);
    for i in 0..16 {
        s.set_xmm(
            i,
            0x0123_4567_89ab_cdef_0011_2233_4455_6677u128.rotate_left(8 * i as u32),
        );
    }
    s
}

/// The native runner loads and stores every register: known answers,
/// exceptions mapped to vectors, and cases after a fault still run.
#[test]
fn native_runner_known_answers() {
    let mut s = base_state();
    s.gpr[0] = u64::MAX; // rax
    s.gpr[3] = 2; // rbx
    s.rflags = 0x202 | 0x8d5; // all arith flags set
    let add = manual_case(code(|a| a.add(rax, rbx)), s);
    let mut s2 = base_state();
    s2.rflags = 0x202 | 0x400; // DF
    let push = manual_case(code(|a| a.push(r13)), s2);
    let sse = manual_case(code(|a| a.paddd(xmm3, xmm14)), base_state());
    let ud2 = manual_case(code(|a| a.ud2()), base_state());
    let mut z = base_state();
    z.gpr[1] = 0;
    let de = manual_case(code(|a| a.div(rcx)), z);
    let mut nc = base_state();
    nc.gpr[3] = 0x8000_0000_0000_0000;
    let gp = manual_case(code(|a| a.mov(rax, qword_ptr(rbx))), nc);
    let mut um = base_state();
    um.gpr[3] = 0x5000_0000;
    let pf = manual_case(code(|a| a.mov(rax, qword_ptr(rbx))), um);
    let cases = vec![add, ud2, push, de, sse, gp, pf];
    let r = run_native(&cases);

    assert_eq!(r[0].outcome, Outcome::Done);
    let o = &r[0].state;
    assert_eq!(o.gpr[0], 1, "rax = -1 + 2");
    assert_eq!(o.rflags & 0x8d5, 0x11, "CF and AF set, the others clear");
    for i in 1..16 {
        assert_eq!(o.gpr[i], cases[0].state.gpr[i], "gpr {i} unchanged");
    }
    for i in 0..16 {
        assert_eq!(o.xmm(i), cases[0].state.xmm(i), "xmm{i} unchanged");
    }
    assert_eq!(o.mxcsr(), 0x1f80);
    assert_eq!(&r[0].data[..], &cases[0].data[..]);

    assert_eq!(r[1].outcome, Outcome::Exception(6), "ud2 is #UD");

    assert_eq!(r[2].outcome, Outcome::Done, "a case after a fault runs");
    let o = &r[2].state;
    assert_eq!(o.gpr[4], DATA_ADDR + 0x800 - 8);
    assert_eq!(o.rflags & 0x400, 0x400, "DF kept");
    let pushed = u64::from_le_bytes(r[2].data[0x7f8..0x800].try_into().unwrap());
    assert_eq!(pushed, cases[2].state.gpr[13]);

    assert_eq!(r[3].outcome, Outcome::Exception(0), "div by zero is #DE");

    assert_eq!(r[4].outcome, Outcome::Done);
    let (a, b) = (cases[4].state.xmm(3), cases[4].state.xmm(14));
    let want = (0..4).fold(0u128, |acc, l| {
        let x = (a >> (32 * l)) as u32;
        let y = (b >> (32 * l)) as u32;
        acc | (u128::from(x.wrapping_add(y)) << (32 * l))
    });
    assert_eq!(r[4].state.xmm(3), want, "paddd");

    assert_eq!(r[5].outcome, Outcome::Exception(13), "non-canonical is #GP");
    assert_eq!(r[6].outcome, Outcome::Exception(14), "unmapped is #PF");
}

/// A case that never ends natively is reported (not hung on), and the
/// cases after it still run.
#[test]
fn native_runner_survives_a_hanging_case() {
    let mut spin = manual_case(vec![0xeb, 0xfe], base_state()); // jmp $
    spin.code.extend_from_slice(&code(|a| a.nop())[..]);
    let mut s = base_state();
    s.gpr[0] = 5;
    s.gpr[3] = 6;
    let add = manual_case(code(|a| a.add(rax, rbx)), s);
    let r = run_native(&[spin, add]);
    assert!(
        matches!(&r[0].outcome, Outcome::Broken(why) if why.contains("CPU time")),
        "{:?}",
        r[0].outcome
    );
    assert_eq!(r[1].outcome, Outcome::Done);
    assert_eq!(r[1].state.gpr[0], 11);
}

/// 32-bit (compatibility mode) cases: the far jumps in and out, and a
/// fault in 32-bit code.
#[test]
fn native_runner_runs_compatibility_mode() {
    let code32 = |f: &dyn Fn(&mut CodeAssembler) -> Result<(), IcedError>| {
        let mut a = CodeAssembler::new(32).unwrap();
        f(&mut a).unwrap();
        a.jmp(difftest::END32_ADDR).unwrap();
        a.assemble(TEST_ADDR).unwrap()
    };
    let mut s = base_state();
    s.gpr[0] = 0xdead_beef_0000_00ae; // AL = 0x79 + 0x35 (BCD)
    s.rflags = 0x202;
    let mut daa = manual_case(code32(&|a| a.daa()), s);
    daa.bits = 32;
    let mut ud = manual_case(code32(&|a| a.ud2()), base_state());
    ud.bits = 32;
    let r = run_native(&[daa.clone(), ud, daa.clone()]);
    assert_eq!(r[0].outcome, Outcome::Done);
    assert_eq!(
        r[0].state.gpr[0] & 0xffff_ffff,
        0x14,
        "DAA: 0x79 + 0x35 = 114"
    );
    assert_eq!(r[0].state.rflags & 0x11, 0x11, "CF and AF set");
    assert_eq!(r[1].outcome, Outcome::Exception(6));
    assert_eq!(
        r[2].outcome,
        Outcome::Done,
        "64-bit stubs work after a 32-bit fault"
    );
    // And on the emu.
    let mut e = emu::EmuRunner::new();
    let er = e.run_one(32, &daa.code, &daa.state, &daa.data);
    assert!(
        matches!(er.outcome, Outcome::Done | Outcome::Exception(6)),
        "{:?}",
        er.outcome
    );
}

/// The generator's double -> 80-bit conversion (used for x87 inputs)
/// agrees with the host's FLD m64fp.
#[test]
fn f64_to_f80_matches_the_host() {
    let values: [u64; 8] = [
        1.0f64.to_bits(),
        (-2.5f64).to_bits(),
        0x0000_0000_0000_0001, // smallest denormal
        0x000f_ffff_ffff_ffff, // largest denormal
        0x8000_0000_0000_0000,
        0x7ff0_0000_0000_0000,
        0xfff8_0000_0000_0001, // QNaN with payload
        0x7fef_ffff_ffff_ffff,
    ];
    let cases: Vec<Case> = values
        .iter()
        .map(|&v| {
            let mut s = base_state();
            s.set_fsw(0);
            s.set_ftw(0);
            let mut c = manual_case(code(|a| a.fld(qword_ptr(DATA_ADDR + 0x100))), s);
            c.data[0x100..0x108].copy_from_slice(&v.to_le_bytes());
            c
        })
        .collect();
    let r = run_native(&cases);
    for (v, r) in values.iter().zip(r.iter()) {
        assert_eq!(r.outcome, Outcome::Done);
        assert_eq!(r.state.st(0), difftest::gen::f64_to_f80(*v), "{v:#x}");
    }
}

/// Running the same random cases twice natively gives identical results
/// (the prologue/epilogue leak no host state into the results).
#[test]
fn native_runner_is_deterministic() {
    let all = forms::all();
    let names = [
        "Add_rm64_r64/m",
        "Addps_xmm_xmmm128/m",
        "Fadd_st0_sti",
        "Push_r64",
        "Div_rm64/r",
        "rep+Movsb_m8_m8",
        "Cmpxchg16b_m128",
        "Pshufb_xmm_xmmm128/r",
    ];
    let mut cases = Vec::new();
    for n in names {
        let f = all
            .iter()
            .find(|f| f.name == n)
            .unwrap_or_else(|| panic!("form {n} exists"));
        cases.extend(difftest::cases_for(f, 64, 7).0);
    }
    let a = run_native(&cases);
    let b = run_native(&cases);
    let mut done = 0;
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        assert_eq!(
            x.outcome,
            y.outcome,
            "case {i}: {}",
            compare::describe(&cases[i])
        );
        if x.outcome == Outcome::Done {
            done += 1;
            assert!(
                x.state == y.state,
                "case {i} state: {}",
                compare::describe(&cases[i])
            );
            assert_eq!(&x.data[..], &y.data[..], "case {i} data");
        }
        assert!(!matches!(x.outcome, Outcome::Broken(_)), "{:?}", x.outcome);
    }
    assert!(
        done > cases.len() / 2,
        "most cases complete ({done}/{})",
        cases.len()
    );
}

/// Memory operands take every addressing form (base/index/scale/disp,
/// RIP-relative, absolute disp32, 32-bit addressing in 64-bit mode) and
/// the native side reaches the data page with all of them.
#[test]
fn memory_operands_use_every_addressing_form() {
    let all = forms::all();
    let form = all.iter().find(|f| f.name == "Mov_r64_rm64/m").unwrap();
    let (cases, _) = difftest::cases_for(form, 400, 11);
    let host = run_native(&cases);
    let (mut rip, mut abs, mut a32, mut sib) = (0, 0, 0, 0);
    for (c, h) in cases.iter().zip(host.iter()) {
        assert_eq!(h.outcome, Outcome::Done, "{}", compare::describe(c));
        let (off, _) = c.mem.unwrap();
        let want = u64::from_le_bytes(c.data[off..off + 8].try_into().unwrap());
        let dst = c.ins.op0_register().number();
        assert_eq!(h.state.gpr[dst], want, "{}", compare::describe(c));
        let base = c.ins.memory_base();
        if base == iced_x86::Register::RIP {
            rip += 1;
        } else if base == iced_x86::Register::None {
            abs += 1;
        } else if base.size() == 4 {
            a32 += 1;
        }
        if c.ins.memory_index() != iced_x86::Register::None {
            sib += 1;
        }
    }
    assert!(
        rip > 10 && abs > 5 && a32 > 10 && sib > 50,
        "{rip} {abs} {a32} {sib}"
    );
}

/// String instructions run with 64-bit and 32-bit (67h) addressing, REP
/// counts and both directions, and complete natively.
#[test]
fn string_cases_cover_address_sizes_and_directions() {
    let all = forms::all();
    let form = all.iter().find(|f| f.name == "rep+Movsq_m64_m64").unwrap();
    let (cases, _) = difftest::cases_for(form, 200, 5);
    let host = run_native(&cases);
    let a32 = cases
        .iter()
        .filter(|c| c.ins.op0_kind() == iced_x86::OpKind::MemoryESEDI)
        .count();
    let down = cases.iter().filter(|c| c.state.rflags & 0x400 != 0).count();
    assert!(a32 > 20 && a32 < 180, "{a32} with 67h");
    assert!(down > 50 && down < 150, "{down} with DF=1");
    for (c, h) in cases.iter().zip(host.iter()) {
        assert_eq!(h.outcome, Outcome::Done, "{}", compare::describe(c));
        let count = if c.ins.op0_kind() == iced_x86::OpKind::MemoryESEDI {
            c.state.gpr[1] & 0xffff_ffff
        } else {
            c.state.gpr[1]
        };
        assert_eq!(h.state.gpr[1] & 0xffff_ffff, 0, "RCX counts down to 0");
        let step = if c.state.rflags & 0x400 != 0 {
            0u64.wrapping_sub(8)
        } else {
            8
        };
        let end = (c.state.gpr[7] & 0xffff_ffff).wrapping_add(count.wrapping_mul(step));
        assert_eq!(h.state.gpr[7] & 0xffff_ffff, end & 0xffff_ffff);
    }
}

/// The comparison finds a difference in any compared field, and ignores
/// the flags the SDM leaves undefined.
#[test]
fn comparison_detects_differences() {
    let all = forms::all();
    let form = all.iter().find(|f| f.name == "Imul_r64_rm64/r").unwrap();
    let (cases, _) = difftest::cases_for(form, 8, 3);
    let host = run_native(&cases);
    let (case, h) = (&cases[0], &host[0]);
    assert_eq!(h.outcome, Outcome::Done);
    assert_eq!(compare::compare(form, case, h, h), Verdict::Pass);

    let mut e = h.clone();
    e.state.gpr[9] ^= 1 << 40;
    assert!(
        matches!(compare::compare(form, case, h, &e), Verdict::Mismatch(t) if t.contains("r9:"))
    );
    let mut e = h.clone();
    e.data[100] ^= 1;
    assert!(
        matches!(compare::compare(form, case, h, &e), Verdict::Mismatch(t) if t.contains("memory"))
    );
    let mut e = h.clone();
    e.state.set_xmm(7, e.state.xmm(7) ^ 1);
    assert!(
        matches!(compare::compare(form, case, h, &e), Verdict::Mismatch(t) if t.contains("xmm7"))
    );
    let mut e = h.clone();
    e.state.set_mxcsr(e.state.mxcsr() ^ 1);
    assert!(
        matches!(compare::compare(form, case, h, &e), Verdict::Mismatch(t) if t.contains("mxcsr"))
    );
    // IMUL leaves SF, ZF, AF, PF undefined; CF and OF are defined.
    assert_ne!(case.flags_undefined & 0x80, 0, "SF undefined after IMUL");
    let mut e = h.clone();
    e.state.rflags ^= 0x80;
    assert_eq!(compare::compare(form, case, h, &e), Verdict::Pass);
    let mut e = h.clone();
    e.state.rflags ^= 0x1;
    assert!(
        matches!(compare::compare(form, case, h, &e), Verdict::Mismatch(t) if t.contains("rflags"))
    );
    // #UD from the emu where the host ran it: unimplemented.
    let mut e = h.clone();
    e.outcome = Outcome::Exception(6);
    assert!(matches!(
        compare::compare(form, case, h, &e),
        Verdict::Unimplemented(_)
    ));
    let mut e = h.clone();
    e.outcome = Outcome::Exception(13);
    assert!(matches!(
        compare::compare(form, case, h, &e),
        Verdict::Mismatch(_)
    ));
}

/// The emu runner: a case through the API, and an exception.
#[test]
fn emu_runner_runs_a_case_and_reports_exceptions() {
    let mut s = base_state();
    s.gpr[0] = 40;
    s.gpr[3] = 2;
    let add = manual_case(code(|a| a.add(rax, rbx)), s);
    let mut e = emu::EmuRunner::new();
    let r = e.run_one(64, &add.code, &add.state, &add.data);
    assert_eq!(r.outcome, Outcome::Done);
    assert_eq!(r.state.gpr[0], 42);
    assert_eq!(r.state.gpr[3], 2);
    assert_eq!(r.state.xmm(5), add.state.xmm(5));
    let mut um = base_state();
    um.gpr[3] = 0x5000_0000;
    let pf = manual_case(code(|a| a.mov(rax, qword_ptr(rbx))), um);
    let r = e.run_one(64, &pf.code, &pf.state, &pf.data);
    assert_eq!(r.outcome, Outcome::Exception(14), "unmapped is #PF");
    // And the runner recovers for the next case.
    let r = e.run_one(64, &add.code, &add.state, &add.data);
    assert_eq!(r.state.gpr[0], 42);
}

/// The forms list covers every extension and the instruction kinds the
/// suite promises.
#[test]
fn forms_cover_the_promised_instruction_set() {
    let all = forms::all();
    for ext in [
        Ext::Base,
        Ext::X87,
        Ext::Cmov,
        Ext::Cx8,
        Ext::Cx16,
        Ext::Movbe,
        Ext::Popcnt,
        Ext::Lzcnt,
        Ext::Bmi1,
        Ext::Mmx,
        Ext::Sse,
        Ext::Sse2,
        Ext::Sse3,
        Ext::Ssse3,
        Ext::Sse41,
        Ext::Sse42,
    ] {
        let n = all.iter().filter(|f| f.ext() == ext).count();
        assert!(n > 0, "no forms for {ext:?}");
    }
    let has = |m: Mnemonic| all.iter().any(|f| f.code.mnemonic() == m);
    use Mnemonic as M;
    for m in [
        M::Add,
        M::Adc,
        M::Sub,
        M::Sbb,
        M::And,
        M::Or,
        M::Xor,
        M::Cmp,
        M::Test,
        M::Inc,
        M::Dec,
        M::Neg,
        M::Not,
        M::Shl,
        M::Shr,
        M::Sar,
        M::Rol,
        M::Ror,
        M::Rcl,
        M::Rcr,
        M::Shld,
        M::Shrd,
        M::Mul,
        M::Imul,
        M::Div,
        M::Idiv,
        M::Bt,
        M::Bts,
        M::Btr,
        M::Btc,
        M::Bsf,
        M::Bsr,
        M::Popcnt,
        M::Lzcnt,
        M::Tzcnt,
        M::Cmovne,
        M::Setb,
        M::Je,
        M::Jrcxz,
        M::Loop,
        M::Bswap,
        M::Movbe,
        M::Xchg,
        M::Xadd,
        M::Cmpxchg,
        M::Cmpxchg8b,
        M::Cmpxchg16b,
        M::Movsb,
        M::Stosq,
        M::Cmpsb,
        M::Scasw,
        M::Lodsd,
        M::Lea,
        M::Movzx,
        M::Movsx,
        M::Movsxd,
        M::Cbw,
        M::Cwde,
        M::Cdqe,
        M::Cwd,
        M::Cdq,
        M::Cqo,
        M::Lahf,
        M::Sahf,
        M::Enter,
        M::Leave,
        M::Push,
        M::Pop,
        M::Pushfq,
        M::Popfq,
        M::Call,
        M::Ret,
        M::Xlatb,
        M::Fld,
        M::Fadd,
        M::Fmul,
        M::Fdiv,
        M::Fstp,
        M::Fnstsw,
        M::Fcomi,
        M::Fsin,
        M::Paddb,
        M::Addps,
        M::Addpd,
        M::Haddps,
        M::Pshufb,
        M::Pblendvb,
        M::Pcmpistri,
        M::Crc32,
        M::Ldmxcsr,
        M::Cvttsd2si,
        M::Movdqa,
        M::Ud2,
    ] {
        assert!(has(m), "no form for {m:?}");
    }
    assert!(all
        .iter()
        .any(|f| f.rep == RepPrefix::Rep && f.code == Code::Movsq_m64_m64));
    assert!(all
        .iter()
        .any(|f| f.rep == RepPrefix::Repne && f.code == Code::Scasb_AL_m8));
    assert!(all
        .iter()
        .any(|f| f.lock && f.code == Code::Cmpxchg16b_m128));
    assert!(all.iter().any(|f| f.lock && f.code == Code::Xadd_rm32_r32));
    let has32 = |m: Mnemonic| all.iter().any(|f| f.bits == 32 && f.code.mnemonic() == m);
    for m in [
        M::Daa,
        M::Das,
        M::Aaa,
        M::Aas,
        M::Aam,
        M::Aad,
        M::Pushad,
        M::Popad,
        M::Bound,
    ] {
        assert!(has32(m), "no 32-bit form for {m:?}");
    }
    // Every form can be generated.
    let nogen: Vec<&str> = all
        .iter()
        .filter(|f| difftest::cases_for(f, 4, 1).0.is_empty())
        .map(|f| f.name.as_str())
        .collect();
    assert!(nogen.is_empty(), "forms without cases: {nogen:?}");
}

/// The instructions the emu implements from the start (MOV, ADD) match the
/// host in every form: the harness end to end.
#[test]
fn starter_instructions_match_the_host() {
    starter_instructions_on(Tier::Interp);
}

/// The same with every block translated by the code-generating tier.
#[test]
fn starter_instructions_match_the_host_on_the_jit_tier() {
    starter_instructions_on(Tier::All);
}

fn starter_instructions_on(tier: Tier) {
    let forms: Vec<Form> = forms::all()
        .into_iter()
        .filter(|f| matches!(f.code.mnemonic(), Mnemonic::Mov | Mnemonic::Add))
        .collect();
    assert!(forms.len() > 30, "{} MOV/ADD forms", forms.len());
    let settings = Settings {
        cases: 300,
        seed: difftest::CI_SEED,
        filter: None,
        tier,
    };
    let reports = difftest::run_forms(&forms, &settings);
    let table = compare::table(&reports);
    println!("{table}");
    let bad: Vec<_> = reports.iter().filter(|r| r.failed()).collect();
    for r in &bad {
        for e in &r.examples {
            println!("{e}\n");
        }
    }
    assert!(
        bad.is_empty(),
        "{} MOV/ADD forms differ:\n{table}",
        bad.len()
    );
    let exercised: usize = reports.iter().map(|r| r.pass).sum();
    let total: usize = reports.iter().map(|r| r.cases).sum();
    assert!(
        exercised * 10 > total * 9,
        "most cases complete ({exercised}/{total})"
    );
}

/// Every advertised form matches the host: the full differential test.
#[test]
fn every_form_matches_the_host() {
    every_form_on(Settings::from_env());
}

/// The full differential test with every block translated by the
/// code-generating tier (native templates and handler calls alike).
#[test]
fn every_form_matches_the_host_on_the_jit_tier() {
    every_form_on(Settings {
        tier: Tier::All,
        ..Settings::from_env()
    });
}

fn every_form_on(settings: Settings) {
    let forms = forms::all();
    let t0 = std::time::Instant::now();
    let reports = difftest::run_forms(&forms, &settings);
    let table = compare::table(&reports);
    println!("{table}");
    println!(
        "{} forms, {} cases per form, seed {:#x}, tier {:?}, {:.1} s",
        reports.len(),
        settings.cases,
        settings.seed,
        settings.tier,
        t0.elapsed().as_secs_f64()
    );
    let report = std::env::var("KITE_DIFF_REPORT").ok();
    if let Some(path) = report.filter(|_| settings.tier == Tier::Interp) {
        let mut text = table.clone();
        for r in reports.iter().filter(|r| r.failed()) {
            for e in &r.examples {
                text.push_str(&format!("\n{e}\n"));
            }
        }
        if let Err(e) = std::fs::write(&path, text) {
            println!("cannot write {path}: {e}");
        }
    }
    let bad: Vec<_> = reports.iter().filter(|r| r.failed()).collect();
    for r in bad.iter().take(40) {
        for e in &r.examples {
            println!("{e}\n");
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} forms differ from the host or are unimplemented (table above)",
        bad.len(),
        reports.len()
    );
}
