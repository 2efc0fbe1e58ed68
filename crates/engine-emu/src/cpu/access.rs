//! Memory access: segmentation (limits, types, canonical checks), linear ->
//! physical through the TLB or a page walk, RAM through host pointers, and
//! everything else as MMIO (in-engine LAPIC/IOAPIC, or an exit). Port I/O
//! goes through here too.
//!
//! Reads that must leave the engine make the instruction stop with
//! `Fault::Exit`; when the exit completes the instruction runs again and the
//! read is answered from `Cpu::replay`. Writes that must leave the engine are
//! posted and leave after the instruction completes.

use kite_hypervisor::x86::{self, CR0_PG, CR0_WP};

use super::{exception, Cpu, Fault, Mode, Pending, Res, Seg};
use crate::memory::PAGE_SHIFT;
use crate::mmu::page_walk::{self, Access, PagingRegs};
use crate::mmu::tlb::*;

#[inline(always)]
pub fn canonical(v: u64) -> bool {
    ((v as i64) << 16 >> 16) as u64 == v
}

/// The fault a bad segment access raises: #SS for the stack segment.
#[inline]
fn seg_fault(seg: Seg) -> Fault {
    if seg == Seg::Ss {
        exception(x86::SS, Some(0))
    } else {
        exception(x86::GP, Some(0))
    }
}

impl Cpu {
    pub fn paging_regs(&self) -> PagingRegs {
        PagingRegs {
            cr0: self.cr0,
            cr3: self.cr3,
            cr4: self.cr4,
            efer: self.efer,
        }
    }

    /// Linear address of `seg:off` for an access of `size` bytes, with the
    /// segment checks of the current mode.
    #[inline(always)]
    pub fn seg_lin(&self, seg: Seg, off: u64, size: u32, write: bool) -> Res<u64> {
        if self.mode == Mode::Long {
            let lin = match seg {
                Seg::Fs | Seg::Gs => off.wrapping_add(self.seg[seg as usize].base),
                _ => off,
            };
            if !canonical(lin) {
                return Err(seg_fault(seg));
            }
            return Ok(lin);
        }
        debug_assert!(
            self.seg_cache_is_current(),
            "segment state changed without refresh_seg_cache"
        );
        if self.seg_is_flat(seg, write) {
            // Base 0, limit 4 GiB, expand-up, right type: only the wrap past
            // 4 GiB faults, as the limit check below would.
            let last = off.wrapping_add(u64::from(size) - 1);
            if last > 0xffff_ffff || last < off {
                return Err(seg_fault(seg));
            }
            return Ok(off);
        }
        let s = &self.seg[seg as usize];
        if self.mode == Mode::Protected {
            if s.unusable {
                return Err(seg_fault(seg));
            }
            let code = s.type_ & 0x8 != 0;
            if write && (code || s.type_ & 0x2 == 0) {
                return Err(seg_fault(seg));
            }
            if !write && code && s.type_ & 0x2 == 0 {
                return Err(seg_fault(seg));
            }
        }
        let last = off.wrapping_add(u64::from(size) - 1);
        let limit = u64::from(s.limit);
        let expand_down = s.type_ & 0xc == 0x4 && s.s;
        if expand_down {
            let upper = if s.db { 0xffff_ffff } else { 0xffff };
            if off <= limit || last > upper {
                return Err(seg_fault(seg));
            }
        } else if last > limit || last < off {
            return Err(seg_fault(seg));
        }
        Ok(s.base.wrapping_add(off) & 0xffff_ffff)
    }

    /// TLB permission bit for a data access at the current privilege.
    #[inline(always)]
    fn need(&self, write: bool, sys: bool) -> u8 {
        let user = self.cpl == 3 && !sys;
        match (write, user) {
            (false, false) => READ_S,
            (true, false) => WRITE_S,
            (false, true) => READ_U,
            (true, true) => WRITE_U,
        }
    }

