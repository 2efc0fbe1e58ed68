//! Test support for the x87/MMX/SSE groups: a `Cpu` in 64-bit mode with
//! identity-mapped memory (2 MiB pages), and a runner that executes real
//! instruction bytes (assembled with iced's code_asm) through the engine's
//! handler lookup, one instruction at a time, stopping at the first fault.

use std::sync::Arc;

use iced_x86::code_asm::CodeAssembler;
use iced_x86::{Decoder, DecoderOptions};
use kite_hypervisor::{x86, MemoryRegion, Segment};

use crate::cpu::{exec, Cpu, Fault, Res};
use crate::memory::PhysMemory;

/// Guest RAM size of the test machine.
pub const MEM_SIZE: usize = 4 << 20;
/// Where test code is placed.
pub const CODE: u64 = 0x10_0000;
/// A data area tests may use freely (64 KiB, 4 KiB aligned).
pub const DATA: u64 = 0x20_0000;

pub struct TestCpu {
    pub cpu: Cpu,
    // Keeps the guest RAM alive for as long as `cpu` points into it.
    mem: Vec<u8>,
}

impl Default for TestCpu {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCpu {
    /// A CPU in 64-bit mode, CPL 0, with CR4.OSFXSR/OSXMMEXCPT, CR0.NE/MP.
    pub fn new() -> TestCpu {
        let mut mem = vec![0u8; MEM_SIZE];
        // PML4 at 0x1000 -> PDPT at 0x2000 -> PD at 0x3000 (2 MiB pages).
        let put = |m: &mut Vec<u8>, at: usize, v: u64| {
            m[at..at + 8].copy_from_slice(&v.to_le_bytes());
        };
        put(&mut mem, 0x1000, 0x2000 | 3);
        put(&mut mem, 0x2000, 0x3000 | 3);
        for i in 0..(MEM_SIZE >> 21) {
            put(&mut mem, 0x3000 + i * 8, ((i as u64) << 21) | 0x83);
        }
        let phys = Arc::new(PhysMemory::new());
        // SAFETY: `mem` lives in the returned TestCpu next to the Cpu using it
        // and is never reallocated.
        phys.set_region(MemoryRegion {
            slot: 0,
            guest_phys_addr: 0,
            size: MEM_SIZE as u64,
            host_addr: mem.as_mut_ptr() as u64,
            readonly: false,
            log_dirty: false,
        })
        .unwrap();
        let mut cpu = Cpu::new(phys, None, None, 0);
        cpu.cr0 = x86::CR0_PE | x86::CR0_PG | x86::CR0_ET | x86::CR0_NE | x86::CR0_MP;
        cpu.cr3 = 0x1000;
        cpu.cr4 = x86::CR4_PAE | x86::CR4_OSFXSR | x86::CR4_OSXMMEXCPT;
        cpu.efer = x86::EFER_LME | x86::EFER_LMA;
        let data = Segment {
            selector: 0x10,
            type_: 3,
            present: true,
            s: true,
            limit: 0xffff_ffff,
            g: true,
            db: true,
            ..Default::default()
        };
        for s in 0..6 {
            cpu.seg[s] = data;
        }
        cpu.seg[1] = Segment {
            selector: 0x8,
            type_: 0xb,
            l: true,
            db: false,
            ..data
        };
        cpu.update_mode();
        cpu.sync_memory_epochs();
        cpu.gpr[4] = DATA + 0xf000;
        TestCpu { cpu, mem }
    }

    /// Assemble `f` at CODE and run it; returns the first fault, if any.
    pub fn run(&mut self, f: impl FnOnce(&mut CodeAssembler)) -> Res {
        let mut a = CodeAssembler::new(64).unwrap();
        f(&mut a);
        let code = a.assemble(CODE).unwrap();
        self.run_bytes(&code)
    }

    /// Run raw instruction bytes placed at CODE.
    pub fn run_bytes(&mut self, code: &[u8]) -> Res {
        let at = CODE as usize;
        self.mem[at..at + code.len()].copy_from_slice(code);
        let mut dec = Decoder::with_ip(64, code, CODE, DecoderOptions::NONE);
        self.cpu.rip = CODE;
        while dec.can_decode() {
            let ins = dec.decode();
            let h = exec::handler_for(&ins);
            self.cpu.next_rip = ins.next_ip();
            h(&mut self.cpu, &ins)?;
            self.cpu.rip = self.cpu.next_rip;
        }
        Ok(())
    }

    pub fn write(&mut self, addr: u64, bytes: &[u8]) {
        let a = addr as usize;
        self.mem[a..a + bytes.len()].copy_from_slice(bytes);
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let a = addr as usize;
        self.mem[a..a + len].to_vec()
    }

    pub fn read_u64(&self, addr: u64) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.read(addr, 8));
        u64::from_le_bytes(b)
    }

    pub fn read_u128(&self, addr: u64) -> u128 {
        let mut b = [0u8; 16];
        b.copy_from_slice(&self.read(addr, 16));
        u128::from_le_bytes(b)
    }
}

/// The vector of an exception fault.
pub fn vector(r: Res) -> Option<u8> {
    match r {
        Err(Fault::Exception(e)) => Some(e.vector),
        _ => None,
    }
}
