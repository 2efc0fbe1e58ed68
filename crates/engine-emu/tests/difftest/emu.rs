//! The emu runner: runs test cases on Kite's software CPU through the
//! hypervisor API only (`EmuHypervisor` -> `Vm` -> `Vcpu`).
//!
//! The VM has one RAM slot at guest-physical `TEST_ADDR..+MEM_SIZE`, identity
//! mapped by 4-level page tables (4 KiB pages; user pages for the test, end
//! and data pages, supervisor pages for the system structures). The vCPU
//! runs in 64-bit mode at CPL 3, like the native side. The end page holds
//! `out 0xe0, al`: the `IoOut` exit on port 0xe0 means the case completed.
//! Exceptions go through the IDT (64-bit interrupt gates on IST1) to stubs
//! that do `out 0xe1, al` with AL = vector. An engine that cannot deliver the
//! exception yet reports it as an internal error naming the vector; both are
//! understood. The TSS's I/O bitmap lets CPL 3 use ports 0xe0/0xe1.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kite_engine_emu::EmuHypervisor;
use kite_hypervisor::{
    x86, DescriptorTable, FlatKind, Fpu, Hypervisor, MemoryRegion, Segment, Vcpu, VcpuExit,
    VcpuKick, Vm, VmConfig,
};

use super::{CpuState, Outcome, Result, DATA_ADDR, DATA_SIZE, END32_ADDR, END_ADDR, TEST_ADDR};

/// Guest RAM: test page .. system pages.
const MEM_SIZE: usize = 0x3_0000;
/// System structures (supervisor pages).
const SYS_ADDR: u64 = TEST_ADDR + 0x2_0000;
const PML4: u64 = SYS_ADDR;
const PDPT: u64 = SYS_ADDR + 0x1000;
const PD: u64 = SYS_ADDR + 0x2000;
const PT: u64 = SYS_ADDR + 0x3000;
const GDT: u64 = SYS_ADDR + 0x4000;
const IDT: u64 = SYS_ADDR + 0x5000;
const TSS: u64 = SYS_ADDR + 0x6000;
const STUBS: u64 = SYS_ADDR + 0x7000;
const IST_TOP: u64 = SYS_ADDR + 0xa000;

/// Port written when a case completes / when an exception arrived.
pub const PORT_DONE: u16 = 0xe0;
pub const PORT_EXCEPTION: u16 = 0xe1;

const SEL_KCODE: u16 = 0x08;
const SEL_KDATA: u16 = 0x10;
const SEL_UCODE: u16 = 0x18 | 3;
const SEL_UDATA: u16 = 0x20 | 3;
const SEL_TSS: u16 = 0x28;
const SEL_UCODE32: u16 = 0x38 | 3;

/// Page-aligned guest RAM, unmapped on drop.
struct GuestRam {
    ptr: *mut u8,
}

impl GuestRam {
    fn new() -> GuestRam {
        // SAFETY: a fresh private anonymous mapping; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MEM_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap of guest RAM failed");
        GuestRam { ptr: p as *mut u8 }
    }

    fn slice(&mut self, gpa: u64, len: usize) -> &mut [u8] {
        let off = (gpa - TEST_ADDR) as usize;
        assert!(off + len <= MEM_SIZE);
        // SAFETY: in bounds of the mapping (checked); the vCPU only runs
        // while no slice is alive (`&mut self` in `EmuRunner::run_one`).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(off), len) }
    }

    fn write_u64(&mut self, gpa: u64, v: u64) {
        self.slice(gpa, 8).copy_from_slice(&v.to_le_bytes());
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this size; the VM using it is dropped first.
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, MEM_SIZE);
        }
    }
}