    /// Translate `lin` for `acc` to a physical address, filling the TLB.
    pub fn translate(&mut self, lin: u64, acc: Access) -> Res<u64> {
        let (phys, user, writable, nx, global, dirty, shift) = if self.cr0 & CR0_PG == 0 {
            let lin = if self.long_mode_active() {
                lin
            } else {
                lin & 0xffff_ffff
            };
            (lin, true, true, false, false, true, 12)
        } else {
            match page_walk::walk(&self.slots, &self.paging_regs(), lin, acc) {
                Ok(w) => (
                    w.phys,
                    w.user,
                    w.writable,
                    w.nx,
                    w.global,
                    w.dirty,
                    w.page_shift,
                ),
                Err(code) => {
                    self.cr2 = lin;
                    return Err(exception(x86::PF, Some(code)));
                }
            }
        };
        if let Some(page) = self.slots.page(phys) {
            let pfn = phys >> PAGE_SHIFT;
            let mut perms = READ_S | if user { READ_U } else { 0 };
            if !nx {
                perms |= EXEC_S | if user { EXEC_U } else { 0 };
            }
            let wp = self.cr0 & CR0_WP != 0 || self.cr0 & CR0_PG == 0;
            if acc.write && dirty && !page.readonly && !self.code.is_code(pfn) {
                if writable || !wp {
                    perms |= WRITE_S;
                }
                if writable && user {
                    perms |= WRITE_U;
                }
                if page.log_dirty {
                    if let Some(s) = self.slots.find(phys) {
                        s.mark_dirty(phys);
                    }
                }
            }
            self.tlb
                .insert(lin, page.host as u64, phys & !0xfff, perms, global);
            if shift > 12 {
                self.tlb.note_large(lin, shift);
            }
        }
        Ok(phys)
    }

