//! Read-modify-write of an operand, atomic when the instruction is LOCKed
//! (or is XCHG with memory): vCPUs are host threads sharing guest RAM, so a
//! locked operation on RAM runs as a compare-and-swap loop on the host
//! pointer. An operand that is not plain RAM in one page (MMIO, a page that
//! holds decoded code, a read-only slot, a page-crossing split lock) takes
//! the ordinary read-then-write path: correct for one vCPU, not atomic
//! against others.

use super::Loc;
use crate::cpu::{Cpu, Res};
use crate::mmu::page_walk::Access;
use crate::mmu::tlb::{WRITE_S, WRITE_U};

impl Cpu {
    /// Read-modify-write `size` (1, 2, 4, 8) bytes at `loc`: `f(old)` is the
    /// new value; returns `(old, new)`. `f` may run more than once (CAS
    /// retries), so it must be a pure function of `old`. Nothing is
    /// committed if the access faults.
    pub(crate) fn rmw(
        &mut self,
        loc: Loc,
        size: u32,
        locked: bool,
        f: impl Fn(u64) -> u64,
    ) -> Res<(u64, u64)> {
        match loc {
            Loc::Reg(r) => {
                let old = self.reg_read(r);
                let new = f(old);
                self.reg_write(r, new);
                Ok((old, new))
            }
            Loc::Mem(lin) => {
                if locked {
                    if let Some(h) = self.host_write_ptr(lin, size)? {
                        return Ok(host::cas_loop(h, size, &f));
                    }
                }
                let old = self.read_lin(lin, size, false)?;
                let new = f(old);
                self.write_lin(lin, size, new, false)?;
                Ok((old, new))
            }
        }
    }

    /// 16-byte read-modify-write at linear `lin` (CMPXCHG16B); the caller
    /// has checked alignment.
    pub(crate) fn rmw16(
        &mut self,
        lin: u64,
        locked: bool,
        f: impl Fn(u128) -> u128,
    ) -> Res<(u128, u128)> {
        if locked {
            if let Some(h) = self.host_write_ptr(lin, 16)? {
                // The host's CMPXCHG16B faults on misalignment: only a
                // 16-byte aligned host address takes the atomic path.
                if (h as usize).is_multiple_of(16) {
                    return Ok(host::cas_loop16(h, &f));
                }
            }
        }
        let mut b = [0u8; 16];
        self.read_lin_bytes(lin, &mut b, false)?;
        let old = u128::from_le_bytes(b);
        let new = f(old);
        self.write_lin_bytes(lin, &new.to_le_bytes(), false)?;
        Ok((old, new))
    }

    /// A host pointer through which `size` bytes at `lin` may be written
    /// directly (RAM, writable, no decoded code, within one page), after
    /// the page walk's checks for a write. `None`: use the slow path.
    fn host_write_ptr(&mut self, lin: u64, size: u32) -> Res<Option<*mut u8>> {
        if (lin & 0xfff) + u64::from(size) > 0x1000 {
            return Ok(None);
        }
        let user = self.cpl == 3;
        let need = if user { WRITE_U } else { WRITE_S };
        if let Some(h) = self.tlb.lookup(lin, need) {
            return Ok(Some(h as *mut u8));
        }
        self.translate(
            lin,
            Access {
                write: true,
                fetch: false,
                user,
            },
        )?;
        Ok(self.tlb.lookup(lin, need).map(|h| h as *mut u8))
    }
}

/// Compare-and-swap on host memory.
mod host {
    use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

    /// Load `size` bytes at `p`.
    ///
    /// # Safety
    /// `p..p+size` is valid guest RAM (a TLB entry's page).
    unsafe fn load(p: *mut u8, size: u32) -> u64 {
        // SAFETY: the caller's contract; volatile because other vCPU
        // threads write the same memory.
        unsafe {
            match size {
                1 => u64::from(std::ptr::read_volatile(p)),
                2 => u64::from(u16::from_le_bytes(std::ptr::read_volatile(
                    p as *const [u8; 2],
                ))),
                4 => u64::from(u32::from_le_bytes(std::ptr::read_volatile(
                    p as *const [u8; 4],
                ))),
                _ => u64::from_le_bytes(std::ptr::read_volatile(p as *const [u8; 8])),
            }
        }
    }

