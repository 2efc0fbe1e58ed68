//! Differential tests of the decode-time 32-bit memory operand forms
//! (`cpu::addr32`): every specialised MOV/ALU/MOVZX/MOVSX/CMOV/LEA handler
//! against the generic handler of the same instruction, on two CPUs with the
//! same state, over every base / index / scale / displacement combination,
//! segment overrides, flat and non-flat segments (limits, bases,
//! expand-down, read-only, unusable, code), offsets that wrap past 4 GiB,
//! 16-bit address sizes and real mode. Results, faults, registers, flags
//! and the bytes at the accessed address must agree.

use iced_x86::{Code, Decoder, DecoderOptions, Encoder, Instruction, MemoryOperand, Register};
use kite_hypervisor::{FlatKind, Segment};

use super::test_support::{TestCpu, MEM_SIZE};
use super::{alu, data_move};
use crate::cpu::addr32::{self, BASE, BASE_INDEX, DISP, GENERIC, INDEX};
use crate::cpu::exec::{handler_for, Handler};
use crate::cpu::{Cpu, Res, Seg};

use super::test_support::Rng;

/// The other operand of a template: a register or an immediate.
#[derive(Clone, Copy)]
enum Other {
    Reg(Register),
    Imm(i64),
}

/// (code, the other operand, whether memory is operand 0).
const TEMPLATES: &[(Code, Other, bool)] = {
    use Other::*;
    use Register as R;
    &[
        (Code::Mov_r32_rm32, Reg(R::ECX), false),
        (Code::Mov_rm32_r32, Reg(R::EDX), true),
        (Code::Mov_rm32_imm32, Imm(0x1234_5678), true),
        (Code::Mov_rm16_imm16, Imm(0x1234), true),
        (Code::Mov_rm8_imm8, Imm(0x5a), true),
        (Code::Mov_r8_rm8, Reg(R::AH), false),
        (Code::Mov_r8_rm8, Reg(R::DL), false),
        (Code::Mov_rm8_r8, Reg(R::BH), true),
        (Code::Mov_r16_rm16, Reg(R::SI), false),
        (Code::Mov_rm16_r16, Reg(R::DI), true),
        (Code::Add_r32_rm32, Reg(R::EBX), false),
        (Code::Sub_r32_rm32, Reg(R::ESP), false),
        (Code::Cmp_r32_rm32, Reg(R::EAX), false),
        (Code::Cmp_rm32_r32, Reg(R::EAX), true),
        (Code::Add_rm32_r32, Reg(R::ESI), true),
        (Code::Test_rm32_r32, Reg(R::EBP), true),
        (Code::Sub_rm32_imm8, Imm(-3), true),
        (Code::Adc_rm32_imm32, Imm(0x7fff_0001), true),
        (Code::Cmp_rm32_imm8, Imm(5), true),
        (Code::And_rm16_imm16, Imm(0x0ff0), true),
        (Code::Cmp_rm8_imm8, Imm(0x80), true),
        (Code::Or_rm8_imm8, Imm(0x11), true),
        (Code::Xor_r8_rm8, Reg(R::CL), false),
        (Code::Sbb_r16_rm16, Reg(R::DX), false),
        (Code::Movzx_r32_rm8, Reg(R::ESI), false),
        (Code::Movzx_r32_rm16, Reg(R::EBX), false),
        (Code::Movsx_r32_rm8, Reg(R::EDI), false),
        (Code::Movsx_r32_rm16, Reg(R::ECX), false),
        (Code::Cmovne_r32_rm32, Reg(R::EBP), false),
        (Code::Cmovb_r32_rm32, Reg(R::EAX), false),
        (Code::Lea_r32_m, Reg(R::EAX), false),
        (Code::Lea_r32_m, Reg(R::ESP), false),
    ]
};