/// Kicks the vCPU if one case runs for too long (an emu bug looping forever).
struct Watchdog {
    ticks: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn new(kick: Arc<dyn VcpuKick>) -> Watchdog {
        let ticks = Arc::new(AtomicU64::new(0));
        let running = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, r, s) = (ticks.clone(), running.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut last = u64::MAX;
            let mut stuck = 0;
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let now = t.load(Ordering::Relaxed);
                if r.load(Ordering::Relaxed) && now == last {
                    stuck += 1;
                    if stuck >= 20 {
                        kick.kick();
                        stuck = 0;
                    }
                } else {
                    stuck = 0;
                }
                last = now;
            }
        });
        Watchdog {
            ticks,
            running,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A VM with one vCPU set up for test cases.
pub struct EmuRunner {
    // Field order: the vCPU and VM go before the RAM they use.
    watchdog: Watchdog,
    vcpu: Box<dyn Vcpu>,
    _vm: Arc<dyn Vm>,
    ram: GuestRam,
    sregs: kite_hypervisor::Sregs,
    /// The same with a 32-bit code segment (compatibility mode).
    sregs32: kite_hypervisor::Sregs,
}

fn user_seg(selector: u16, kind: FlatKind) -> Segment {
    Segment {
        dpl: 3,
        ..Segment::flat(selector, kind)
    }
}

impl EmuRunner {
    pub fn new() -> EmuRunner {
        Self::with_tier(kite_engine_emu::jit::Tier::Interp)
    }

    /// A runner whose vCPU runs on `tier` (`All`: every case's block is
    /// translated before it runs).
    pub fn with_tier(tier: kite_engine_emu::jit::Tier) -> EmuRunner {
        let hv = EmuHypervisor::with_tier(tier);
        let vm = hv
            .create_vm(&VmConfig {
                irqchip: false,
                pit: false,
                vcpus: 1,
            })
            .expect("emu VM");
        let mut ram = GuestRam::new();
        // SAFETY: `ram` lives as long as the runner, which drops the VM first.
        unsafe {
            vm.set_memory_region(MemoryRegion {
                slot: 0,
                guest_phys_addr: TEST_ADDR,
                size: MEM_SIZE as u64,
                host_addr: ram.ptr as u64,
                readonly: false,
                log_dirty: false,
            })
            .expect("guest RAM slot");
        }
        build_system(&mut ram);
        let vcpu = vm.create_vcpu(0).expect("emu vCPU");
        let sregs = long_mode_sregs(vcpu.sregs().expect("sregs"));
        let sregs32 = kite_hypervisor::Sregs {
            cs: user_seg(SEL_UCODE32, FlatKind::Code32),
            ..sregs
        };
        let watchdog = Watchdog::new(vcpu.kick_handle());
        EmuRunner {
            watchdog,
            vcpu,
            _vm: vm,
            ram,
            sregs,
            sregs32,
        }
    }

    /// Run one case.
    /// Run one case: `bits` 64 for 64-bit mode, 32 for compatibility mode.
    pub fn run_one(
        &mut self,
        bits: u32,
        code: &[u8],
        state: &CpuState,
        data: &[u8; DATA_SIZE],
    ) -> Result {
        let broken = |why: String| Result {
            outcome: Outcome::Broken(why),
            state: *state,
            data: Box::new(*data),
        };
        let page = self.ram.slice(TEST_ADDR, 0x1000);
        page[..code.len()].copy_from_slice(code);
        self.ram.slice(DATA_ADDR, DATA_SIZE).copy_from_slice(data);
        // Changed code bytes: set_sregs drops the decoded blocks (and resets
        // the mode and CPL an exception handler may have changed).
        let sregs = if bits == 32 {
            &self.sregs32
        } else {
            &self.sregs
        };
        if let Err(e) = self.vcpu.set_sregs(sregs) {
            return broken(format!("set_sregs: {e}"));
        }
        let mut regs = kite_hypervisor::Regs::default();
        regs.set_gprs(&state.gpr);
        regs.rip = TEST_ADDR;
        regs.rflags = state.rflags;
        if let Err(e) = self.vcpu.set_regs(&regs) {
            return broken(format!("set_regs: {e}"));
        }
        if let Err(e) = self.vcpu.set_fpu(&fx_to_fpu(state)) {
            return broken(format!("set_fpu: {e}"));
        }
        self.watchdog.ticks.fetch_add(1, Ordering::Relaxed);
        self.watchdog.running.store(true, Ordering::Relaxed);
        let end = if bits == 32 { END32_ADDR } else { END_ADDR };
        let outcome = self.run_to_end(end);
        self.watchdog.running.store(false, Ordering::Relaxed);
        let outcome = match outcome {
            Ok(o) => o,
            Err(why) => return broken(why),
        };
        let mut out = *state;
        if outcome == Outcome::Done {
            let regs = match self.vcpu.regs() {
                Ok(r) => r,
                Err(e) => return broken(format!("regs: {e}")),
            };
            out.gpr = regs.gprs();
            out.rflags = regs.rflags;
            match self.vcpu.fpu() {
                Ok(f) => fpu_to_fx(&f, &mut out),
                Err(e) => return broken(format!("fpu: {e}")),
            }
        }
        let mut d = Box::new([0u8; DATA_SIZE]);
        d.copy_from_slice(self.ram.slice(DATA_ADDR, DATA_SIZE));
        Result {
            outcome,
            state: out,
            data: d,
        }
    }

    fn run_to_end(&mut self, end: u64) -> std::result::Result<Outcome, String> {
        for _ in 0..16 {
            let exit = self.vcpu.run().map_err(|e| format!("run: {e}"))?;
            match exit {
                VcpuExit::IoOut { port, .. } if port == PORT_DONE => {
                    // Only the end stub's OUT (2 bytes at END_ADDR) counts.
                    let rip = self.vcpu.regs().map_err(|e| format!("regs: {e}"))?.rip;
                    if rip != end + 2 {
                        return Err(format!("OUT to the end port from {rip:#x}"));
                    }
                    return Ok(Outcome::Done);
                }
                VcpuExit::IoOut { port, data, .. } if port == PORT_EXCEPTION => {
                    return Ok(Outcome::Exception(data.first().copied().unwrap_or(0xff)));
                }
                VcpuExit::InternalError(msg) => {
                    // An engine without exception delivery in this mode names
                    // the vector in its message.
                    return match vector_in(&msg) {
                        Some(v) => Ok(Outcome::Exception(v)),
                        None => Err(format!("internal error: {msg}")),
                    };
                }
                VcpuExit::Interrupted => return Err("timeout: the case ran for 2 s".into()),
                VcpuExit::IoIn { data, .. } => data.fill(0),
                VcpuExit::MmioRead { data, .. } => data.fill(0),
                e => return Err(format!("unexpected exit {e:?}")),
            }
        }
        Err("too many exits".into())
    }
}

impl Default for EmuRunner {
    fn default() -> Self {
        Self::new()
    }
}

/// "... event delivery (vector 13) ..." -> 13.
fn vector_in(msg: &str) -> Option<u8> {
    let at = msg.find("(vector ")? + "(vector ".len();
    let rest = &msg[at..];
    let end = rest.find(')')?;
    rest[..end].trim().parse().ok()
}

fn fx_to_fpu(s: &CpuState) -> Fpu {
    let mut f = Fpu::default();
    for i in 0..8 {
        f.fpr[i][..10].copy_from_slice(&s.fx[32 + 16 * i..32 + 16 * i + 10]);
    }
    f.fcw = s.fcw();
    f.fsw = s.fsw();
    f.ftwx = s.ftw();
    for i in 0..16 {
        f.xmm[i] = s.xmm(i).to_le_bytes();
    }
    f.mxcsr = s.mxcsr();
    f
}

fn fpu_to_fx(f: &Fpu, s: &mut CpuState) {
    for i in 0..8 {
        let mut m = [0u8; 8];
        m.copy_from_slice(&f.fpr[i][..8]);
        s.set_st(
            i,
            u64::from_le_bytes(m),
            u16::from_le_bytes([f.fpr[i][8], f.fpr[i][9]]),
        );
    }
    s.set_fcw(f.fcw);
    s.set_fsw(f.fsw);
    s.set_ftw(f.ftwx);
    for i in 0..16 {
        s.set_xmm(i, u128::from_le_bytes(f.xmm[i]));
    }
    s.set_mxcsr(f.mxcsr);
}

/// Page tables, GDT, IDT, TSS and exception stubs; the end stub.
fn build_system(ram: &mut GuestRam) {
    const P: u64 = 1;
    const W: u64 = 2;
    const U: u64 = 4;
    ram.write_u64(PML4, PDPT | P | W | U);
    ram.write_u64(PDPT + 8 * ((TEST_ADDR >> 30) & 511), PD | P | W | U);
    ram.write_u64(PD + 8 * ((TEST_ADDR >> 21) & 511), PT | P | W | U);
    let pte = |gpa: u64| PT + 8 * ((gpa >> 12) & 511);
    for gpa in [TEST_ADDR, END_ADDR, DATA_ADDR] {
        ram.write_u64(pte(gpa), gpa | P | W | U);
    }
    let mut gpa = SYS_ADDR;
    while gpa < TEST_ADDR + MEM_SIZE as u64 {
        ram.write_u64(pte(gpa), gpa | P | W);
        gpa += 0x1000;
    }
    // GDT: null, kernel code/data, user code/data, 64-bit TSS.
    ram.write_u64(
        GDT + 8,
        Segment::flat(SEL_KCODE, FlatKind::Code64).to_descriptor(),
    );
    ram.write_u64(
        GDT + 16,
        Segment::flat(SEL_KDATA, FlatKind::Data).to_descriptor(),
    );
    ram.write_u64(
        GDT + 24,
        user_seg(SEL_UCODE, FlatKind::Code64).to_descriptor(),
    );
    ram.write_u64(
        GDT + 32,
        user_seg(SEL_UDATA, FlatKind::Data).to_descriptor(),
    );
    ram.write_u64(GDT + 40, tss_seg().to_descriptor());
    ram.write_u64(GDT + 48, TSS >> 32);
    ram.write_u64(
        GDT + 56,
        user_seg(SEL_UCODE32, FlatKind::Code32).to_descriptor(),
    );
    // TSS: RSP0 and IST1, I/O bitmap allowing ports 0xe0/0xe1 only.
    ram.write_u64(TSS + 4, IST_TOP);
    ram.write_u64(TSS + 0x24, IST_TOP);
    let iomap = ram.slice(TSS + 0x66, 2);
    iomap.copy_from_slice(&0x68u16.to_le_bytes());
    let bitmap = ram.slice(TSS + 0x68, 0x21);
    bitmap.fill(0xff);
    bitmap[0xe0 / 8] &= !0x03;
    // IDT: vectors 0-31 -> stub v: mov al, v; out 0xe1, al; hlt; jmp $.
    for v in 0..32u64 {
        let h = STUBS + 16 * v;
        let stub = ram.slice(h, 7);
        stub.copy_from_slice(&[0xb0, v as u8, 0xe6, PORT_EXCEPTION as u8, 0xf4, 0xeb, 0xfe]);
        let lo = (h & 0xffff)
            | (u64::from(SEL_KCODE) << 16)
            | (1 << 32) // IST1
            | (0x8e << 40) // present, DPL 0, 64-bit interrupt gate
            | (((h >> 16) & 0xffff) << 48);
        ram.write_u64(IDT + 16 * v, lo);
        ram.write_u64(IDT + 16 * v + 8, h >> 32);
    }
    // End stubs (64-bit and 32-bit code): out 0xe0, al; hlt.
    for end in [END_ADDR, END32_ADDR] {
        ram.slice(end, 3)
            .copy_from_slice(&[0xe6, PORT_DONE as u8, 0xf4]);
    }
}

fn tss_seg() -> Segment {
    Segment {
        base: TSS,
        limit: 0x68 + 0x21 - 1,
        selector: SEL_TSS,
        type_: 0xb,
        present: true,
        dpl: 0,
        db: false,
        s: false,
        l: false,
        g: false,
        avl: false,
        unusable: false,
    }
}

fn long_mode_sregs(mut s: kite_hypervisor::Sregs) -> kite_hypervisor::Sregs {
    s.cs = user_seg(SEL_UCODE, FlatKind::Code64);
    let data = user_seg(SEL_UDATA, FlatKind::Data);
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = tss_seg();
    s.gdt = DescriptorTable {
        base: GDT,
        limit: 63,
    };
    s.idt = DescriptorTable {
        base: IDT,
        limit: 32 * 16 - 1,
    };
    s.cr0 = x86::CR0_PE | x86::CR0_MP | x86::CR0_ET | x86::CR0_NE | x86::CR0_WP | x86::CR0_PG;
    s.cr3 = PML4;
    s.cr4 = x86::CR4_PAE | x86::CR4_OSFXSR | x86::CR4_OSXMMEXCPT;
    s.efer = x86::EFER_LME | x86::EFER_LMA | x86::EFER_NXE | x86::EFER_SCE;
    s
}
