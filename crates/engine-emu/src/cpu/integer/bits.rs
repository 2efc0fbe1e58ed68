//! Bit operations: BT BTS BTR BTC, BSF BSR, TZCNT LZCNT, POPCNT, BSWAP, MOVBE.
//!
//! Undefined flags follow the AMD EPYC host (measured): BT* change only CF;
//! BSF/BSR clear CF OF SF AF, set ZF when the source is zero and PF from the
//! bit index (PF=1 for a zero source), and leave the destination unwritten
//! (not even zero-extended) for a zero source; LZCNT/TZCNT clear SF AF PF
//! and leave OF.
//!
//! LZCNT and TZCNT are what the presented CPUID says: without ABM (LZCNT) or
//! BMI1 (TZCNT) advertised they run as BSR/BSF, as on processors without
//! them (the REP prefix is ignored).

use iced_x86::{Instruction, OpKind, Register};
use kite_hypervisor::x86::RFLAGS_CF;

use super::Loc;
use crate::cpu::flags::mask;
use crate::cpu::{Cpu, Res};

pub const BT: u8 = 0;
pub const BTS: u8 = 1;
pub const BTR: u8 = 2;
pub const BTC: u8 = 3;

/// Address-size mask of the memory operand.
fn addr_mask(cpu: &Cpu, ins: &Instruction) -> u64 {
    let r = if ins.memory_base() != Register::None {
        ins.memory_base()
    } else {
        ins.memory_index()
    };
    let bits = match r.size() {
        2 => 16,
        4 => 32,
        8 => 64,
        _ if cpu.code_bits == 64 => 64,
        _ if ins.memory_displ_size() == 2 => 16,
        _ => 32,
    };
    mask(bits)
}

pub fn bt<const OP: u8>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = cpu.op_size(ins, 0);
    let bits = size * 8;
    let off = cpu.read_op(ins, 1)?;
    let write = OP != BT;
    let (loc, bit) = if ins.op0_kind() == OpKind::Memory && ins.op1_kind() == OpKind::Register {
        // A register offset addresses any bit relative to the operand
        // (signed), in operand-size units.
        let soff = ((off << (64 - bits)) as i64) >> (64 - bits);
        let units = soff >> bits.trailing_zeros();
        let ea = cpu
            .ea(ins)
            .wrapping_add((units as u64).wrapping_mul(u64::from(size)))
            & addr_mask(cpu, ins);
        let lin = cpu.seg_lin(cpu.mem_seg(ins), ea, size, write)?;
        (Loc::Mem(lin), (off & u64::from(bits - 1)) as u32)
    } else {
        (
            cpu.loc(ins, 0, size, write)?,
            (off & u64::from(bits - 1)) as u32,
        )
    };
    let b = 1u64 << bit;
    let old = if write {
        cpu.rmw(loc, size, ins.has_lock_prefix(), move |v| match OP {
            BTS => v | b,
            BTR => v & !b,
            _ => v ^ b,
        })?
        .0
    } else {
        cpu.loc_read(loc, size)?
    };
    cpu.flags.set(RFLAGS_CF, old & b != 0);
    Ok(())
}

/// BSF/BSR flags: see the module notes.
fn scan_flags(cpu: &mut Cpu, src_zero: bool, index: u64) {
    let pf = (index as u8).count_ones().is_multiple_of(2);
    cpu.flags
        .set_arith(false, pf, false, src_zero, false, false);
}

fn bit_scan(cpu: &mut Cpu, ins: &Instruction, reverse: bool) -> Res {
    let size = cpu.op_size(ins, 0);
    let bits = size * 8;
    let src = cpu.read_op(ins, 1)? & mask(bits);
    if src == 0 {
        scan_flags(cpu, true, 0);
        return Ok(());
    }
    let index = if reverse {
        63 - u64::from(src.leading_zeros())
    } else {
        u64::from(src.trailing_zeros())
    };
    cpu.reg_write(ins.op0_register(), index);
    scan_flags(cpu, false, index);
    Ok(())
}

pub fn bsf(cpu: &mut Cpu, ins: &Instruction) -> Res {
    bit_scan(cpu, ins, false)
}

pub fn bsr(cpu: &mut Cpu, ins: &Instruction) -> Res {
    bit_scan(cpu, ins, true)
}

fn count_bits(cpu: &mut Cpu, ins: &Instruction, leading: bool) -> Res {
    let size = cpu.op_size(ins, 0);
    let bits = size * 8;
    let src = cpu.read_op(ins, 1)? & mask(bits);
    let n = if leading {
        u64::from(src.leading_zeros()) - u64::from(64 - bits)
    } else if src == 0 {
        u64::from(bits)
    } else {
        u64::from(src.trailing_zeros())
    };
    cpu.reg_write(ins.op0_register(), n);
    let of = cpu.flags.of();
    cpu.flags
        .set_arith(src == 0, false, false, n == 0, false, of);
    Ok(())
}

