//! Random test cases for a form: the operands (registers, memory operands
//! pointing into the data page through a random base/index/displacement or
//! RIP-relative, immediates), the register/flag/FPU inputs, the data page,
//! and per-instruction adjustments that make the interesting paths likely
//! (DIV without #DE most of the time, CMPXCHG with equal operands half the
//! time, shift counts around the operand size, BT offsets inside the page...).

use iced_x86::{
    Code, Decoder, DecoderOptions, Encoder, Instruction, MemorySize, Mnemonic, OpCodeOperandKind,
    OpKind, Register,
};

use super::forms::{Form, RepPrefix};
use super::{CpuState, Rng, CODE_MAX, DATA_ADDR, DATA_SIZE, END32_ADDR, END_ADDR, TEST_ADDR};

/// The marker a not-taken branch leaves in RAX.
pub const BRANCH_MARKER: u64 = 0x5a5a_0f0f_1234_8765;

/// One test case.
#[derive(Clone)]
pub struct Case {
    /// 64 or 32 (compatibility mode).
    pub bits: u32,
    /// The test code: the instruction, a marker move for branches, `jmp END_ADDR`.
    pub code: Vec<u8>,
    /// The instruction under test (as decoded from `code`).
    pub ins: Instruction,
    pub state: CpuState,
    pub data: Box<[u8; DATA_SIZE]>,
    /// RFLAGS bits the SDM leaves undefined after this instruction.
    pub flags_undefined: u64,
    /// x87 status word condition bits (C0-C3) the SDM leaves undefined.
    pub fsw_undefined: u16,
    /// The explicit memory operand: (offset in the data page, size).
    pub mem: Option<(usize, usize)>,
    /// The architectural result is undefined for these inputs (e.g. SHLD r16
    /// with a count above 16): only the outcome (completed/exception) counts.
    pub result_undefined: bool,
    /// GPRs (bit i: GPR i) whose upper 32 bits processors leave in
    /// different states for these inputs (`upper_undefined`).
    pub upper_undefined: u16,
}

const GPR64: [Register; 16] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RBX,
    Register::RSP,
    Register::RBP,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

fn gpr_index(r: Register) -> Option<usize> {
    let full = r.full_register();
    GPR64.iter().position(|&g| g == full)
}

/// Read a (possibly partial) GPR from the state.
pub fn read_reg(st: &CpuState, r: Register) -> u64 {
    let Some(i) = gpr_index(r) else { return 0 };
    let v = st.gpr[i];
    match r.size() {
        1 if matches!(r, Register::AH | Register::CH | Register::DH | Register::BH) => {
            (v >> 8) & 0xff
        }
        1 => v & 0xff,
        2 => v & 0xffff,
        4 => v & 0xffff_ffff,
        _ => v,
    }
}

/// Write a (possibly partial) GPR in the state, keeping the other bits.
pub fn write_reg(st: &mut CpuState, r: Register, val: u64) {
    let Some(i) = gpr_index(r) else { return };
    let v = &mut st.gpr[i];
    match r.size() {
        1 if matches!(r, Register::AH | Register::CH | Register::DH | Register::BH) => {
            *v = (*v & !0xff00) | ((val & 0xff) << 8)
        }
        1 => *v = (*v & !0xff) | (val & 0xff),
        2 => *v = (*v & !0xffff) | (val & 0xffff),
        4 => *v = (*v & !0xffff_ffff) | (val & 0xffff_ffff),
        _ => *v = val,
    }
}

fn mask(bytes: usize) -> u64 {
    if bytes >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * bytes)) - 1
    }
}

fn read_mem(data: &[u8; DATA_SIZE], off: usize, size: usize) -> u64 {
    let mut b = [0u8; 8];
    let n = size.min(8);
    if off + n <= DATA_SIZE {
        b[..n].copy_from_slice(&data[off..off + n]);
    }
    u64::from_le_bytes(b)
}

fn write_mem(data: &mut [u8; DATA_SIZE], off: usize, size: usize, v: u64) {
    let n = size.min(8);
    if off + n <= DATA_SIZE {
        data[off..off + n].copy_from_slice(&v.to_le_bytes()[..n]);
    }
}

/// A GPR-ish value: mostly random, often a boundary value.
fn gpr_value(rng: &mut Rng) -> u64 {
    const SPECIAL: [u64; 14] = [
        0,
        1,
        2,
        u64::MAX,
        0x7f,
        0x80,
        0xff,
        0x7fff,
        0x8000,
        0xffff,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        0x8000_0000_0000_0000,
    ];
    match rng.below(10) {
        0 => rng.below(17),
        1 => (rng.below(17) as i64).wrapping_neg() as u64,
        2 => *rng.pick(&SPECIAL),
        3 => rng.next() & 0xffff_ffff,
        4 => rng.next() & 0xff,
        _ => rng.next(),
    }
}

/// Float bit patterns: specials, "ordinary" numbers, random bits.
fn f64_bits(rng: &mut Rng) -> u64 {
    const SPECIAL: [u64; 12] = [
        0,
        0x8000_0000_0000_0000,
        0x3ff0_0000_0000_0000,
        0xbff0_0000_0000_0000,
        0x7ff0_0000_0000_0000,
        0xfff0_0000_0000_0000,
        0x7ff8_0000_0000_0000,
        0xfff8_0000_0000_0000,
        0x7ff4_0000_0000_0001,
        0x0000_0000_0000_0001,
        0x000f_ffff_ffff_ffff,
        0x7fef_ffff_ffff_ffff,
    ];
    let sign = rng.next() & (1 << 63);
    match rng.below(8) {
        0 | 1 => *rng.pick(&SPECIAL),
        2 => sign | ((1023 + rng.below(64)) << 52), // powers of two / integers-ish
        3 => {
            let int = rng.below(1000) as f64 - 500.0;
            int.to_bits()
        }
        4 | 5 => sign | ((1023 - 40 + rng.below(80)) << 52) | (rng.next() >> 12),
        6 => sign | (rng.below(3) << 52) | (rng.next() >> 12), // tiny / denormal
        _ => rng.next(),
    }
}

