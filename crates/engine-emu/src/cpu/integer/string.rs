//! String instructions MOVS CMPS SCAS LODS STOS INS OUTS, with REP,
//! REPE and REPNE.
//!
//! The address size (from the operand kinds iced gives: MemorySegSI/ESI/RSI,
//! MemoryESDI/EDI/RDI) selects SI/ESI/RSI, DI/EDI/RDI and CX/ECX/RCX and how
//! they wrap; DF selects the direction. A repeated instruction runs up to
//! `MAX_ITERATIONS` iterations per call, then leaves RIP on itself so
//! interrupts can be taken between calls; it also stops after any iteration
//! that went out of the engine (a replayed MMIO/port read, a posted MMIO or
//! port write) or wrote to decoded code. Every iteration commits its
//! registers, so a fault in iteration k leaves the state after k-1 (the
//! architectural REP behaviour).

use iced_x86::{Instruction, OpKind, Register};

use super::control::set_counter;
use crate::cpu::flags::mask;
use crate::cpu::reg::{RAX, RCX, RDI, RDX, RSI};
use crate::cpu::{Cpu, Res, Seg};
use crate::mmu::page_walk::Access;
use crate::mmu::tlb::{READ_S, READ_U, WRITE_S, WRITE_U};

/// Iterations of a repeated string instruction per handler call.
const MAX_ITERATIONS: u32 = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Rep {
    Once,
    Plain,
    WhileEqual,
    WhileNotEqual,
}

/// Address size of a string instruction, from its memory operand kinds.
fn addr_bits(ins: &Instruction) -> u32 {
    for i in 0..ins.op_count() {
        match ins.op_kind(i) {
            OpKind::MemorySegSI | OpKind::MemoryESDI | OpKind::MemorySegDI => return 16,
            OpKind::MemorySegESI | OpKind::MemoryESEDI | OpKind::MemorySegEDI => return 32,
            OpKind::MemorySegRSI | OpKind::MemoryESRDI | OpKind::MemorySegRDI => return 64,
            _ => {}
        }
    }
    64
}

/// Element size in bytes.
fn elem_size(ins: &Instruction) -> u32 {
    (ins.memory_size().size() as u32).clamp(1, 8)
}

/// Write an index/counter register at the address size.
fn set_index(cpu: &mut Cpu, r: usize, bits: u32, v: u64) {
    let m = mask(bits);
    cpu.gpr[r] = match bits {
        16 => (cpu.gpr[r] & !m) | (v & m),
        _ => v & m,
    };
}

/// One iteration's context.
#[derive(Clone, Copy)]
struct Ctx {
    bits: u32,
    size: u32,
    src_seg: Seg,
}

impl Ctx {
    fn si(&self, cpu: &Cpu) -> u64 {
        cpu.gpr[RSI] & mask(self.bits)
    }
    fn di(&self, cpu: &Cpu) -> u64 {
        cpu.gpr[RDI] & mask(self.bits)
    }
    fn delta(&self, cpu: &Cpu) -> u64 {
        if cpu.flags.df() {
            u64::from(self.size).wrapping_neg()
        } else {
            u64::from(self.size)
        }
    }
    fn advance(&self, cpu: &mut Cpu, r: usize) {
        let v = cpu.gpr[r].wrapping_add(self.delta(cpu));
        set_index(cpu, r, self.bits, v);
    }
}

/// Elements a bulk routine did (0: not applicable, take the slow step).
type Bulk = fn(&mut Cpu, &Ctx, u64) -> u64;