    /// Read `size` (1, 2, 4, 8) bytes at a linear address. `sys`: an implicit
    /// supervisor access (descriptor tables, TSS, IDT).
    #[inline(always)]
    pub fn read_lin(&mut self, lin: u64, size: u32, sys: bool) -> Res<u64> {
        if !self.watchpoints.is_empty() {
            self.check_watch(lin, u64::from(size), false);
        }
        if (lin & 0xfff) + u64::from(size) <= 0x1000 {
            if let Some(h) = self.tlb.lookup(lin, self.need(false, sys)) {
                // SAFETY: the TLB only holds pages of RAM slots; the access
                // stays inside the page (checked above).
                return Ok(unsafe {
                    match size {
                        1 => u64::from(*(h as *const u8)),
                        2 => u64::from((h as *const u16).read_unaligned()),
                        4 => u64::from((h as *const u32).read_unaligned()),
                        _ => (h as *const u64).read_unaligned(),
                    }
                });
            }
        }
        let mut b = [0u8; 8];
        self.read_lin_bytes(lin, &mut b[..size as usize], sys)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Write `size` (1, 2, 4, 8) bytes at a linear address.
    #[inline(always)]
    pub fn write_lin(&mut self, lin: u64, size: u32, val: u64, sys: bool) -> Res {
        if !self.watchpoints.is_empty() {
            self.check_watch(lin, u64::from(size), true);
        }
        if (lin & 0xfff) + u64::from(size) <= 0x1000 {
            if let Some(h) = self.tlb.lookup(lin, self.need(true, sys)) {
                // SAFETY: as in read_lin; write permission means RAM, writable,
                // and not holding decoded code.
                unsafe {
                    match size {
                        1 => *(h as *mut u8) = val as u8,
                        2 => (h as *mut u16).write_unaligned(val as u16),
                        4 => (h as *mut u32).write_unaligned(val as u32),
                        _ => (h as *mut u64).write_unaligned(val),
                    }
                }
                return Ok(());
            }
        }
        self.write_lin_bytes(lin, &val.to_le_bytes()[..size as usize], sys)
    }

    /// Note the first watchpoint a data access of `size` bytes at `lin` hits.
    #[cold]
    fn check_watch(&mut self, lin: u64, size: u64, write: bool) {
        if self.watch_hit.is_none() {
            self.watch_hit = self
                .watchpoints
                .iter()
                .find(|w| w.hits(lin, size, write))
                .copied();
        }
    }

    /// Translate both pages of an access first so a fault leaves nothing half done.
    fn translate_span(&mut self, lin: u64, len: usize, acc: Access) -> Res<[(u64, u64, usize); 2]> {
        let first = (0x1000 - (lin & 0xfff) as usize).min(len);
        let p0 = self.translate(lin, acc)?;
        let mut parts = [(lin, p0, first), (0, 0, 0)];
        if first < len {
            let lin2 = if self.mode == Mode::Long {
                lin.wrapping_add(first as u64)
            } else {
                lin.wrapping_add(first as u64) & 0xffff_ffff
            };
            let p1 = self.translate(lin2, acc)?;
            parts[1] = (lin2, p1, len - first);
        }
        Ok(parts)
    }

    /// Read any number of bytes (up to two pages) at a linear address.
    pub fn read_lin_bytes(&mut self, lin: u64, buf: &mut [u8], sys: bool) -> Res {
        if !self.watchpoints.is_empty() {
            self.check_watch(lin, buf.len() as u64, false);
        }
        let acc = Access {
            write: false,
            fetch: false,
            user: self.cpl == 3 && !sys,
        };
        let mut done = 0;
        while done < buf.len() {
            let chunk = (buf.len() - done).min(4096);
            let cur = if self.mode == Mode::Long {
                lin.wrapping_add(done as u64)
            } else {
                lin.wrapping_add(done as u64) & 0xffff_ffff
            };
            let parts = self.translate_span(cur, chunk, acc)?;
            for (_, phys, n) in parts {
                if n == 0 {
                    continue;
                }
                self.read_phys(phys, &mut buf[done..done + n])?;
                done += n;
            }
        }
        Ok(())
    }

    /// Write any number of bytes at a linear address; all pages are
    /// translated (and may fault) before any byte is written.
    pub fn write_lin_bytes(&mut self, lin: u64, buf: &[u8], sys: bool) -> Res {
        if !self.watchpoints.is_empty() {
            self.check_watch(lin, buf.len() as u64, true);
        }
        let acc = Access {
            write: true,
            fetch: false,
            user: self.cpl == 3 && !sys,
        };
        if buf.len() <= 4096 {
            let parts = self.translate_span(lin, buf.len(), acc)?;
            let mut done = 0;
            for (_, phys, n) in parts {
                if n == 0 {
                    continue;
                }
                self.write_phys(phys, &buf[done..done + n])?;
                done += n;
            }
            return Ok(());
        }
        // Large (XSAVE-sized) stores: check every page first.
        let mut off = 0;
        while off < buf.len() {
            let cur = lin.wrapping_add(off as u64);
            let n = (0x1000 - (cur & 0xfff) as usize).min(buf.len() - off);
            self.translate(cur, acc)?;
            off += n;
        }
        let mut off = 0;
        while off < buf.len() {
            let cur = lin.wrapping_add(off as u64);
            let n = (0x1000 - (cur & 0xfff) as usize).min(buf.len() - off);
            let phys = self.translate(cur, acc)?;
            self.write_phys(phys, &buf[off..off + n])?;
            off += n;
        }
        Ok(())
    }

    /// Read guest-physical bytes (RAM or MMIO).
    pub fn read_phys(&mut self, phys: u64, buf: &mut [u8]) -> Res {
        if self.slots.read(phys, buf) {
            return Ok(());
        }
        // MMIO: in pieces of at most 8 bytes.
        let mut off = 0;
        while off < buf.len() {
            let n = (buf.len() - off).min(8);
            let v = self.mmio_read(phys + off as u64, n as u32)?;
            buf[off..off + n].copy_from_slice(&v.to_le_bytes()[..n]);
            off += n;
        }
        Ok(())
    }

    /// Write guest-physical bytes (RAM, or MMIO / read-only slots as exits).
    pub fn write_phys(&mut self, phys: u64, buf: &[u8]) -> Res {
        let ram = self.slots.find(phys).map(|s| s.region.readonly);
        if ram == Some(false) {
            let first = phys >> PAGE_SHIFT;
            let last = (phys + buf.len() as u64 - 1) >> PAGE_SHIFT;
            let was_code = (first..=last).any(|p| self.code.is_code(p));
            if self.slots.write(phys, buf, &self.code) {
                if was_code {
                    // The decoded block being run may be stale now.
                    self.end_block = true;
                }
                return Ok(());
            }
        }
        let mut off = 0;
        while off < buf.len() {
            let n = (buf.len() - off).min(16);
            self.mmio_write(phys + off as u64, &buf[off..off + n])?;
            off += n;
        }
        Ok(())
    }

    /// An MMIO read: in-engine devices, else a replayed exit result, else an exit.
    pub fn mmio_read(&mut self, phys: u64, size: u32) -> Res<u64> {
        let mut b = [0u8; 8];
        let n = size as usize;
        if let Some(irq) = &self.irq {
            if irq.lapic_mmio_read(phys, &mut b[..n]) {
                return Ok(u64::from_le_bytes(b));
            }
        }
        if let Some(chip) = &self.chip {
            if chip.ioapic_mmio_read(phys, &mut b[..n]) {
                return Ok(u64::from_le_bytes(b));
            }
        }
        self.replayed_read(Pending::MmioRead {
            addr: phys,
            size: size as u8,
        })
    }

    /// An MMIO write: in-engine devices, else posted as an exit.
    pub fn mmio_write(&mut self, phys: u64, data: &[u8]) -> Res {
        if let Some(irq) = &self.irq {
            if irq.lapic_mmio_write(phys, data) {
                self.end_block = true;
                return Ok(());
            }
        }
        if let Some(chip) = &self.chip {
            if chip.ioapic_mmio_write(phys, data) {
                return Ok(());
            }
        }
        let mut d = [0u8; 16];
        d[..data.len()].copy_from_slice(data);
        self.posted.push_back(Pending::MmioWrite {
            addr: phys,
            size: data.len() as u8,
            data: d,
        });
        // The exit leaves after this instruction (see `Cpu::run`).
        self.end_block = true;
        Ok(())
    }

    /// A read that leaves the engine: answered from the replay log when the
    /// instruction re-executes, else the instruction stops with an exit.
    fn replayed_read(&mut self, p: Pending) -> Res<u64> {
        if self.replay_pos < self.replay.len() {
            let v = self.replay[self.replay_pos];
            self.replay_pos += 1;
            return Ok(v);
        }
        self.pending = Some(p);
        Err(Fault::Exit)
    }

    /// IN of `size` (1, 2, 4) bytes. The caller has done the I/O permission check.
    pub fn io_in(&mut self, port: u16, size: u32) -> Res<u64> {
        let mut b = [0u8; 4];
        if let Some(chip) = &self.chip {
            if chip.pio_read(port, &mut b[..size as usize]) {
                return Ok(u64::from(u32::from_le_bytes(b)));
            }
        }
        self.replayed_read(Pending::IoIn {
            port,
            size: size as u8,
        })
    }

    /// OUT of `size` bytes; leaves as an exit after the instruction.
    pub fn io_out(&mut self, port: u16, size: u32, val: u64) -> Res {
        let data = (val as u32).to_le_bytes();
        if let Some(chip) = &self.chip {
            if chip.pio_write(port, &data[..size as usize]) {
                return Ok(());
            }
        }
        self.posted.push_back(Pending::IoOut {
            port,
            size: size as u8,
            data,
        });
        self.end_block = true;
        Ok(())
    }

    /// Read through a segment.
    #[inline(always)]
    pub fn read_mem(&mut self, seg: Seg, off: u64, size: u32) -> Res<u64> {
        let lin = self.seg_lin(seg, off, size, false)?;
        self.read_lin(lin, size, false)
    }

    /// Write through a segment.
    #[inline(always)]
    pub fn write_mem(&mut self, seg: Seg, off: u64, size: u32, val: u64) -> Res {
        let lin = self.seg_lin(seg, off, size, true)?;
        self.write_lin(lin, size, val, false)
    }

    /// Read `buf.len()` bytes through a segment (FPU, SSE, descriptors).
    pub fn read_mem_bytes(&mut self, seg: Seg, off: u64, buf: &mut [u8]) -> Res {
        let lin = self.seg_lin(seg, off, buf.len() as u32, false)?;
        self.read_lin_bytes(lin, buf, false)
    }

    pub fn write_mem_bytes(&mut self, seg: Seg, off: u64, buf: &[u8]) -> Res {
        let lin = self.seg_lin(seg, off, buf.len() as u32, true)?;
        self.write_lin_bytes(lin, buf, false)
    }

    /// Mask of the stack pointer for the current stack size.
    #[inline]
    pub fn sp_mask(&self) -> u64 {
        self.seg_cache.sp_mask
    }

    /// Set RSP, keeping the bits above the stack size (16-bit stacks).
    #[inline]
    pub fn set_sp(&mut self, v: u64) {
        let m = self.sp_mask();
        let rsp = &mut self.gpr[super::reg::RSP];
        *rsp = (*rsp & !m) | (v & m);
    }

    /// Push `size` bytes (2, 4, 8): write first, then commit RSP.
    #[inline]
    pub fn push(&mut self, val: u64, size: u32) -> Res {
        let m = self.sp_mask();
        let sp = self.gpr[super::reg::RSP].wrapping_sub(u64::from(size)) & m;
        let lin = self.seg_lin(Seg::Ss, sp, size, true)?;
        self.write_lin(lin, size, val, false)?;
        self.set_sp(sp);
        Ok(())
    }

    /// Read the stack at RSP + `offset` without moving RSP.
    #[inline]
    pub fn stack_peek(&mut self, offset: u64, size: u32) -> Res<u64> {
        let sp = self.gpr[super::reg::RSP].wrapping_add(offset) & self.sp_mask();
        let lin = self.seg_lin(Seg::Ss, sp, size, false)?;
        self.read_lin(lin, size, false)
    }

    /// Pop `size` bytes: read, then commit RSP.
    #[inline]
    pub fn pop(&mut self, size: u32) -> Res<u64> {
        let v = self.stack_peek(0, size)?;
        let sp = self.gpr[super::reg::RSP].wrapping_add(u64::from(size));
        self.set_sp(sp);
        Ok(v)
    }

    /// Instruction fetch translation of `lin` (for the block decoder).
    pub fn translate_fetch(&mut self, lin: u64) -> Res<u64> {
        let need = if self.cpl == 3 { EXEC_U } else { EXEC_S };
        if let Some(e) = self.tlb.entry(lin) {
            if e.perms & need == need {
                return Ok(e.phys | (lin & 0xfff));
            }
        }
        self.translate(
            lin,
            Access {
                write: false,
                fetch: true,
                user: self.cpl == 3,
            },
        )
    }
}
