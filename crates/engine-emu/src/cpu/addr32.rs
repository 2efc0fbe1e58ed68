//! Decode-time forms of 32-bit memory operands (issue 14): which registers
//! make up the effective address of a 32-bit address-size operand (only a
//! displacement, a base, a base and a scaled index, or a scaled index) is
//! fixed when an instruction is decoded, so a handler specialised for the
//! form adds the 32-bit GPRs it names and the displacement, without the
//! generic `Cpu::ea` tests (RIP/EIP bases, register widths, address size).
//! At run time the segment is looked up in the flat-segment cache
//! (`seg_cache.rs`): a flat segment makes the offset the linear address (only
//! the wrap past 4 GiB faults); any other segment, mode or offset goes
//! through `Cpu::seg_lin` with its exact checks (limits, types,
//! expand-down, #GP/#SS(0), real and VM86 modes, compatibility mode).
//!
//! This module knows how iced-x86 describes a memory operand and which GPRs
//! hold the address; it must not know what the instructions do with the
//! memory, nor how segments or pages are checked (those stay in `access.rs`
//! and `seg_cache.rs`). 16-bit address sizes and 64-bit code never get a
//! form here: they keep the generic path.

use iced_x86::{CodeSize, Instruction, OpKind, Register};

use super::{Cpu, Res};

/// No specialisation: the generic effective address and segment path.
pub const GENERIC: u8 = 0;
/// `[disp32]` (also the moffs forms of MOV).
pub const DISP: u8 = 1;
/// `[base + disp]`.
pub const BASE: u8 = 2;
/// `[base + index * scale + disp]`.
pub const BASE_INDEX: u8 = 3;
/// `[index * scale + disp]` (no base).
pub const INDEX: u8 = 4;

/// Whether `r` is a 32-bit GPR (the only registers a 32-bit address uses).
#[inline]
fn gpr32(r: Register) -> bool {
    (Register::EAX..=Register::R15D).contains(&r)
}

/// The form of the explicit memory operand of `ins` when it has a 32-bit
/// address size and is not 64-bit code, else `GENERIC`. Instructions
/// without an explicit memory operand (`OpKind::Memory`) are `GENERIC` too.
pub fn form(ins: &Instruction) -> u8 {
    if !matches!(ins.code_size(), CodeSize::Code32 | CodeSize::Code16)
        || !(0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory)
    {
        return GENERIC;
    }
    let (base, index) = (ins.memory_base(), ins.memory_index());
    match (base, index) {
        // A lone displacement: its size is the address size (2 for 16-bit).
        (Register::None, Register::None) if ins.memory_displ_size() == 4 => DISP,
        (b, Register::None) if gpr32(b) => BASE,
        (b, i) if gpr32(b) && gpr32(i) => BASE_INDEX,
        (Register::None, i) if gpr32(i) => INDEX,
        _ => GENERIC,
    }
}

/// The `cpu.gpr` index of a 32-bit GPR.
#[inline(always)]
fn index32(r: Register) -> usize {
    (r as usize).wrapping_sub(Register::EAX as usize) & 15
}

impl Cpu {
    /// The effective address (segment offset) of a memory operand of form
    /// `FORM` (not `GENERIC`): the 32-bit sum of its parts.
    #[inline(always)]
    pub(crate) fn off32<const FORM: u8>(&self, ins: &Instruction) -> u64 {
        let mut a = ins.memory_displacement64();
        if FORM == BASE || FORM == BASE_INDEX {
            a = a.wrapping_add(self.gpr[index32(ins.memory_base())]);
        }
        if FORM == BASE_INDEX || FORM == INDEX {
            let shift = ins.memory_index_scale().trailing_zeros();
            a = a.wrapping_add(self.gpr[index32(ins.memory_index())] << shift);
        }
        a & 0xffff_ffff
    }

    /// The linear address of the memory operand of `ins` for an access of
    /// `size` bytes (`write`: checked for writing), with the operand form
    /// chosen at decode time (`form`). Exactly what `seg_lin(mem_seg, ea)`
    /// gives, faults included.
    #[inline(always)]
    pub(crate) fn mem_lin<const FORM: u8>(
        &self,
        ins: &Instruction,
        size: u32,
        write: bool,
    ) -> Res<u64> {
        if FORM == GENERIC {
            let off = self.ea(ins);
            return self.seg_lin(self.mem_seg(ins), off, size, write);
        }
        let off = self.off32::<FORM>(ins);
        // iced numbers ES, CS, SS, DS, FS, GS in `Seg` order.
        let seg = (ins.memory_segment() as u32).wrapping_sub(Register::ES as u32);
        let flat = u32::from(if write {
            self.seg_cache.flat_write
        } else {
            self.seg_cache.flat_read
        });
        // `off` < 4 GiB: the sum cannot overflow.
        if seg < 6 && (flat >> seg) & 1 != 0 && off + u64::from(size) <= 1 << 32 {
            debug_assert!(
                self.seg_cache_is_current(),
                "segment state changed without refresh_seg_cache"
            );
            return Ok(off);
        }
        self.seg_lin(self.mem_seg(ins), off, size, write)
    }

    /// Read `size` bytes from the memory operand of `ins` (form `FORM`).
    #[inline(always)]
    pub(crate) fn mem_read<const FORM: u8>(&mut self, ins: &Instruction, size: u32) -> Res<u64> {
        let lin = self.mem_lin::<FORM>(ins, size, false)?;
        self.read_lin(lin, size, false)
    }

    /// Write `size` bytes to the memory operand of `ins` (form `FORM`).
    #[inline(always)]
    pub(crate) fn mem_write<const FORM: u8>(
        &mut self,
        ins: &Instruction,
        size: u32,
        v: u64,
    ) -> Res {
        let lin = self.mem_lin::<FORM>(ins, size, true)?;
        self.write_lin(lin, size, v, false)
    }
}

/// The handler `f::<P..., FORM>` for the form of `$ins`'s memory operand
/// (see `form`), written `by_form!(ins, f[P...])`: one instantiation per
/// form.
macro_rules! by_form {
    ($ins:expr, $($f:ident)::+ [$($p:tt),*]) => {
        match $crate::cpu::addr32::form($ins) {
            $crate::cpu::addr32::DISP => $($f)::+ ::<$($p,)* { $crate::cpu::addr32::DISP }>,
            $crate::cpu::addr32::BASE => $($f)::+ ::<$($p,)* { $crate::cpu::addr32::BASE }>,
            $crate::cpu::addr32::BASE_INDEX => {
                $($f)::+ ::<$($p,)* { $crate::cpu::addr32::BASE_INDEX }>
            }
            $crate::cpu::addr32::INDEX => $($f)::+ ::<$($p,)* { $crate::cpu::addr32::INDEX }>,
            _ => $($f)::+ ::<$($p,)* { $crate::cpu::addr32::GENERIC }>,
        }
    };
}
pub(crate) use by_form;