fn f32_bits(rng: &mut Rng) -> u32 {
    const SPECIAL: [u32; 12] = [
        0,
        0x8000_0000,
        0x3f80_0000,
        0xbf80_0000,
        0x7f80_0000,
        0xff80_0000,
        0x7fc0_0000,
        0xffc0_0000,
        0x7fa0_0001,
        0x0000_0001,
        0x007f_ffff,
        0x7f7f_ffff,
    ];
    let sign = (rng.next() as u32) & (1 << 31);
    match rng.below(8) {
        0 | 1 => *rng.pick(&SPECIAL),
        2 => sign | ((127 + rng.below(32) as u32) << 23),
        3 => (rng.below(1000) as f32 - 500.0).to_bits(),
        4 | 5 => sign | ((127 - 20 + rng.below(40) as u32) << 23) | (rng.next() as u32 >> 9),
        6 => sign | ((rng.below(3) as u32) << 23) | (rng.next() as u32 >> 9),
        _ => rng.next() as u32,
    }
}

/// A 128-bit XMM value: packed floats, packed doubles or integers.
fn xmm_value(rng: &mut Rng) -> u128 {
    match rng.below(4) {
        0 => (0..4).fold(0u128, |acc, i| {
            acc | (u128::from(f32_bits(rng)) << (32 * i))
        }),
        1 => u128::from(f64_bits(rng)) | (u128::from(f64_bits(rng)) << 64),
        2 => (0..4).fold(0u128, |acc, i| {
            acc | (u128::from(gpr_value(rng) as u32) << (32 * i))
        }),
        _ => u128::from(rng.next()) | (u128::from(rng.next()) << 64),
    }
}

/// An 80-bit x87 value (significand, sign+exponent).
fn f80_value(rng: &mut Rng) -> (u64, u16) {
    let sign = if rng.chance(1, 2) { 0x8000u16 } else { 0 };
    match rng.below(8) {
        0 => {
            let bits = f64_bits(rng);
            f64_to_f80(bits)
        }
        1 | 2 => f64_to_f80((rng.below(2000) as f64 - 1000.0).to_bits()),
        3 | 4 => (
            (1 << 63) | (rng.next() >> 1),
            sign | (16383 - 40 + rng.below(80) as u16),
        ),
        5 => {
            const SPECIAL: [(u64, u16); 8] = [
                (0, 0),
                (1 << 63, 0x7fff),               // inf
                (0xc000_0000_0000_0000, 0x7fff), // QNaN
                (0xa000_0000_0000_0001, 0x7fff), // SNaN
                (0x0000_0000_0000_0001, 0),      // denormal
                (0x8000_0000_0000_0000, 1),      // smallest normal
                (u64::MAX, 0x7ffe),              // largest finite
                (0x8000_0000_0000_0000, 16383),  // 1.0
            ];
            let (m, e) = *rng.pick(&SPECIAL);
            (m, e | sign)
        }
        _ => f64_to_f80(
            (sign as u64) << 48 | ((1023 - 20 + rng.below(40)) << 52) | (rng.next() >> 12),
        ),
    }
}

/// Exact conversion of a double to 80-bit extended.
pub fn f64_to_f80(bits: u64) -> (u64, u16) {
    let sign = ((bits >> 48) & 0x8000) as u16;
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1 << 52) - 1);
    if exp == 0x7ff {
        return ((1 << 63) | (frac << 11), sign | 0x7fff);
    }
    if exp == 0 {
        if frac == 0 {
            return (0, sign);
        }
        // Denormal double: normalize.
        let lz = frac.leading_zeros() as i32; // >= 12
        let mant = frac << lz;
        let e = -1022 - (lz - 11) + 16383;
        return (mant, sign | e as u16);
    }
    ((1 << 63) | (frac << 11), sign | (exp - 1023 + 16383) as u16)
}

/// Random register, flag, FPU and SSE inputs.
fn random_state(rng: &mut Rng) -> CpuState {
    let mut st = CpuState::default();
    for g in st.gpr.iter_mut() {
        *g = gpr_value(rng);
    }
    // RSP always points into the middle of the data page.
    st.gpr[4] = DATA_ADDR + 0x700 + (rng.below(0x200) & !7);
    st.rflags = 0x202 | (rng.next() & super::FLAGS_COMPARED);
    // x87: a random stack depth and TOP, random control word.
    let depth = rng.below(9) as usize;
    let top = rng.below(8) as usize;
    let mut fcw: u16 = 0x037f;
    fcw = (fcw & !0x0c00) | ((rng.below(4) as u16) << 10); // RC
    fcw = (fcw & !0x0300) | (*rng.pick(&[0u16, 2, 3, 3, 3]) << 8); // PC
    if rng.chance(1, 10) {
        fcw &= !(rng.next() as u16 & 0x3f); // unmask some exceptions
    }
    let masked = fcw & 0x3f;
    let mut fsw = (rng.next() as u16) & 0x4700 & !0x0800; // C0-C3
    fsw |= (rng.next() as u16) & masked;
    fsw = (fsw & !0x3800) | ((top as u16) << 11);
    st.set_fcw(fcw);
    st.set_fsw(fsw);
    let mut tags = 0u8;
    for i in 0..8 {
        if i < depth {
            let (m, e) = f80_value(rng);
            st.set_st(i, m, e);
            tags |= 1 << ((top + i) & 7);
        } else {
            st.set_st(i, 0, 0);
        }
    }
    st.set_ftw(tags);
    for i in 0..16 {
        let v = xmm_value(rng);
        st.set_xmm(i, v);
    }
    st.set_mxcsr(random_mxcsr(rng));
    st
}