/// Run `step` once, or as a REP loop; `bulk` may do many RAM elements at a
/// time (each bulk chunk counts as one iteration).
fn drive(
    cpu: &mut Cpu,
    ins: &Instruction,
    rep: Rep,
    step: fn(&mut Cpu, &Ctx) -> Res,
    bulk: Option<Bulk>,
) -> Res {
    let ctx = Ctx {
        bits: addr_bits(ins),
        size: elem_size(ins),
        src_seg: Seg::from_iced(ins.memory_segment()).unwrap_or(Seg::Ds),
    };
    if rep == Rep::Once {
        return step(cpu, &ctx);
    }
    let cm = mask(ctx.bits);
    for _ in 0..MAX_ITERATIONS {
        let count = cpu.gpr[RCX] & cm;
        if count == 0 {
            return Ok(());
        }
        if let Some(b) = bulk {
            let n = b(cpu, &ctx, count);
            if n > 0 {
                set_counter(cpu, ctx.bits, count - n);
                if n == count {
                    return Ok(());
                }
                continue;
            }
        }
        step(cpu, &ctx)?;
        set_counter(cpu, ctx.bits, count - 1);
        if count == 1 {
            return Ok(());
        }
        match rep {
            Rep::WhileEqual if !cpu.flags.zf() => return Ok(()),
            Rep::WhileNotEqual if cpu.flags.zf() => return Ok(()),
            _ => {}
        }
        if cpu.replay_pos > 0 || !cpu.posted.is_empty() || cpu.end_block {
            break;
        }
    }
    // More iterations remain: run this instruction again.
    cpu.branch_to(cpu.rip);
    Ok(())
}

fn rep_plain(ins: &Instruction) -> Rep {
    if ins.has_rep_prefix() || ins.has_repne_prefix() {
        Rep::Plain
    } else {
        Rep::Once
    }
}

fn rep_cond(ins: &Instruction) -> Rep {
    if ins.has_repe_prefix() {
        Rep::WhileEqual
    } else if ins.has_repne_prefix() {
        Rep::WhileNotEqual
    } else {
        Rep::Once
    }
}

fn acc_reg(size: u32) -> Register {
    match size {
        1 => Register::AL,
        2 => Register::AX,
        4 => Register::EAX,
        _ => Register::RAX,
    }
}

fn movs_step(cpu: &mut Cpu, c: &Ctx) -> Res {
    let v = cpu.read_mem(c.src_seg, c.si(cpu), c.size)?;
    cpu.write_mem(Seg::Es, c.di(cpu), c.size, v)?;
    c.advance(cpu, RSI);
    c.advance(cpu, RDI);
    Ok(())
}

fn cmps_step(cpu: &mut Cpu, c: &Ctx) -> Res {
    let a = cpu.read_mem(c.src_seg, c.si(cpu), c.size)?;
    let b = cpu.read_mem(Seg::Es, c.di(cpu), c.size)?;
    c.advance(cpu, RSI);
    c.advance(cpu, RDI);
    cpu.flags
        .set_sub(a, b, false, a.wrapping_sub(b), c.size * 8);
    Ok(())
}

fn scas_step(cpu: &mut Cpu, c: &Ctx) -> Res {
    let a = cpu.gpr[RAX] & mask(c.size * 8);
    let b = cpu.read_mem(Seg::Es, c.di(cpu), c.size)?;
    c.advance(cpu, RDI);
    cpu.flags
        .set_sub(a, b, false, a.wrapping_sub(b), c.size * 8);
    Ok(())
}

fn lods_step(cpu: &mut Cpu, c: &Ctx) -> Res {
    let v = cpu.read_mem(c.src_seg, c.si(cpu), c.size)?;
    cpu.reg_write(acc_reg(c.size), v);
    c.advance(cpu, RSI);
    Ok(())
}

fn stos_step(cpu: &mut Cpu, c: &Ctx) -> Res {
    let v = cpu.gpr[RAX];
    cpu.write_mem(Seg::Es, c.di(cpu), c.size, v)?;
    c.advance(cpu, RDI);
    Ok(())
}