    /// Atomically replace `old` by `new` at `p`; false if memory changed.
    ///
    /// # Safety
    /// As `load`.
    unsafe fn cas(p: *mut u8, size: u32, old: u64, new: u64) -> bool {
        let aligned = (p as usize).is_multiple_of(size as usize);
        if aligned {
            // SAFETY: aligned, valid for `size` bytes, and only ever
            // accessed atomically or by plain guest accesses (which on x86
            // are atomic at this size and alignment too).
            unsafe {
                return match size {
                    1 => AtomicU8::from_ptr(p)
                        .compare_exchange(old as u8, new as u8, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok(),
                    2 => AtomicU16::from_ptr(p as *mut u16)
                        .compare_exchange(
                            old as u16,
                            new as u16,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        )
                        .is_ok(),
                    4 => AtomicU32::from_ptr(p as *mut u32)
                        .compare_exchange(
                            old as u32,
                            new as u32,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        )
                        .is_ok(),
                    _ => AtomicU64::from_ptr(p as *mut u64)
                        .compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok(),
                };
            }
        }
        // SAFETY: as above; misaligned locked accesses need the host's own
        // (split-lock capable) LOCK CMPXCHG.
        unsafe { cas_unaligned(p, size, old, new) }
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn cas_unaligned(p: *mut u8, size: u32, old: u64, new: u64) -> bool {
        use std::arch::asm;
        let prev: u64;
        // SAFETY: `p` is valid for `size` bytes (caller's contract).
        unsafe {
            match size {
                1 => asm!("lock cmpxchg byte ptr [{p}], {n}", p = in(reg) p,
                    n = in(reg_byte) new as u8, inout("rax") old => prev, options(nostack)),
                2 => asm!("lock cmpxchg word ptr [{p}], {n:x}", p = in(reg) p,
                    n = in(reg) new, inout("rax") old => prev, options(nostack)),
                4 => asm!("lock cmpxchg dword ptr [{p}], {n:e}", p = in(reg) p,
                    n = in(reg) new, inout("rax") old => prev, options(nostack)),
                _ => asm!("lock cmpxchg qword ptr [{p}], {n}", p = in(reg) p,
                    n = in(reg) new, inout("rax") old => prev, options(nostack)),
            }
        }
        let m = crate::cpu::flags::mask(size * 8);
        prev & m == old & m
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn cas_unaligned(p: *mut u8, size: u32, old: u64, new: u64) -> bool {
        // No split-lock CAS on this host: not atomic against other vCPUs.
        // SAFETY: `p` is valid for `size` bytes (caller's contract).
        unsafe {
            if load(p, size) != old {
                return false;
            }
            let b = new.to_le_bytes();
            std::ptr::copy_nonoverlapping(b.as_ptr(), p, size as usize);
        }
        true
    }

    /// CAS loop: returns (old, new) of the successful exchange.
    pub(super) fn cas_loop(p: *mut u8, size: u32, f: &dyn Fn(u64) -> u64) -> (u64, u64) {
        loop {
            // SAFETY: `p` comes from a TLB entry with write permission (RAM
            // page, mapped for the VM's lifetime) and `p..p+size` stays in
            // the page (checked by host_write_ptr).
            let old = unsafe { load(p, size) };
            let new = f(old);
            // SAFETY: as above.
            if unsafe { cas(p, size, old, new) } {
                return (old, new);
            }
        }
    }

    /// 16-byte CAS loop (CMPXCHG16B); `p` is 16-byte aligned.
    pub(super) fn cas_loop16(p: *mut u8, f: &dyn Fn(u128) -> u128) -> (u128, u128) {
        loop {
            // SAFETY: as in cas_loop (16 bytes in one page).
            let old = u128::from_le_bytes(unsafe { std::ptr::read_volatile(p as *const [u8; 16]) });
            let new = f(old);
            // SAFETY: as above.
            if unsafe { cas16(p, old, new) } {
                return (old, new);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn cas16(p: *mut u8, old: u128, new: u128) -> bool {
        use std::arch::asm;
        let (lo, hi): (u64, u64);
        // SAFETY: `p` is valid for 16 bytes and 16-byte aligned (checked by
        // the caller). RBX is reserved by the compiler, hence the exchange.
        unsafe {
            asm!(
                "xchg {nb}, rbx",
                "lock cmpxchg16b xmmword ptr [{p}]",
                "xchg {nb}, rbx",
                p = in(reg) p,
                nb = inout(reg) new as u64 => _,
                in("rcx") (new >> 64) as u64,
                inout("rax") old as u64 => lo,
                inout("rdx") (old >> 64) as u64 => hi,
                options(nostack),
            );
        }
        (u128::from(lo) | (u128::from(hi) << 64)) == old
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn cas16(p: *mut u8, old: u128, new: u128) -> bool {
        // SAFETY: as above; not atomic against other vCPUs on this host.
        unsafe {
            if u128::from_le_bytes(std::ptr::read_volatile(p as *const [u8; 16])) != old {
                return false;
            }
            std::ptr::copy_nonoverlapping(new.to_le_bytes().as_ptr(), p, 16);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use iced_x86::code_asm::*;
    use kite_hypervisor::{
        x86, FlatKind, Hypervisor, MemoryRegion, Segment, Vcpu, VcpuExit, VmConfig,
    };

    const COUNTER: u64 = 0x20000;
    const ITERATIONS: u32 = 200_000;

    /// Two vCPU threads increment one counter with `body`; a lost update
    /// would leave less than 2 * ITERATIONS.
    fn two_vcpus(body: fn(&mut CodeAssembler)) -> u64 {
        let hv = crate::EmuHypervisor::new();
        let vm = hv
            .create_vm(&VmConfig {
                irqchip: false,
                pit: false,
                vcpus: 2,
            })
            .unwrap();
        let mut mem = vec![0u8; 1 << 20];
        let mut a = CodeAssembler::new(32).unwrap();
        let mut top = a.create_label();
        a.mov(esi, ITERATIONS).unwrap();
        a.set_label(&mut top).unwrap();
        body(&mut a);
        a.dec(esi).unwrap();
        a.jnz(top).unwrap();
        a.hlt().unwrap();
        let code = a.assemble(0x1000).unwrap();
        mem[0x1000..0x1000 + code.len()].copy_from_slice(&code);
        // SAFETY: `mem` outlives the VM's use of it (the threads are joined
        // below, before it is dropped).
        unsafe {
            vm.set_memory_region(MemoryRegion {
                slot: 0,
                guest_phys_addr: 0,
                size: mem.len() as u64,
                host_addr: mem.as_mut_ptr() as u64,
                readonly: false,
                log_dirty: false,
            })
            .unwrap();
        }
        let mut threads = Vec::new();
        for id in 0..2 {
            let mut vcpu = vm.create_vcpu(id).unwrap();
            let mut s = vcpu.sregs().unwrap();
            s.cs = Segment::flat(8, FlatKind::Code32);
            s.ds = Segment::flat(0x10, FlatKind::Data);
            s.es = s.ds;
            s.ss = s.ds;
            s.cr0 = x86::CR0_PE;
            vcpu.set_sregs(&s).unwrap();
            let mut r = vcpu.regs().unwrap();
            r.rip = 0x1000;
            r.rsp = 0x8000 + u64::from(id) * 0x1000;
            vcpu.set_regs(&r).unwrap();
            threads.push(std::thread::spawn(move || {
                let mut vcpu: Box<dyn Vcpu> = vcpu;
                match vcpu.run().unwrap() {
                    VcpuExit::Hlt => {}
                    e => panic!("unexpected exit {e:?}"),
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        u64::from_le_bytes(
            mem[COUNTER as usize..COUNTER as usize + 8]
                .try_into()
                .unwrap(),
        )
    }

    #[test]
    fn lock_xadd_is_atomic_across_vcpu_threads() {
        let n = two_vcpus(|a| {
            a.mov(eax, 1u32).unwrap();
            a.lock().xadd(dword_ptr(COUNTER as u32), eax).unwrap();
        });
        assert_eq!(n, 2 * u64::from(ITERATIONS));
    }

    #[test]
    fn lock_cmpxchg_loop_is_atomic_across_vcpu_threads() {
        let n = two_vcpus(|a| {
            let mut retry = a.create_label();
            a.nop().unwrap();
            a.set_label(&mut retry).unwrap();
            a.mov(eax, dword_ptr(COUNTER as u32)).unwrap();
            a.lea(ecx, dword_ptr(eax + 1)).unwrap();
            a.lock().cmpxchg(dword_ptr(COUNTER as u32), ecx).unwrap();
            a.jnz(retry).unwrap();
        });
        assert_eq!(n, 2 * u64::from(ITERATIONS));
    }

    #[test]
    fn misaligned_lock_inc_is_atomic_across_vcpu_threads() {
        // A 4-byte counter at an odd address inside one page.
        let n = two_vcpus(|a| {
            a.lock().inc(dword_ptr(COUNTER as u32 + 1)).unwrap();
        });
        assert_eq!(n >> 8 & 0xffff_ffff, 2 * u64::from(ITERATIONS));
    }

    #[test]
    fn locked_ops_on_page_crossing_and_mmio_operands_fall_back() {
        use super::super::test_support::*;
        let mut t = TestCpu::new(64);
        let split = DATA + 0xffe;
        t.write(split, &0x0102_0304u32.to_le_bytes());
        t.exec(|a| {
            a.mov(eax, 0x10u32).unwrap();
            a.lock().xadd(dword_ptr(split), eax).unwrap();
            a.mov(ecx, 0x55u32).unwrap();
            a.xchg(dword_ptr(split), ecx).unwrap();
        });
        assert_eq!(t.cpu.gpr[0], 0x0102_0304);
        assert_eq!(t.cpu.gpr[1], 0x0102_0314);
        assert_eq!(t.read(split, 4), 0x55u32.to_le_bytes().to_vec());
        // A locked RMW of MMIO reads through an exit, then posts the write.
        let mmio = MEM_SIZE as u64 + 0x2000;
        let mut t = TestCpu::new(64);
        t.load(|a| {
            a.mov(rbx, mmio).unwrap();
            a.lock().or(dword_ptr(rbx), 0x80i32).unwrap();
        });
        t.step().unwrap();
        assert_eq!(t.step(), Err(crate::cpu::Fault::Exit));
        t.cpu.pending = None;
        t.cpu.replay.push(1);
        t.step().unwrap();
        match t.cpu.posted.pop_front() {
            Some(crate::cpu::Pending::MmioWrite {
                addr,
                size: 4,
                data,
            }) => {
                assert_eq!(addr, mmio);
                assert_eq!(&data[..4], &0x81u32.to_le_bytes());
            }
            p => panic!("unexpected {p:?}"),
        }
    }
}