fn random_mxcsr(rng: &mut Rng) -> u32 {
    let mut m = 0x1f80u32;
    m |= (rng.below(4) as u32) << 13; // RC
    if rng.chance(1, 4) {
        m |= 1 << 15; // FZ
    }
    if rng.chance(1, 4) {
        m |= 1 << 6; // DAZ
    }
    m |= rng.next() as u32 & 0x3f; // sticky flags
    if rng.chance(1, 10) {
        m &= !((rng.next() as u32 & 0x3f) << 7); // unmask some exceptions
    }
    m
}

fn pick_reg(rng: &mut Rng, k: OpCodeOperandKind, bits: u32) -> Register {
    use OpCodeOperandKind as K;
    use Register as R;
    const R8: [Register; 20] = [
        R::AL,
        R::CL,
        R::DL,
        R::BL,
        R::AH,
        R::CH,
        R::DH,
        R::BH,
        R::SPL,
        R::BPL,
        R::SIL,
        R::DIL,
        R::R8L,
        R::R9L,
        R::R10L,
        R::R11L,
        R::R12L,
        R::R13L,
        R::R14L,
        R::R15L,
    ];
    // No REX (R8-R15, SPL..DIL) outside 64-bit mode.
    let n = if bits == 64 { 16 } else { 8 };
    let i = rng.below(n) as u32;
    match k {
        K::r8_reg | K::r8_opcode | K::r8_or_mem => {
            *rng.pick(&R8[..if bits == 64 { 20 } else { 8 }])
        }
        K::r16_reg | K::r16_rm | K::r16_opcode | K::r16_or_mem => R::AX + i,
        K::r32_reg | K::r32_rm | K::r32_opcode | K::r32_or_mem => R::EAX + i,
        K::r64_reg | K::r64_rm | K::r64_opcode | K::r64_or_mem => R::RAX + i,
        K::mm_reg | K::mm_rm | K::mm_or_mem => R::MM0 + (i & 7),
        _ => R::XMM0 + i,
    }
}

fn is_shift(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Rol
            | Mnemonic::Ror
            | Mnemonic::Rcl
            | Mnemonic::Rcr
            | Mnemonic::Shl
            | Mnemonic::Sal
            | Mnemonic::Shr
            | Mnemonic::Sar
            | Mnemonic::Shld
            | Mnemonic::Shrd
    )
}

fn shift_count(rng: &mut Rng) -> u8 {
    const COUNTS: [u8; 16] = [0, 1, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 255];
    if rng.chance(2, 3) {
        *rng.pick(&COUNTS)
    } else {
        rng.next() as u8
    }
}

fn imm_value(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => *rng.pick(&[0, 1, u64::MAX, 0x7f, 0x80, 0xff, 0x7fff_ffff, 0x8000_0000]),
        _ => rng.next(),
    }
}

/// Where a memory operand points: offset in the data page and access size.
#[derive(Debug, Clone, Copy)]
struct MemTarget {
    off: usize,
    size: usize,
}

/// A random address register: 64-bit, or 32-bit (R8D-R15D only in 64-bit mode).
fn gpr(rng: &mut Rng, addr_bits: u32, mode_bits: u32) -> Register {
    if addr_bits == 64 {
        GPR64[rng.below(16) as usize]
    } else {
        Register::EAX + rng.below(if mode_bits == 64 { 16 } else { 8 }) as u32
    }
}