/// The generic handler of an instruction (what runs without the forms).
fn reference(ins: &Instruction) -> Handler {
    use iced_x86::Mnemonic as M;
    match ins.mnemonic() {
        M::Mov => data_move::mov,
        M::Add => alu::binop::<{ alu::ADD }>,
        M::Sub => alu::binop::<{ alu::SUB }>,
        M::Adc => alu::binop::<{ alu::ADC }>,
        M::Sbb => alu::binop::<{ alu::SBB }>,
        M::And => alu::binop::<{ alu::AND }>,
        M::Or => alu::binop::<{ alu::OR }>,
        M::Xor => alu::binop::<{ alu::XOR }>,
        M::Cmp => alu::binop::<{ alu::CMP }>,
        M::Test => alu::binop::<{ alu::TEST }>,
        M::Movzx => data_move::movzx,
        M::Movsx => data_move::movsx,
        M::Cmovne | M::Cmovb => data_move::cmov,
        M::Lea => data_move::lea,
        m => panic!("no reference handler for {m:?}"),
    }
}

/// `Cpu::mem_lin` with the form chosen at run time.
fn mem_lin(cpu: &Cpu, ins: &Instruction, form: u8, size: u32, write: bool) -> Res<u64> {
    match form {
        DISP => cpu.mem_lin::<DISP>(ins, size, write),
        BASE => cpu.mem_lin::<BASE>(ins, size, write),
        BASE_INDEX => cpu.mem_lin::<BASE_INDEX>(ins, size, write),
        INDEX => cpu.mem_lin::<INDEX>(ins, size, write),
        _ => cpu.mem_lin::<GENERIC>(ins, size, write),
    }
}

/// A random descriptor cache for a data segment register (or CS).
fn random_segment(rng: &mut Rng, cs: bool) -> Segment {
    let flat = Segment::flat(0x10, FlatKind::Data);
    if cs {
        let code = Segment::flat(8, FlatKind::Code32);
        return match rng.below(4) {
            0 => Segment {
                type_: 0x9, // execute-only
                ..code
            },
            1 => Segment {
                limit: 0xffff,
                g: false,
                ..code
            },
            _ => code,
        };
    }
    match rng.below(10) {
        0 => Segment {
            base: 0x1000,
            ..flat
        },
        1 => Segment {
            limit: 0xf_ffff,
            g: false,
            ..flat
        },
        2 => Segment {
            type_: 0x7, // expand-down, writable
            limit: 0x1fff,
            g: false,
            ..flat
        },
        3 => Segment {
            type_: 0x1, // read-only
            ..flat
        },
        4 => Segment {
            unusable: true,
            ..flat
        },
        5 => Segment {
            base: 0xffff_f000, // wraps at 4 GiB
            ..flat
        },
        _ => flat,
    }
}

/// A register value: mostly inside the test RAM, sometimes anywhere (with
/// junk in the upper half, which 32-bit addresses ignore).
fn random_reg(rng: &mut Rng) -> u64 {
    match rng.below(8) {
        0 => rng.next(),
        1 => 0xffff_ffff - rng.below(16),
        2 => (rng.next() << 32) | (0x2_0000 + rng.below(0x1_0000)),
        _ => 0x2_0000 + rng.below(0x4_0000),
    }
}

