//! Test support: a CPU over 4 MiB of guest RAM in real, 32-bit protected or
//! 64-bit mode (long mode set up directly: identity-mapped 2 MiB pages),
//! code assembled with iced's code_asm, and a single-step executor that
//! reports the fault an instruction raised.

use std::sync::Arc;

use iced_x86::code_asm::CodeAssembler;
use iced_x86::{Decoder, DecoderOptions, Mnemonic};
use kite_hypervisor::{x86, FlatKind, MemoryRegion, Segment};

use crate::cpu::{Cpu, Fault, Seg};
use crate::memory::PhysMemory;

pub const MEM_SIZE: usize = 4 << 20;
pub const CODE: u64 = 0x10000;
pub const DATA: u64 = 0x20000;
pub const STACK_TOP: u64 = 0x80000;

pub struct TestCpu {
    pub cpu: Cpu,
    /// Backing of guest RAM; the CPU writes it through host pointers.
    _ram: Box<[u8]>,
}

impl TestCpu {
    /// A CPU in `bits`-bit mode (16: real mode, 32: flat protected mode,
    /// 64: long mode), RSP at STACK_TOP.
    pub fn new(bits: u32) -> TestCpu {
        let mem = Arc::new(PhysMemory::new());
        let mut ram = vec![0u8; MEM_SIZE].into_boxed_slice();
        mem.set_region(MemoryRegion {
            slot: 0,
            guest_phys_addr: 0,
            size: MEM_SIZE as u64,
            host_addr: ram.as_mut_ptr() as u64,
            readonly: false,
            log_dirty: false,
        })
        .expect("register test RAM");
        let mut cpu = Cpu::new(mem, None, None, 0);
        cpu.sync_memory_epochs();
        let mut t = TestCpu { cpu, _ram: ram };
        t.set_mode(bits);
        t.cpu.gpr[crate::cpu::reg::RSP] = STACK_TOP;
        t
    }

    fn set_mode(&mut self, bits: u32) {
        let c = &mut self.cpu;
        match bits {
            16 => {
                for s in Seg::ALL {
                    c.seg[s as usize] = Segment::real_mode(0, s == Seg::Cs);
                }
                c.cr0 = 0;
            }
            32 => {
                for s in Seg::ALL {
                    c.seg[s as usize] = Segment::flat(0x10, FlatKind::Data);
                }
                c.seg[Seg::Cs as usize] = Segment::flat(8, FlatKind::Code32);
                c.cr0 = x86::CR0_PE;
            }
            _ => {
                // Identity map the first 1 GiB with 2 MiB pages.
                let (pml4, pdpt, pd) = (0x1000u64, 0x2000u64, 0x3000u64);
                self.write_u64(pml4, pdpt | 3);
                self.write_u64(pdpt, pd | 3);
                for i in 0..512u64 {
                    self.write_u64(pd + i * 8, (i << 21) | 0x83);
                }
                let c = &mut self.cpu;
                for s in Seg::ALL {
                    c.seg[s as usize] = Segment::flat(0x10, FlatKind::Data);
                }
                c.seg[Seg::Cs as usize] = Segment::flat(8, FlatKind::Code64);
                c.cr0 = x86::CR0_PE | x86::CR0_PG;
                c.cr4 = x86::CR4_PAE;
                c.cr3 = pml4;
                c.efer = x86::EFER_LME | x86::EFER_LMA;
            }
        }
        let c = &mut self.cpu;
        c.update_mode();
        c.cpl = 0;
        c.tlb.flush_all();
    }

    pub fn write(&mut self, gpa: u64, bytes: &[u8]) {
        assert!(self.cpu.slots.write(gpa, bytes, &self.cpu.code));
    }

    pub fn read(&self, gpa: u64, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        assert!(self.cpu.slots.read(gpa, &mut b));
        b
    }

    pub fn write_u64(&mut self, gpa: u64, v: u64) {
        self.write(gpa, &v.to_le_bytes());
    }

    pub fn read_u64(&self, gpa: u64) -> u64 {
        let b = self.read(gpa, 8);
        u64::from_le_bytes(b.try_into().expect("8 bytes"))
    }

    /// Assemble `f`'s code at CODE (with a HLT appended) and point RIP at it.
    pub fn load(&mut self, f: impl FnOnce(&mut CodeAssembler)) {
        let bits = self.cpu.code_bits;
        let mut a = CodeAssembler::new(bits).expect("assembler");
        f(&mut a);
        a.hlt().expect("hlt");
        // Real mode: code runs at CS=0x1000 (base CODE), IP 0.
        let ip = if bits == 16 { 0 } else { CODE };
        let code = a.assemble(ip).expect("assemble");
        self.write(CODE, &code);
        if bits == 16 {
            self.cpu.seg[Seg::Cs as usize] = Segment::real_mode((CODE >> 4) as u16, true);
        }
        self.cpu.rip = ip;
    }

    /// Execute one instruction at RIP as the exec loop does.
    pub fn step(&mut self) -> Result<Mnemonic, Fault> {
        let c = &mut self.cpu;
        let mut bytes = [0u8; 15];
        let lin = c.rip_lin();
        c.read_lin_bytes(lin, &mut bytes, true)?;
        let mut d = Decoder::with_ip(c.code_bits, &bytes, c.rip, DecoderOptions::NONE);
        let ins = d.decode();
        let mask = match c.code_bits {
            64 => u64::MAX,
            32 => 0xffff_ffff,
            _ => 0xffff,
        };
        c.next_rip = c.rip.wrapping_add(ins.len() as u64) & mask;
        c.replay_pos = 0;
        let h = crate::cpu::exec::handler_for(&ins);
        h(c, &ins)?;
        c.rip = c.next_rip;
        c.replay.clear();
        Ok(ins.mnemonic())
    }

    /// Run until the next HLT (not executed). Err: the fault and the RIP
    /// of the instruction that raised it.
    pub fn run(&mut self) -> Result<(), (Fault, u64)> {
        for _ in 0..1_000_000 {
            let mut bytes = [0u8; 1];
            let lin = self.cpu.rip_lin();
            self.cpu
                .read_lin_bytes(lin, &mut bytes, true)
                .map_err(|f| (f, self.cpu.rip))?;
            if bytes[0] == 0xf4 {
                return Ok(());
            }
            let rip = self.cpu.rip;
            self.step().map_err(|f| (f, rip))?;
        }
        panic!("test program did not reach HLT");
    }

    /// Assemble and run to HLT, panicking on a fault.
    pub fn exec(&mut self, f: impl FnOnce(&mut CodeAssembler)) {
        self.load(f);
        if let Err((f, rip)) = self.run() {
            panic!("fault {f:?} at {rip:#x}");
        }
    }

    /// Assemble and run; return the fault (panics if none).
    pub fn fault(&mut self, f: impl FnOnce(&mut CodeAssembler)) -> (Fault, u64) {
        self.load(f);
        match self.run() {
            Err(e) => e,
            Ok(()) => panic!("expected a fault"),
        }
    }

    pub fn rflags(&self) -> u64 {
        self.cpu.flags.rflags()
    }
}

/// A tiny deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}