/// Choose a memory operand for operand `i`: base/index/displacement (or
/// RIP-relative, or a 64-bit absolute moffs) such that it addresses
/// `DATA_ADDR + off`. Returns the target and the register values to pin.
fn memory_operand(
    rng: &mut Rng,
    ins: &mut Instruction,
    i: u32,
    k: OpCodeOperandKind,
    stack: bool,
    bits: u32,
    pins: &mut Vec<(Register, u64)>,
) -> MemTarget {
    let size = match ins.memory_size().size() {
        0 => 16,
        s => s,
    };
    let align = size.next_power_of_two().clamp(1, 16);
    let lo = 0x100usize;
    let hi = DATA_SIZE - 0x100 - size;
    let mut off = lo + rng.below((hi - lo) as u64) as usize;
    if rng.chance(6, 7) {
        off &= !(align - 1);
    }
    let addr = DATA_ADDR + off as u64;
    ins.set_op_kind(i, OpKind::Memory);
    if k == OpCodeOperandKind::mem_offs {
        ins.set_memory_base(Register::None);
        ins.set_memory_index(Register::None);
        ins.set_memory_displacement64(addr);
        ins.set_memory_displ_size(if bits == 64 { 8 } else { 4 });
        return MemTarget { off, size };
    }
    if bits == 64 && rng.chance(1, 8) {
        ins.set_memory_base(Register::RIP);
        ins.set_memory_index(Register::None);
        ins.set_memory_displacement64(addr);
        ins.set_memory_displ_size(8);
        return MemTarget { off, size };
    }
    if rng.chance(1, 16) {
        // Absolute [disp32] (a SIB without base and index in 64-bit mode).
        ins.set_memory_base(Register::None);
        ins.set_memory_index(Register::None);
        ins.set_memory_displacement64(addr);
        ins.set_memory_displ_size(4);
        return MemTarget { off, size };
    }
    // Sometimes 32-bit addressing in 64-bit mode (67h): the upper halves of
    // the registers must not matter.
    let addr_bits = if bits == 64 && rng.chance(1, 8) {
        32
    } else {
        bits
    };
    let base = loop {
        let b = gpr(rng, addr_bits, bits);
        // The stack pointer must stay in the page for PUSH/POP [mem].
        if !(stack && b.full_register() == Register::RSP) {
            break b;
        }
    };
    let (index, scale, index_val) = if rng.chance(2, 5) {
        let idx = loop {
            let x = gpr(rng, addr_bits, bits);
            if x != base && x.full_register() != Register::RSP {
                break x;
            }
        };
        let scale = *rng.pick(&[1u64, 2, 4, 8]);
        let v = (rng.below(33) as i64 - 16) as u64;
        (idx, scale, v)
    } else {
        (Register::None, 1, 0)
    };
    let disp: i64 = match rng.below(5) {
        0 | 1 => 0,
        2 | 3 => rng.below(256) as i64 - 128,
        _ => rng.below(4001) as i64 - 2000,
    };
    let base_val = addr
        .wrapping_sub(disp as u64)
        .wrapping_sub(index_val.wrapping_mul(scale));
    ins.set_memory_base(base);
    ins.set_memory_index(index);
    ins.set_memory_index_scale(scale as u32);
    ins.set_memory_displacement64(disp as u64);
    ins.set_memory_displ_size(if disp == 0 {
        0
    } else if (-128..128).contains(&disp) {
        1
    } else {
        4
    });
    pins.push((base, base_val));
    if index != Register::None {
        pins.push((index, index_val));
    }
    MemTarget { off, size }
}

/// Build one instruction of `form` with random operands; None if iced
/// cannot encode this combination (the caller retries).
struct Built {
    ins: Instruction,
    pins: Vec<(Register, u64)>,
    mem: Option<MemTarget>,
}

fn build(form: &Form, rng: &mut Rng) -> Option<Built> {
    use OpCodeOperandKind as K;
    let code = form.code;
    let op = code.op_code();
    let mut ins = Instruction::default();
    ins.set_code(code);
    let mut pins = Vec::new();
    let mut mem = None;
    let mut had_imm = false;
    let stack = code.is_stack_instruction();
    // String operands: sometimes with 32-bit addressing (67h: ESI/EDI/ECX).
    let str32 = form.bits == 64 && rng.chance(1, 4);
    for (i, &k) in op.op_kinds().iter().enumerate() {
        let i = i as u32;
        match k {
            K::mem | K::mem_offs => {
                mem = Some(memory_operand(
                    rng, &mut ins, i, k, stack, form.bits, &mut pins,
                ));
            }
            K::r8_or_mem
            | K::r16_or_mem
            | K::r32_or_mem
            | K::r64_or_mem
            | K::mm_or_mem
            | K::xmm_or_mem
                if form.mem =>
            {
                mem = Some(memory_operand(
                    rng, &mut ins, i, k, stack, form.bits, &mut pins,
                ));
            }
            K::r8_or_mem
            | K::r16_or_mem
            | K::r32_or_mem
            | K::r64_or_mem
            | K::mm_or_mem
            | K::xmm_or_mem
            | K::r8_reg
            | K::r8_opcode
            | K::r16_reg
            | K::r16_rm
            | K::r16_opcode
            | K::r32_reg
            | K::r32_rm
            | K::r32_opcode
            | K::r64_reg
            | K::r64_rm
            | K::r64_opcode
            | K::mm_reg
            | K::mm_rm
            | K::xmm_reg
            | K::xmm_rm => {
                ins.set_op_kind(i, OpKind::Register);
                ins.set_op_register(i, pick_reg(rng, k, form.bits));
            }
            K::al | K::cl | K::ax | K::dx | K::eax | K::rax | K::st0 => {
                let r = match k {
                    K::al => Register::AL,
                    K::cl => Register::CL,
                    K::ax => Register::AX,
                    K::dx => Register::DX,
                    K::eax => Register::EAX,
                    K::rax => Register::RAX,
                    _ => Register::ST0,
                };
                ins.set_op_kind(i, OpKind::Register);
                ins.set_op_register(i, r);
            }
            K::sti_opcode => {
                ins.set_op_kind(i, OpKind::Register);
                ins.set_op_register(i, Register::ST0 + rng.below(8) as u32);
            }
            K::imm8 | K::imm8_const_1 => {
                let v = if k == K::imm8_const_1 {
                    1
                } else if is_shift(code.mnemonic()) {
                    shift_count(rng)
                } else if code.mnemonic() == Mnemonic::Enter {
                    *rng.pick(&[0u8, 0, 1, 1, 2, 3, 4, 31, 32, 255])
                } else {
                    imm_value(rng) as u8
                };
                if had_imm {
                    ins.set_op_kind(i, OpKind::Immediate8_2nd);
                    ins.set_immediate8_2nd(v);
                } else {
                    ins.set_op_kind(i, OpKind::Immediate8);
                    ins.set_immediate8(v);
                }
            }
            K::imm8sex16 => {
                ins.set_op_kind(i, OpKind::Immediate8to16);
                ins.set_immediate8to16(imm_value(rng) as i8 as i16);
            }
            K::imm8sex32 => {
                ins.set_op_kind(i, OpKind::Immediate8to32);
                ins.set_immediate8to32(imm_value(rng) as i8 as i32);
            }
            K::imm8sex64 => {
                ins.set_op_kind(i, OpKind::Immediate8to64);
                ins.set_immediate8to64(imm_value(rng) as i8 as i64);
            }
            K::imm16 => {
                let v = if code.mnemonic() == Mnemonic::Enter || code.mnemonic() == Mnemonic::Ret {
                    rng.below(0x100) as u16 & !1
                } else {
                    imm_value(rng) as u16
                };
                ins.set_op_kind(i, OpKind::Immediate16);
                ins.set_immediate16(v);
            }
            K::imm32 => {
                ins.set_op_kind(i, OpKind::Immediate32);
                ins.set_immediate32(imm_value(rng) as u32);
            }
            K::imm32sex64 => {
                ins.set_op_kind(i, OpKind::Immediate32to64);
                ins.set_immediate32to64(imm_value(rng) as i32 as i64);
            }
            K::imm64 => {
                ins.set_op_kind(i, OpKind::Immediate64);
                ins.set_immediate64(imm_value(rng));
            }
            K::seg_rSI if str32 => ins.set_op_kind(i, OpKind::MemorySegESI),
            K::es_rDI if str32 => ins.set_op_kind(i, OpKind::MemoryESEDI),
            K::seg_rDI if str32 => ins.set_op_kind(i, OpKind::MemorySegEDI),
            K::seg_rSI => ins.set_op_kind(i, OpKind::MemorySegRSI),
            K::es_rDI => ins.set_op_kind(i, OpKind::MemoryESRDI),
            K::seg_rDI => ins.set_op_kind(i, OpKind::MemorySegRDI),
            K::seg_rBX_al => {
                // XLAT: [rbx + al], pinned later.
                ins.set_op_kind(i, OpKind::Memory);
                ins.set_memory_base(Register::RBX);
                ins.set_memory_index(Register::AL);
                ins.set_memory_index_scale(1);
            }
            K::br64_1 | K::br64_4 => {
                ins.set_op_kind(i, OpKind::NearBranch64);
                ins.set_near_branch64(TEST_ADDR + 0x20);
            }
            K::br32_1 | K::br32_4 => {
                ins.set_op_kind(i, OpKind::NearBranch32);
                ins.set_near_branch32((TEST_ADDR + 0x20) as u32);
            }
            _ => return None,
        }
        if matches!(
            k,
            K::imm8
                | K::imm8_const_1
                | K::imm8sex16
                | K::imm8sex32
                | K::imm8sex64
                | K::imm16
                | K::imm32
                | K::imm32sex64
                | K::imm64
        ) {
            had_imm = true;
        }
    }
    if form.lock {
        ins.set_has_lock_prefix(true);
    }
    match form.rep {
        RepPrefix::None => {}
        RepPrefix::Rep => ins.set_has_rep_prefix(true),
        RepPrefix::Repne => ins.set_has_repne_prefix(true),
    }
    Some(Built { ins, pins, mem })
}