fn ins_step(cpu: &mut Cpu, c: &Ctx) -> Res {
    let port = cpu.gpr[RDX] as u16;
    cpu.check_io(port, c.size)?;
    // Fault on the destination before the port is read, so a page fault
    // does not lose a device read.
    let lin = cpu.seg_lin(Seg::Es, c.di(cpu), c.size, true)?;
    let acc = Access {
        write: true,
        fetch: false,
        user: cpu.cpl == 3,
    };
    cpu.translate(lin, acc)?;
    let last = lin.wrapping_add(u64::from(c.size) - 1);
    if last & !0xfff != lin & !0xfff {
        cpu.translate(last, acc)?;
    }
    let v = cpu.io_in(port, c.size)?;
    cpu.write_lin(lin, c.size, v, false)?;
    c.advance(cpu, RDI);
    Ok(())
}

fn outs_step(cpu: &mut Cpu, c: &Ctx) -> Res {
    let port = cpu.gpr[RDX] as u16;
    cpu.check_io(port, c.size)?;
    let v = cpu.read_mem(c.src_seg, c.si(cpu), c.size)?;
    cpu.io_out(port, c.size, v)?;
    c.advance(cpu, RSI);
    Ok(())
}

/// A forward run of elements from index `idx` in `seg` that lies in one
/// page of RAM the TLB already maps with the needed permission, passes the
/// segment checks at both ends and does not wrap the index: (elements, host
/// pointer of the first). None: take the slow path (which faults or fills
/// the TLB as needed).
fn chunk(
    cpu: &Cpu,
    c: &Ctx,
    seg: Seg,
    idx: u64,
    count: u64,
    write: bool,
) -> Option<(u64, *mut u8)> {
    let size = u64::from(c.size);
    let lin = cpu.seg_lin(seg, idx, c.size, write).ok()?;
    let page_room = (0x1000 - (lin & 0xfff)) / size;
    let room = mask(c.bits).checked_sub(idx)?.checked_sub(size - 1)? / size + 1;
    let n = page_room.min(room).min(count);
    if n == 0 {
        return None;
    }
    cpu.seg_lin(seg, idx + (n - 1) * size, c.size, write).ok()?;
    let need = match (write, cpu.cpl == 3) {
        (false, false) => READ_S,
        (true, false) => WRITE_S,
        (false, true) => READ_U,
        (true, true) => WRITE_U,
    };
    let h = cpu.tlb.lookup(lin, need)?;
    Some((n, h as *mut u8))
}

/// REP STOS forward over RAM.
fn stos_bulk(cpu: &mut Cpu, c: &Ctx, count: u64) -> u64 {
    if cpu.flags.df() {
        return 0;
    }
    let Some((n, h)) = chunk(cpu, c, Seg::Es, c.di(cpu), count, true) else {
        return 0;
    };
    let v = cpu.gpr[RAX].to_le_bytes();
    let size = c.size as usize;
    // SAFETY: `h .. h + n * size` lies in one RAM page the TLB maps for
    // writing (see `chunk`), mapped for the VM's lifetime.
    unsafe {
        if size == 1 {
            std::ptr::write_bytes(h, v[0], n as usize);
        } else {
            for i in 0..n as usize {
                std::ptr::copy_nonoverlapping(v.as_ptr(), h.add(i * size), size);
            }
        }
    }
    let di = cpu.gpr[RDI].wrapping_add(n * u64::from(c.size));
    set_index(cpu, RDI, c.bits, di);
    n
}

/// REP MOVS forward between RAM pages, element by element semantics (an
/// overlapping copy replicates as the hardware's does).
fn movs_bulk(cpu: &mut Cpu, c: &Ctx, count: u64) -> u64 {
    if cpu.flags.df() {
        return 0;
    }
    let Some((ns, src)) = chunk(cpu, c, c.src_seg, c.si(cpu), count, false) else {
        return 0;
    };
    let Some((nd, dst)) = chunk(cpu, c, Seg::Es, c.di(cpu), ns, true) else {
        return 0;
    };
    let n = ns.min(nd);
    let size = c.size as usize;
    let len = n as usize * size;
    let (s, d) = (src as usize, dst as usize);
    // SAFETY: both ranges lie in RAM pages the TLB maps (source readable,
    // destination writable), see `chunk`.
    unsafe {
        if d + len <= s || s + len <= d {
            std::ptr::copy_nonoverlapping(src, dst, len);
        } else {
            let mut e = [0u8; 8];
            for i in 0..n as usize {
                std::ptr::copy(src.add(i * size), e.as_mut_ptr(), size);
                std::ptr::copy(e.as_ptr(), dst.add(i * size), size);
            }
        }
    }
    let step = n * u64::from(c.size);
    let si = cpu.gpr[RSI].wrapping_add(step);
    let di = cpu.gpr[RDI].wrapping_add(step);
    set_index(cpu, RSI, c.bits, si);
    set_index(cpu, RDI, c.bits, di);
    n
}