/// A memory operand: a random combination of base, index, scale,
/// displacement and segment override.
fn random_mem(rng: &mut Rng, addr16: bool) -> MemoryOperand {
    use Register as R;
    let seg = rng.pick(&[R::None, R::None, R::ES, R::CS, R::SS, R::DS, R::FS, R::GS]);
    if addr16 {
        let (base, index) = rng.pick(&[
            (R::BX, R::SI),
            (R::BX, R::DI),
            (R::BP, R::SI),
            (R::BP, R::DI),
            (R::SI, R::None),
            (R::DI, R::None),
            (R::BP, R::None),
            (R::BX, R::None),
            (R::None, R::None),
        ]);
        let disp = rng.pick(&[0i64, 0x10, -0x10, 0x7fff, -0x8000]);
        let disp = if base == R::None { disp & 0xffff } else { disp };
        let size = match (base, disp) {
            (R::None, _) => 2,
            (_, 0) => 0,
            _ => 1, // the encoder widens it as needed
        };
        return MemoryOperand::new(base, index, 1, disp, size, false, seg);
    }
    let gprs = [
        R::EAX,
        R::ECX,
        R::EDX,
        R::EBX,
        R::ESP,
        R::EBP,
        R::ESI,
        R::EDI,
    ];
    let base = if rng.below(5) == 0 {
        R::None
    } else {
        rng.pick(&gprs)
    };
    // ESP cannot be an index.
    let index = if rng.below(2) == 0 {
        R::None
    } else {
        rng.pick(&[R::EAX, R::ECX, R::EDX, R::EBX, R::EBP, R::ESI, R::EDI])
    };
    let scale = rng.pick(&[1u32, 2, 4, 8]);
    let disp = rng.pick(&[
        0i64,
        4,
        -4,
        0x7f,
        -0x80,
        0x2_0000,
        0x1234_5678,
        -0x1000,
        0xffff_fffc,
    ]);
    let disp = if base == R::None && index == R::None {
        disp & 0xffff_ffff
    } else {
        disp
    };
    let size = match (base, disp) {
        (R::None, _) => 4,
        (_, 0) => 0,
        _ => 1, // the encoder widens it as needed
    };
    MemoryOperand::new(base, index, scale, disp, size, false, seg)
}

/// Assemble `code` with the memory operand `mem` for `bits`-bit code and
/// decode it back as the engine does.
fn build(code: Code, other: Other, mem_first: bool, mem: MemoryOperand, bits: u32) -> Instruction {
    let ins = match (other, mem_first) {
        (Other::Reg(r), false) => Instruction::with2(code, r, mem),
        (Other::Reg(r), true) => Instruction::with2(code, mem, r),
        (Other::Imm(i), _) => Instruction::with2(code, mem, i as i32),
    }
    .expect("instruction");
    let mut enc = Encoder::new(bits);
    enc.encode(&ins, 0x1000).expect("encode");
    let bytes = enc.take_buffer();
    let d = Decoder::with_ip(bits, &bytes, 0x1000, DecoderOptions::NONE).decode();
    assert!(!d.is_invalid(), "{ins} did not decode");
    d
}

/// Set both CPUs to the same random state.
fn randomize(rng: &mut Rng, a: &mut TestCpu, b: &mut TestCpu, protected: bool) {
    let segs: Vec<Segment> = Seg::ALL
        .iter()
        .map(|&s| {
            if protected {
                random_segment(rng, s == Seg::Cs)
            } else {
                let mut r = Segment::real_mode(rng.below(0x3000) as u16, s == Seg::Cs);
                r.limit = if rng.below(3) == 0 {
                    0xffff_ffff
                } else {
                    0xffff
                };
                r
            }
        })
        .collect();
    let gprs: Vec<u64> = (0..16).map(|_| random_reg(rng)).collect();
    let flags = (rng.next() & 0x8d5) | 2;
    for t in [a, b] {
        let c = &mut t.cpu;
        c.gpr.copy_from_slice(&gprs);
        for s in Seg::ALL {
            c.seg[s as usize] = segs[s as usize];
        }
        c.refresh_seg_cache();
        c.flags.set_rflags(flags);
        c.pending = None;
        c.posted.clear();
    }
}

fn bytes_at(t: &TestCpu, lin: Res<u64>) -> Option<Vec<u8>> {
    match lin {
        Ok(l) if l + 16 <= MEM_SIZE as u64 => Some(t.read(l, 16)),
        _ => None,
    }
}