fn encode(ins: &Instruction, ip: u64, bits: u32) -> Option<Vec<u8>> {
    let mut e = Encoder::new(bits);
    e.encode(ins, ip).ok()?;
    Some(e.take_buffer())
}

fn is_branch(ins: &Instruction) -> bool {
    (0..ins.op_count())
        .any(|i| matches!(ins.op_kind(i), OpKind::NearBranch64 | OpKind::NearBranch32))
}

fn set_branch_target(ins: &mut Instruction, target: u64) {
    if (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::NearBranch32) {
        ins.set_near_branch32(target as u32);
    } else {
        ins.set_near_branch64(target);
    }
}

/// The RFLAGS bits of iced's RflagsBits, as RFLAGS bit positions.
fn rflags_of(bits: u32) -> u64 {
    const MAP: [(u32, u64); 9] = [
        (1, 1 << 11),     // OF
        (2, 1 << 7),      // SF
        (4, 1 << 6),      // ZF
        (8, 1 << 4),      // AF
        (0x10, 1),        // CF
        (0x20, 1 << 2),   // PF
        (0x40, 1 << 10),  // DF
        (0x80, 1 << 9),   // IF
        (0x100, 1 << 18), // AC
    ];
    MAP.iter()
        .filter(|(b, _)| bits & b != 0)
        .fold(0, |acc, (_, f)| acc | f)
}