pub fn movs(cpu: &mut Cpu, ins: &Instruction) -> Res {
    drive(cpu, ins, rep_plain(ins), movs_step, Some(movs_bulk))
}

pub fn cmps(cpu: &mut Cpu, ins: &Instruction) -> Res {
    drive(cpu, ins, rep_cond(ins), cmps_step, None)
}

pub fn scas(cpu: &mut Cpu, ins: &Instruction) -> Res {
    drive(cpu, ins, rep_cond(ins), scas_step, None)
}

pub fn lods(cpu: &mut Cpu, ins: &Instruction) -> Res {
    drive(cpu, ins, rep_plain(ins), lods_step, None)
}

pub fn stos(cpu: &mut Cpu, ins: &Instruction) -> Res {
    drive(cpu, ins, rep_plain(ins), stos_step, Some(stos_bulk))
}

pub fn ins(cpu: &mut Cpu, ins: &Instruction) -> Res {
    drive(cpu, ins, rep_plain(ins), ins_step, None)
}

pub fn outs(cpu: &mut Cpu, ins: &Instruction) -> Res {
    drive(cpu, ins, rep_plain(ins), outs_step, None)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use iced_x86::code_asm::*;

    #[test]
    fn rep_with_zero_count_does_nothing() {
        let mut t = TestCpu::new(64);
        t.write(DATA, &[0xaa; 4]);
        t.exec(|a| {
            a.mov(rdi, DATA).unwrap();
            a.xor(ecx, ecx).unwrap();
            a.mov(al, 0x55u32).unwrap();
            a.rep().stosb().unwrap();
        });
        assert_eq!(t.read(DATA, 4), vec![0xaa; 4]);
        assert_eq!(t.cpu.gpr[7], DATA);
    }

    #[test]
    fn df_set_runs_backwards() {
        let mut t = TestCpu::new(64);
        t.exec(|a| {
            a.std().unwrap();
            a.mov(rdi, DATA + 6).unwrap();
            a.mov(ecx, 3u32).unwrap();
            a.mov(ax, 0x1234u32).unwrap();
            a.rep().stosw().unwrap();
            a.cld().unwrap();
        });
        assert_eq!(
            t.read(DATA, 8),
            vec![0, 0, 0x34, 0x12, 0x34, 0x12, 0x34, 0x12]
        );
        assert_eq!(t.cpu.gpr[7], DATA);
        assert_eq!(t.cpu.gpr[1], 0);
    }

    #[test]
    fn overlapping_movsb_replicates_forward() {
        let mut t = TestCpu::new(32);
        t.write(DATA, &[7, 0, 0, 0, 0]);
        t.exec(|a| {
            a.mov(esi, DATA as u32).unwrap();
            a.mov(edi, DATA as u32 + 1).unwrap();
            a.mov(ecx, 4u32).unwrap();
            a.rep().movsb().unwrap();
        });
        assert_eq!(t.read(DATA, 5), vec![7; 5]);
    }

    #[test]
    fn long_rep_resumes_across_calls() {
        let mut t = TestCpu::new(64);
        let n = 3 * super::MAX_ITERATIONS as u64 + 5;
        t.exec(|a| {
            a.mov(rdi, DATA).unwrap();
            a.mov(rcx, n).unwrap();
            a.mov(al, 1u32).unwrap();
            a.rep().stosb().unwrap();
        });
        assert!(t.read(DATA, n as usize).iter().all(|&b| b == 1));
        assert_eq!(t.read(DATA + n, 1)[0], 0);
        assert_eq!(t.cpu.gpr[1], 0);
    }

    #[test]
    fn sixteen_bit_index_wraps_and_keeps_upper_bits() {
        let mut t = TestCpu::new(16);
        t.cpu.gpr[7] = 0xdead_0000_0000_ffff;
        t.exec(|a| {
            a.mov(ax, 0x2000u32).unwrap();
            a.mov(es, ax).unwrap();
            a.mov(cx, 2u32).unwrap();
            a.mov(al, 0x77u32).unwrap();
            a.rep().stosb().unwrap();
        });
        assert_eq!(t.read(0x2ffff, 1)[0], 0x77);
        assert_eq!(t.read(0x20000, 1)[0], 0x77);
        assert_eq!(t.cpu.gpr[7], 0xdead_0000_0000_0001);
    }

    #[test]
    fn repe_cmpsb_stops_at_first_difference() {
        let mut t = TestCpu::new(64);
        t.write(DATA, b"abcdef");
        t.write(DATA + 0x100, b"abcxef");
        t.exec(|a| {
            a.mov(rsi, DATA).unwrap();
            a.mov(rdi, DATA + 0x100).unwrap();
            a.mov(ecx, 6u32).unwrap();
            a.repe().cmpsb().unwrap();
        });
        assert_eq!(t.cpu.gpr[1], 2);
        assert_eq!(t.cpu.gpr[6], DATA + 4);
        assert!(!t.cpu.flags.zf());
        // REPNE SCASB finds a byte.
        let mut t = TestCpu::new(64);
        t.write(DATA, b"hello\0");
        t.exec(|a| {
            a.mov(rdi, DATA).unwrap();
            a.mov(rcx, -1i64).unwrap();
            a.xor(eax, eax).unwrap();
            a.repne().scasb().unwrap();
        });
        assert_eq!(t.cpu.gpr[7], DATA + 6);
        assert_eq!(t.cpu.gpr[1], u64::MAX - 6);
    }

    #[test]
    fn address_size_prefix_uses_esi_edi_ecx() {
        let mut t = TestCpu::new(64);
        t.write(DATA, &[1, 2, 3]);
        t.cpu.gpr[1] = 0xffff_ffff_0000_0003;
        t.cpu.gpr[6] = 0xffff_ffff_0000_0000 | DATA;
        t.cpu.gpr[7] = 0xffff_ffff_0000_0000 | (DATA + 0x10);
        // 67 F3 A4: rep movsb with 32-bit addressing.
        t.write(CODE, &[0x67, 0xf3, 0xa4, 0xf4]);
        t.cpu.rip = CODE;
        t.run().unwrap();
        assert_eq!(t.read(DATA + 0x10, 3), vec![1, 2, 3]);
        // 32-bit counter and index writes zero-extend in 64-bit mode.
        assert_eq!(t.cpu.gpr[1], 0);
        assert_eq!(t.cpu.gpr[6], DATA + 3);
        assert_eq!(t.cpu.gpr[7], DATA + 0x13);
    }

    #[test]
    fn rep_outsb_posts_one_write_per_call() {
        let mut t = TestCpu::new(32);
        t.write(DATA, b"hi");
        t.exec(|a| {
            a.mov(esi, DATA as u32).unwrap();
            a.mov(dx, 0x3f8u32).unwrap();
            a.mov(ecx, 2u32).unwrap();
            a.rep().outsb().unwrap();
        });
        let outs: Vec<u8> = t
            .cpu
            .posted
            .iter()
            .map(|p| match p {
                crate::cpu::Pending::IoOut {
                    port: 0x3f8, data, ..
                } => data[0],
                _ => 0,
            })
            .collect();
        assert_eq!(outs, b"hi".to_vec());
    }

    /// Element-wise forward copy, as the architecture defines REP MOVS.
    fn reference(mem: &mut [u8], src: usize, dst: usize, n: usize, size: usize) {
        for i in 0..n {
            let mut e = [0u8; 8];
            e[..size].copy_from_slice(&mem[src + i * size..src + (i + 1) * size]);
            mem[dst + i * size..dst + (i + 1) * size].copy_from_slice(&e[..size]);
        }
    }

    #[test]
    fn bulk_movs_matches_element_semantics_across_pages() {
        for (dst_off, size, n) in [(0x3001usize, 8usize, 1500usize), (3, 4, 2500), (1, 1, 9000)] {
            let mut t = TestCpu::new(64);
            let pattern: Vec<u8> = (0..0x8000u32).map(|i| (i * 7 + i / 251) as u8).collect();
            t.write(DATA, &pattern);
            t.exec(|a| {
                a.mov(rsi, DATA).unwrap();
                a.mov(rdi, DATA + dst_off as u64).unwrap();
                a.mov(rcx, n as u64).unwrap();
                match size {
                    8 => a.rep().movsq().unwrap(),
                    4 => a.rep().movsd().unwrap(),
                    _ => a.rep().movsb().unwrap(),
                }
            });
            let mut want = pattern.clone();
            reference(&mut want, 0, dst_off, n, size);
            assert_eq!(t.read(DATA, 0x8000), want, "dst+{dst_off} size {size}");
            assert_eq!(t.cpu.gpr[6], DATA + (n * size) as u64);
            assert_eq!(t.cpu.gpr[1], 0);
        }
    }

    #[test]
    fn rep_insb_takes_one_exit_per_element_and_replays() {
        let mut t = TestCpu::new(32);
        t.load(|a| {
            a.mov(edi, DATA as u32).unwrap();
            a.mov(dx, 0x60u32).unwrap();
            a.mov(ecx, 3u32).unwrap();
            a.rep().insb().unwrap();
        });
        for _ in 0..3 {
            t.step().unwrap();
        }
        let rip = t.cpu.rip;
        for (i, v) in [0x41u8, 0x42, 0x43].into_iter().enumerate() {
            // The read leaves as an exit; nothing is committed.
            assert_eq!(t.step(), Err(crate::cpu::Fault::Exit));
            assert_eq!(
                t.cpu.pending.take(),
                Some(crate::cpu::Pending::IoIn {
                    port: 0x60,
                    size: 1
                })
            );
            assert_eq!(t.cpu.gpr[1], 3 - i as u64);
            // Completing the exit replays the value; the instruction stops
            // after that element with RIP still on it (until the last).
            t.cpu.replay.push(u64::from(v));
            t.step().unwrap();
            assert_eq!(t.cpu.gpr[1], 2 - i as u64);
            if i < 2 {
                assert_eq!(t.cpu.rip, rip);
            }
        }
        assert_ne!(t.cpu.rip, rip);
        assert_eq!(t.read(DATA, 3), b"ABC".to_vec());
        assert_eq!(t.cpu.gpr[7], DATA + 3);
    }

    #[test]
    fn rep_movsb_from_mmio_reads_through_exits() {
        // Source above RAM (MMIO), destination in RAM.
        let mmio = MEM_SIZE as u32 + 0x1000;
        let mut t = TestCpu::new(32);
        t.load(|a| {
            a.mov(esi, mmio).unwrap();
            a.mov(edi, DATA as u32).unwrap();
            a.mov(ecx, 2u32).unwrap();
            a.rep().movsb().unwrap();
        });
        for _ in 0..3 {
            t.step().unwrap();
        }
        for (i, v) in [7u8, 9].into_iter().enumerate() {
            assert_eq!(t.step(), Err(crate::cpu::Fault::Exit));
            assert_eq!(
                t.cpu.pending.take(),
                Some(crate::cpu::Pending::MmioRead {
                    addr: u64::from(mmio) + i as u64,
                    size: 1
                })
            );
            t.cpu.replay.push(u64::from(v));
            t.step().unwrap();
        }
        assert_eq!(t.read(DATA, 2), vec![7, 9]);
        assert_eq!(t.cpu.gpr[1], 0);
    }
}