pub fn tzcnt(cpu: &mut Cpu, ins: &Instruction) -> Res {
    if cpu.cpuid_query(7, 0)[1] & (1 << 3) == 0 {
        return bit_scan(cpu, ins, false);
    }
    count_bits(cpu, ins, false)
}

pub fn lzcnt(cpu: &mut Cpu, ins: &Instruction) -> Res {
    if cpu.cpuid_query(0x8000_0001, 0)[2] & (1 << 5) == 0 {
        return bit_scan(cpu, ins, true);
    }
    count_bits(cpu, ins, true)
}

pub fn popcnt(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = cpu.op_size(ins, 0);
    let src = cpu.read_op(ins, 1)? & mask(size * 8);
    cpu.reg_write(ins.op0_register(), u64::from(src.count_ones()));
    cpu.flags
        .set_arith(false, false, false, src == 0, false, false);
    Ok(())
}

/// Reverse the low `size` bytes of `v`.
#[inline]
fn swap(v: u64, size: u32) -> u64 {
    match size {
        2 => u64::from((v as u16).swap_bytes()),
        4 => u64::from((v as u32).swap_bytes()),
        8 => v.swap_bytes(),
        _ => v,
    }
}

pub fn bswap(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let r = ins.op0_register();
    let size = r.size() as u32;
    // BSWAP of a 16-bit register is undefined; hardware clears it.
    let v = if size == 2 {
        0
    } else {
        swap(cpu.reg_read(r), size)
    };
    cpu.reg_write(r, v);
    Ok(())
}

pub fn movbe(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = cpu.op_size(ins, 0);
    let v = swap(cpu.read_op(ins, 1)?, size);
    cpu.write_op(ins, 0, v)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use iced_x86::code_asm::*;

    #[test]
    fn bt_memory_offsets_beyond_the_operand() {
        let mut t = TestCpu::new(64);
        t.write(DATA + 12, &[0x10]); // bit 100 = byte 12 bit 4
        t.exec(|a| {
            a.mov(rbx, DATA + 16).unwrap();
            a.mov(rcx, -28i64).unwrap(); // bit 100 relative to DATA
            a.bts(qword_ptr(rbx), rcx).unwrap();
            a.setc(dl).unwrap();
            a.mov(ecx, 100 + 64u32).unwrap();
            a.lock().btc(dword_ptr(rbx - 16), ecx).unwrap();
            a.bt(dword_ptr(rbx - 16), 100u32).unwrap(); // imm: bit 100 mod 32 = 4
        });
        assert_eq!(t.cpu.gpr[2] & 0xff, 1);
        assert_eq!(t.read(DATA + 12, 1)[0], 0x10);
        assert_eq!(t.read(DATA + 20, 1)[0], 0x10);
        assert!(!t.cpu.flags.cf());
    }

    #[test]
    fn bsf_zero_leaves_dest_popcnt_bswap_movbe() {
        let mut t = TestCpu::new(64);
        t.cpu.gpr[0] = u64::MAX;
        t.write(DATA, &[1, 2, 3, 4]);
        t.exec(|a| {
            a.xor(ecx, ecx).unwrap();
            a.bsf(eax, ecx).unwrap();
            a.mov(edx, 0x8010u32).unwrap();
            a.bsr(r8d, edx).unwrap();
            a.popcnt(r9, rdx).unwrap();
            a.mov(r10d, 0x1122_3344u32).unwrap();
            a.bswap(r10d).unwrap();
            a.movbe(r11d, dword_ptr(DATA)).unwrap();
        });
        assert_eq!(t.cpu.gpr[0], u64::MAX);
        assert_eq!(t.cpu.gpr[8], 15);
        assert_eq!(t.cpu.gpr[9], 2);
        assert_eq!(t.cpu.gpr[10], 0x4433_2211);
        assert_eq!(t.cpu.gpr[11], 0x0102_0304);
    }

    #[test]
    fn lzcnt_is_bsr_without_abm_in_cpuid() {
        let mut t = TestCpu::new(64);
        for e in t.cpu.cpuid.iter_mut().filter(|e| e.function == 0x8000_0001) {
            e.ecx &= !(1 << 5);
        }
        t.exec(|a| {
            a.mov(ecx, 0x10u32).unwrap();
            a.lzcnt(eax, ecx).unwrap();
        });
        assert_eq!(t.cpu.gpr[0], 4);
    }

    #[test]
    fn lzcnt_counts_leading_zeros_with_abm_in_cpuid() {
        let mut t = TestCpu::new(64);
        assert!(t
            .cpu
            .cpuid
            .iter()
            .any(|e| e.function == 0x8000_0001 && e.ecx & (1 << 5) != 0));
        t.exec(|a| {
            a.mov(ecx, 0x10u32).unwrap();
            a.lzcnt(eax, ecx).unwrap();
        });
        assert_eq!(t.cpu.gpr[0], 27);
    }
}