/// One random case of `form`, or None if no encodable operands were found.
pub fn generate(form: &Form, rng: &mut Rng) -> Option<Case> {
    for _ in 0..64 {
        let Some(mut b) = build(form, rng) else {
            continue;
        };
        // Encode (twice for branches: the target follows the instruction).
        let bits = form.bits;
        let Some(mut bytes) = encode(&b.ins, TEST_ADDR, bits) else {
            continue;
        };
        let branch = is_branch(&b.ins);
        // The marker move: mov rax, imm64 (64-bit) / mov eax, imm32.
        let marker_len = if bits == 64 { 10 } else { 5 };
        let target = TEST_ADDR + bytes.len() as u64 + if branch { marker_len } else { 0 };
        if branch {
            set_branch_target(&mut b.ins, target);
            match encode(&b.ins, TEST_ADDR, bits) {
                Some(x) if TEST_ADDR + x.len() as u64 + marker_len == target => bytes = x,
                _ => continue,
            }
        }
        let mut code = bytes.clone();
        if branch {
            if bits == 64 {
                code.push(0x48); // mov rax, imm64
                code.push(0xb8);
                code.extend_from_slice(&BRANCH_MARKER.to_le_bytes());
            } else {
                code.push(0xb8); // mov eax, imm32
                code.extend_from_slice(&(BRANCH_MARKER as u32).to_le_bytes());
            }
        }
        let jmp_at = TEST_ADDR + code.len() as u64;
        let jmp = if bits == 64 {
            Instruction::with_branch(Code::Jmp_rel32_64, END_ADDR).ok()?
        } else {
            Instruction::with_branch(Code::Jmp_rel32_32, END32_ADDR).ok()?
        };
        code.extend_from_slice(&encode(&jmp, jmp_at, bits)?);
        if code.len() > CODE_MAX {
            continue;
        }
        // What the host will decode.
        let mut dec = Decoder::with_ip(bits, &bytes, TEST_ADDR, DecoderOptions::NONE);
        let ins = dec.decode();
        if ins.code() != form.code || ins.len() != bytes.len() {
            continue;
        }
        let mut state = random_state(rng);
        let mut data = Box::new([0u8; DATA_SIZE]);
        rng.fill(&mut data[..]);
        for &(r, v) in &b.pins {
            write_reg(&mut state, r, v);
        }
        let mut case = Case {
            bits,
            code,
            ins,
            state,
            data,
            flags_undefined: rflags_of(ins.rflags_undefined()),
            fsw_undefined: x87_cc_undefined(&ins),
            mem: b.mem.map(|t| (t.off, t.size)),
            result_undefined: false,
            upper_undefined: 0,
        };
        adjust(form, &mut case, b.mem, target, rng);
        // The memory operand's base/index win over any adjustment above.
        for &(r, v) in &b.pins {
            write_reg(&mut case.state, r, v);
        }
        case.result_undefined = result_undefined(&case);
        case.flags_undefined |= count_flags_undefined(&case);
        case.upper_undefined = upper_undefined(&case);
        return Some(case);
    }
    None
}