/// Run `cases` random cases of every template in `bits`-bit code,
/// `addr16` selecting 16-bit address sizes; returns how many cases had the
/// specialised form (so a change that stops choosing forms fails).
fn differential(bits: u32, addr16: bool, cases: usize, seed: u64) -> usize {
    let mut rng = Rng(seed);
    let mut a = TestCpu::new(bits);
    let mut b = TestCpu::new(bits);
    let pattern: Vec<u8> = (0..MEM_SIZE / 4).map(|i| (i * 7 + 3) as u8).collect();
    a.write(0, &pattern);
    b.write(0, &pattern);
    let mut specialised = 0;
    for &(code, other, mem_first) in TEMPLATES {
        for case in 0..cases {
            let mem = random_mem(&mut rng, addr16);
            let ins = build(code, other, mem_first, mem, bits);
            let form = addr32::form(&ins);
            assert_eq!(
                form == GENERIC,
                addr16,
                "{ins}: form {form} with a {}-bit address",
                if addr16 { 16 } else { 32 }
            );
            if form != GENERIC {
                specialised += 1;
            }
            randomize(&mut rng, &mut a, &mut b, bits == 32);
            let what = format!("{ins} ({code:?}) case {case}");
            // The linear address alone, for reads and writes.
            let size = ins.memory_size().size().max(1) as u32;
            for write in [false, true] {
                assert_eq!(
                    mem_lin(&a.cpu, &ins, form, size, write),
                    mem_lin(&b.cpu, &ins, GENERIC, size, write),
                    "{what}: linear address (write {write})"
                );
            }
            let write = mem_first
                && !matches!(
                    ins.mnemonic(),
                    iced_x86::Mnemonic::Cmp | iced_x86::Mnemonic::Test
                );
            let lin_fast = mem_lin(&a.cpu, &ins, form, size, write);
            let lin_ref = mem_lin(&b.cpu, &ins, GENERIC, size, write);
            let h = handler_for(&ins);
            let r = reference(&ins);
            for t in [&mut a, &mut b] {
                t.cpu.rip = 0x1000;
                t.cpu.next_rip = 0x1000 + ins.len() as u64;
            }
            let ra = h(&mut a.cpu, &ins);
            let rb = r(&mut b.cpu, &ins);
            assert_eq!(ra, rb, "{what}: result");
            assert_eq!(a.cpu.gpr, b.cpu.gpr, "{what}: registers");
            assert_eq!(a.cpu.flags.rflags(), b.cpu.flags.rflags(), "{what}: flags");
            assert_eq!(a.cpu.pending, b.cpu.pending, "{what}: exits");
            assert_eq!(a.cpu.posted, b.cpu.posted, "{what}: posted writes");
            for lin in [lin_fast, lin_ref] {
                assert_eq!(bytes_at(&a, lin), bytes_at(&b, lin), "{what}: memory");
            }
        }
    }
    specialised
}

#[test]
fn protected_mode_32_bit_forms_match_the_generic_path() {
    let n = differential(32, false, 300, 0x5eed_0001);
    assert_eq!(n, TEMPLATES.len() * 300);
}

#[test]
fn sixteen_bit_address_size_keeps_the_generic_path() {
    // 32-bit code with an address-size prefix: no form, same results.
    assert_eq!(differential(32, true, 100, 0x5eed_0002), 0);
}

#[test]
fn real_mode_with_32_bit_addresses_matches_the_generic_path() {
    // 16-bit code with an address-size prefix: the forms apply, the
    // segments are never flat (real mode), so every access takes the
    // exact checks.
    let n = differential(16, false, 100, 0x5eed_0003);
    assert_eq!(n, TEMPLATES.len() * 100);
}