/// Per-instruction input adjustments (see the module comment).
fn adjust(form: &Form, case: &mut Case, mem: Option<MemTarget>, target: u64, rng: &mut Rng) {
    use Mnemonic as M;
    let ins = case.ins;
    let m = ins.mnemonic();
    let st = &mut case.state;
    let data = &mut case.data;

    // Float-typed memory operands get float-ish values.
    if let Some(t) = mem {
        let ms = ins.memory_size();
        let elem = ms.element_type();
        if matches!(elem, MemorySize::Float32) {
            for o in (0..t.size).step_by(4) {
                write_mem(data, t.off + o, 4, u64::from(f32_bits(rng)));
            }
        } else if matches!(elem, MemorySize::Float64) {
            for o in (0..t.size).step_by(8) {
                write_mem(data, t.off + o, 8, f64_bits(rng));
            }
        } else if matches!(elem, MemorySize::Float80) {
            let (mant, se) = f80_value(rng);
            write_mem(data, t.off, 8, mant);
            write_mem(data, t.off + 8, 2, u64::from(se));
        }
    }

    // Implicit pointers: string instructions, XLAT, MASKMOV*, ENTER/LEAVE.
    let str32 = (0..ins.op_count()).any(|i| {
        matches!(
            ins.op_kind(i),
            OpKind::MemorySegESI | OpKind::MemoryESEDI | OpKind::MemorySegEDI
        )
    });
    let string_mem = str32
        || (0..ins.op_count()).any(|i| {
            matches!(
                ins.op_kind(i),
                OpKind::MemorySegRSI | OpKind::MemoryESRDI | OpKind::MemorySegRDI
            )
        });
    if string_mem {
        st.gpr[6] = DATA_ADDR + 0x600 + rng.below(0x400);
        st.gpr[7] = DATA_ADDR + 0x600 + rng.below(0x400);
        if matches!(m, M::Maskmovq | M::Maskmovdqu) {
            st.gpr[7] = DATA_ADDR + 0x600 + rng.below(0x400);
        }
        if form.rep != RepPrefix::None || rng.chance(1, 2) {
            st.gpr[1] = if rng.chance(9, 10) {
                rng.below(9)
            } else {
                rng.below(17)
            };
        }
        if form.rep != RepPrefix::None
            && matches!(
                m,
                M::Cmpsb
                    | M::Cmpsw
                    | M::Cmpsd
                    | M::Cmpsq
                    | M::Scasb
                    | M::Scasw
                    | M::Scasd
                    | M::Scasq
            )
            && rng.chance(1, 2)
        {
            // Equal runs so REPE/REPNE stop at different places.
            let src = (st.gpr[6] - DATA_ADDR) as usize;
            let dst = (st.gpr[7] - DATA_ADDR) as usize;
            let n = rng.below(64) as usize;
            for j in 0..n {
                let (s, d) = (src.wrapping_add(j), dst.wrapping_add(j));
                if s < DATA_SIZE && d < DATA_SIZE {
                    data[d] = data[s];
                }
            }
            if rng.chance(1, 2) {
                st.gpr[0] = read_mem(data, dst, 8);
            }
        }
        if str32 {
            // 32-bit addressing: the upper halves of RSI, RDI, RCX must not matter.
            for r in [1, 6, 7] {
                st.gpr[r] |= rng.next() & 0xffff_ffff_0000_0000;
            }
        }
    }
    if m == M::Xlatb {
        st.gpr[3] = DATA_ADDR + 0x400 + rng.below(0x800);
    }
    if matches!(m, M::Enter | M::Leave) {
        st.gpr[5] = DATA_ADDR + 0x600 + (rng.below(0x400) & !7);
    }

    match m {
        M::Div | M::Idiv => {
            let size = ins.memory_size().size().max(reg_size(&ins, 0));
            let divisor = operand_value(&ins, 0, st, data, mem, size);
            if divisor & mask(size) == 0 && rng.chance(9, 10) {
                set_operand(&ins, 0, st, data, mem, size, gpr_value(rng) | 1);
            }
            let d = operand_value(&ins, 0, st, data, mem, size) & mask(size);
            if rng.chance(17, 20) && d != 0 {
                let (lo_reg, hi_reg) = match size {
                    1 => (Register::AL, Register::AH),
                    2 => (Register::AX, Register::DX),
                    4 => (Register::EAX, Register::EDX),
                    _ => (Register::RAX, Register::RDX),
                };
                let hi = if m == M::Div {
                    rng.next() % d
                } else {
                    let lo = read_reg(st, lo_reg);
                    let neg = lo >> (8 * size - 1) & 1 == 1;
                    if neg {
                        u64::MAX
                    } else {
                        0
                    }
                };
                write_reg(st, hi_reg, hi);
            }
        }
        M::Cmpxchg if rng.chance(1, 2) => {
            let size = reg_size(&ins, 1);
            let v = operand_value(&ins, 0, st, data, mem, size);
            let acc = match size {
                1 => Register::AL,
                2 => Register::AX,
                4 => Register::EAX,
                _ => Register::RAX,
            };
            write_reg(st, acc, v);
        }
        M::Cmpxchg8b | M::Cmpxchg16b if rng.chance(1, 2) => {
            if let Some(t) = mem {
                let half = t.size / 2;
                let lo = read_mem(data, t.off, half);
                let hi = read_mem(data, t.off + half, half);
                if half == 4 {
                    write_reg(st, Register::EAX, lo);
                    write_reg(st, Register::EDX, hi);
                } else {
                    st.gpr[0] = lo;
                    st.gpr[2] = hi;
                }
            }
        }
        M::Popf | M::Popfd | M::Popfq => {
            let rsp = (st.gpr[4] - DATA_ADDR) as usize;
            let v = 0x202 | (rng.next() & super::FLAGS_COMPARED);
            let size = match ins.code() {
                Code::Popfw => 2,
                Code::Popfd => 4,
                _ => 8,
            };
            write_mem(data, rsp, size, v);
        }
        M::Bound if rng.chance(1, 2) => {
            // Bounds around the index half the time (else #BR mostly).
            if let (Some(t), OpKind::Register) = (mem, ins.op_kind(0)) {
                let r = ins.op_register(0);
                let half = r.size();
                let raw = read_reg(st, r);
                let v = if half == 2 {
                    raw as i16 as i64
                } else {
                    raw as i32 as i64
                };
                let lo = v - rng.below(3) as i64;
                let hi = v + rng.below(3) as i64;
                write_mem(data, t.off, half, lo as u64);
                write_mem(data, t.off + half, half, hi as u64);
            }
        }
        M::Ret => {
            let rsp = (st.gpr[4] - DATA_ADDR) as usize;
            write_mem(data, rsp, 8, target);
        }
        M::Ldmxcsr if rng.chance(9, 10) => {
            if let Some(t) = mem {
                write_mem(data, t.off, 4, u64::from(random_mxcsr(rng)));
            }
        }
        M::Loop | M::Loope | M::Loopne | M::Jrcxz | M::Jecxz if rng.chance(1, 2) => {
            st.gpr[1] = rng.below(3);
        }
        M::Bt | M::Bts | M::Btr | M::Btc if ins.op_kind(0) == OpKind::Memory => {
            if let (Some(t), OpKind::Register) = (mem, ins.op_kind(1)) {
                let r = ins.op_register(1);
                let size = r.size();
                let bits_lo = -((t.off as i64) * 8);
                let bits_hi = ((DATA_SIZE - t.off - size) as i64) * 8;
                let mut v = bits_lo + rng.below((bits_hi - bits_lo) as u64) as i64;
                if size == 2 {
                    v = v.clamp(i16::MIN as i64, i16::MAX as i64);
                }
                write_reg(st, r, v as u64);
            }
        }
        _ => {}
    }
    // Shift counts in CL.
    if is_shift(m)
        && (0..ins.op_count())
            .any(|i| ins.op_kind(i) == OpKind::Register && ins.op_register(i) == Register::CL)
        && rng.chance(3, 5)
    {
        write_reg(st, Register::CL, u64::from(shift_count(rng)));
    }
}

const C0: u16 = 1 << 8;
const C1: u16 = 1 << 9;
const C2: u16 = 1 << 10;
const C3: u16 = 1 << 14;

/// The x87 condition codes an instruction leaves undefined (SDM vol. 2,
/// "FPU Flags Affected" of each instruction). Compares, FXAM and the
/// remainders define them all; FCOMI & co leave C0/C2/C3 unchanged (C1:
/// see below); control
/// instructions leave all four undefined; the rest define only C1.
pub fn x87_cc_undefined(ins: &Instruction) -> u16 {
    use Mnemonic as M;
    let is_x87 = ins.cpuid_features().iter().any(|f| {
        matches!(
            f,
            iced_x86::CpuidFeature::FPU
                | iced_x86::CpuidFeature::FPU387
                | iced_x86::CpuidFeature::FPU287
        )
    });
    if !is_x87 {
        return 0;
    }
    match ins.mnemonic() {
        M::Fcom
        | M::Fcomp
        | M::Fcompp
        | M::Fucom
        | M::Fucomp
        | M::Fucompp
        | M::Ficom
        | M::Ficomp
        | M::Ftst
        | M::Fxam
        | M::Fprem
        | M::Fprem1
        | M::Fninit => 0,
        // The SDM says C1 := 0; AMD hosts leave it unchanged. Vendor-specific.
        M::Fcomi | M::Fcomip | M::Fucomi | M::Fucomip => C1,
        M::Fcmovb
        | M::Fcmove
        | M::Fcmovbe
        | M::Fcmovu
        | M::Fcmovnb
        | M::Fcmovne
        | M::Fcmovnbe
        | M::Fcmovnu => C0 | C2 | C3,
        M::Fsin | M::Fcos | M::Fsincos | M::Fptan => C0 | C3,
        M::Fnstsw
        | M::Fnstcw
        | M::Fldcw
        | M::Fnclex
        | M::Ffree
        | M::Ffreep
        | M::Fnop
        | M::Fneni
        | M::Fndisi
        | M::Fnsetpm
        | M::Wait => C0 | C1 | C2 | C3,
        _ => C0 | C2 | C3,
    }
}

/// Inputs for which the SDM leaves the result undefined.
fn result_undefined(case: &Case) -> bool {
    let ins = &case.ins;
    // SHLD/SHRD r/m16 with a count above 16.
    if matches!(ins.mnemonic(), Mnemonic::Shld | Mnemonic::Shrd) && reg_size(ins, 1) == 2 {
        let count = if ins.op_kind(2) == OpKind::Immediate8 {
            u64::from(ins.immediate8())
        } else {
            read_reg(&case.state, Register::CL)
        } & 31;
        return count > 16;
    }
    false
}

/// Flags undefined for the count these inputs give a shift or rotate (iced
/// names those undefined whatever the count): OF after any count but 1 (SDM
/// "RCL/RCR/ROL/ROR": "The OF flag is defined only for the 1-bit rotates;
/// it is undefined in all other cases", and the same for SAL/SAR/SHL/SHR),
/// a masked count of 0 leaving every flag as it was. An RCL of a byte by 9
/// rotates nothing but is not a zero count: Ice Lake keeps OF there, older
/// processors compute it.
fn count_flags_undefined(case: &Case) -> u64 {
    use Mnemonic as M;
    let ins = &case.ins;
    if !matches!(
        ins.mnemonic(),
        M::Rcl | M::Rcr | M::Rol | M::Ror | M::Shl | M::Sal | M::Shr | M::Sar
    ) {
        return 0;
    }
    let count = if ins.op_count() < 2 {
        1
    } else {
        match ins.op_kind(1) {
            OpKind::Immediate8 => u64::from(ins.immediate8()),
            OpKind::Register => read_reg(&case.state, Register::CL),
            _ => 1,
        }
    };
    let width = reg_size(ins, 0).max(ins.memory_size().size());
    let masked = count & if width == 8 { 63 } else { 31 };
    if masked > 1 {
        0x800
    } else {
        0
    }
}

/// GPRs whose upper halves processors leave differently for these inputs:
/// a REP string instruction with a 32-bit address size and ECX 0 in 64-bit
/// mode. It does nothing by the SDM's operation; processors with fast short
/// REP MOV (Ice Lake on) still write ECX, and ESI/EDI where it moves data,
/// zero-extending them, where older ones leave them whole. The low halves
/// are compared as always.
fn upper_undefined(case: &Case) -> u16 {
    let ins = &case.ins;
    let rep = ins.has_rep_prefix() || ins.has_repne_prefix();
    let string = ins.is_string_instruction();
    if case.bits == 64 && rep && string && addr32(ins) && case.state.gpr[1] & 0xffff_ffff == 0 {
        (1 << 1) | (1 << 6) | (1 << 7)
    } else {
        0
    }
}

/// Whether the string instruction `ins` uses 32-bit addresses.
fn addr32(ins: &Instruction) -> bool {
    (0..ins.op_count()).any(|i| {
        matches!(
            ins.op_kind(i),
            OpKind::MemoryESEDI | OpKind::MemorySegESI | OpKind::MemorySegEDI
        )
    })
}

/// The size in bytes of register operand `i` (0 if it is not a register).
fn reg_size(ins: &Instruction, i: u32) -> usize {
    if i < ins.op_count() && ins.op_kind(i) == OpKind::Register {
        ins.op_register(i).size()
    } else {
        0
    }
}

fn operand_value(
    ins: &Instruction,
    i: u32,
    st: &CpuState,
    data: &[u8; DATA_SIZE],
    mem: Option<MemTarget>,
    size: usize,
) -> u64 {
    match ins.op_kind(i) {
        OpKind::Register => read_reg(st, ins.op_register(i)),
        OpKind::Memory => mem.map_or(0, |t| read_mem(data, t.off, size)),
        _ => 0,
    }
}

fn set_operand(
    ins: &Instruction,
    i: u32,
    st: &mut CpuState,
    data: &mut [u8; DATA_SIZE],
    mem: Option<MemTarget>,
    size: usize,
    v: u64,
) {
    match ins.op_kind(i) {
        OpKind::Register => write_reg(st, ins.op_register(i), v),
        OpKind::Memory => {
            if let Some(t) = mem {
                write_mem(data, t.off, size, v)
            }
        }
        _ => {}
    }
}