#[test]
fn flat_forms_fault_at_the_4_gib_wrap_and_on_non_flat_segments() {
    use kite_hypervisor::x86;
    let gp = crate::cpu::exception(x86::GP, Some(0));
    let ss = crate::cpu::exception(x86::SS, Some(0));
    let mut t = TestCpu::new(32);
    let mem = MemoryOperand::new(
        Register::EBX,
        Register::None,
        1,
        2,
        1,
        false,
        Register::None,
    );
    let ins = build(
        Code::Mov_r32_rm32,
        Other::Reg(Register::EAX),
        false,
        mem,
        32,
    );
    assert_eq!(addr32::form(&ins), BASE);
    t.cpu.gpr[3] = 0xffff_fffa; // + 2 = 0xffff_fffc: the last dword
    assert_eq!(t.cpu.mem_lin::<BASE>(&ins, 4, false), Ok(0xffff_fffc));
    t.cpu.gpr[3] = 0xffff_fffb; // one byte past 4 GiB
    assert_eq!(t.cpu.mem_lin::<BASE>(&ins, 4, false), Err(gp));
    // The offset wraps at 4 GiB: EBX + 2 = 1.
    t.cpu.gpr[3] = 0xffff_ffff;
    assert_eq!(t.cpu.mem_lin::<BASE>(&ins, 4, false), Ok(1));
    // EBP-based: SS, whose limit faults with #SS(0).
    let mem = MemoryOperand::new(
        Register::EBP,
        Register::None,
        1,
        0,
        1,
        false,
        Register::None,
    );
    let ins = build(Code::Mov_rm32_r32, Other::Reg(Register::EAX), true, mem, 32);
    t.cpu.seg[Seg::Ss as usize].limit = 0xffff;
    t.cpu.seg[Seg::Ss as usize].g = false;
    t.cpu.refresh_seg_cache();
    t.cpu.gpr[5] = 0xfffd;
    assert_eq!(t.cpu.mem_lin::<BASE>(&ins, 4, true), Err(ss));
    t.cpu.gpr[5] = 0xfffc;
    assert_eq!(t.cpu.mem_lin::<BASE>(&ins, 4, true), Ok(0xfffc));
    // A segment base is added when the segment is not flat.
    t.cpu.seg[Seg::Ss as usize].base = 0x10_0000;
    t.cpu.refresh_seg_cache();
    assert_eq!(t.cpu.mem_lin::<BASE>(&ins, 4, true), Ok(0x10_fffc));
}

#[test]
fn only_32_bit_addresses_outside_64_bit_code_get_a_form() {
    let ebx = MemoryOperand::new(
        Register::EBX,
        Register::None,
        1,
        0,
        0,
        false,
        Register::None,
    );
    let esi8 = MemoryOperand::new(
        Register::None,
        Register::ESI,
        8,
        0x40,
        4,
        false,
        Register::FS,
    );
    let bx = MemoryOperand::new(Register::BX, Register::SI, 1, 0, 0, false, Register::None);
    let abs16 = MemoryOperand::new(
        Register::None,
        Register::None,
        1,
        0x1234,
        2,
        false,
        Register::None,
    );
    let abs32 = MemoryOperand::with_base_displ_size(Register::None, 0x12_3456, 4);
    let load = |m, bits| {
        build(
            Code::Mov_r32_rm32,
            Other::Reg(Register::EAX),
            false,
            m,
            bits,
        )
    };
    assert_eq!(addr32::form(&load(ebx, 32)), BASE);
    assert_eq!(addr32::form(&load(esi8, 32)), INDEX);
    assert_eq!(addr32::form(&load(abs32, 32)), DISP);
    assert_eq!(addr32::form(&load(ebx, 16)), BASE);
    assert_eq!(addr32::form(&load(bx, 32)), GENERIC);
    assert_eq!(addr32::form(&load(abs16, 16)), GENERIC);
    // 64-bit code keeps its own forms (`flat64_form`), even with a 32-bit
    // address size.
    assert_eq!(addr32::form(&load(ebx, 64)), GENERIC);
    // No memory operand: no form.
    let rr = Instruction::with2(Code::Mov_r32_rm32, Register::EAX, Register::ECX).unwrap();
    assert_eq!(addr32::form(&rr), GENERIC);
}
