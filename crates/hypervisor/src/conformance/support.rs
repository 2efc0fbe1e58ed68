//! Test support for the conformance suite: page-aligned guest memory, a VM with
//! one vCPU, flat real/protected/long-mode vCPU states, code assembled with
//! iced-x86 at a known address, and a run loop with a watchdog.
//!
//! Guest-physical layout of the test RAM (slot 0, `RAM_SIZE` bytes at 0):
//! IVT 0x0, GDT 0x500, TSS 0x700, page tables 0x1000-0x4fff, IDT 0x5000,
//! a data page 0x6000, stack below 0x8000, code 0x8000, data 0x9000.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use iced_x86::code_asm::CodeAssembler;
use iced_x86::IcedError;

use crate::exit::SystemEvent;
use crate::x86::*;
use crate::{
    DebugHit, DescriptorTable, FlatKind, Hypervisor, MemoryRegion, Regs, Segment, Sregs, Vcpu,
    VcpuExit, VcpuKick, Vm, VmConfig,
};

/// Size of the RAM slot at guest-physical 0.
pub const RAM_SIZE: u64 = 4 << 20;
pub const GDT: u64 = 0x500;
pub const TSS: u64 = 0x700;
pub const PML4: u64 = 0x1000;
pub const PDPT: u64 = 0x2000;
pub const PD: u64 = 0x3000;
pub const PT: u64 = 0x4000;
pub const IDT: u64 = 0x5000;
pub const DATA_PAGE: u64 = 0x6000;
pub const STACK_TOP: u64 = 0x7ff0;
pub const CODE: u64 = 0x8000;
pub const DATA: u64 = 0x9000;

pub const SEL_CODE32: u16 = 0x08;
pub const SEL_DATA: u16 = 0x10;
pub const SEL_CODE64: u16 = 0x18;

/// How long a guest may run before the watchdog kicks it and the case fails.
pub const WATCHDOG: Duration = Duration::from_secs(10);

/// Turn any displayable error into the case's message, with context.
pub trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// `Err` with both values unless they are equal.
pub fn check_eq<T: PartialEq + std::fmt::Debug>(got: T, want: T, what: &str) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:x?}, want {want:x?}"))
    }
}

/// Zeroed, page-aligned host memory to back a guest slot.
pub struct GuestMemory {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: GuestMemory owns its allocation; access goes through copies.
unsafe impl Send for GuestMemory {}
// SAFETY: as above; concurrent guest writes are the test's business, as with RAM.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    pub fn new(size: u64) -> Result<Self, String> {
        let size = usize::try_from(size).ctx("guest memory size")?;
        let layout = Layout::from_size_align(size.max(4096), 4096).ctx("guest memory layout")?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or("out of memory for guest RAM")?;
        Ok(GuestMemory { ptr, layout })
    }

    pub fn size(&self) -> u64 {
        self.layout.size() as u64
    }

    pub fn host_addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    fn check(&self, offset: u64, len: usize) -> Result<usize, String> {
        let end = offset.checked_add(len as u64).ok_or("address overflow")?;
        if end > self.size() {
            return Err(format!("{offset:#x}+{len:#x} is outside guest memory"));
        }
        Ok(offset as usize)
    }

    /// Copy `bytes` to `offset` (relative to the start of this memory).
    pub fn write(&self, offset: u64, bytes: &[u8]) -> Result<(), String> {
        let at = self.check(offset, bytes.len())?;
        // SAFETY: at..at+len is inside the allocation (checked).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(at), bytes.len())
        };
        Ok(())
    }

    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, String> {
        let at = self.check(offset, len)?;
        let mut out = vec![0; len];
        // SAFETY: at..at+len is inside the allocation (checked).
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(at), out.as_mut_ptr(), len) };
        Ok(out)
    }

    pub fn write_u64(&self, offset: u64, value: u64) -> Result<(), String> {
        self.write(offset, &value.to_le_bytes())
    }

    pub fn read_u16(&self, offset: u64) -> Result<u16, String> {
        let b = self.read(offset, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// An exit with its data copied out, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    IoIn { port: u16, size: u8, len: usize },
    IoOut { port: u16, size: u8, data: Vec<u8> },
    MmioRead { addr: u64, len: usize },
    MmioWrite { addr: u64, data: Vec<u8> },
    Hlt,
    Shutdown,
    SystemEvent(SystemEvent),
    FailEntry(u64),
    Debug { rip: u64, hit: DebugHit },
    Interrupted,
    InternalError(String),
}

impl Exit {
    pub fn out(port: u16, size: u8, data: &[u8]) -> Exit {
        Exit::IoOut {
            port,
            size,
            data: data.to_vec(),
        }
    }
}

/// A VM with RAM at 0 and vCPU 0. Fields drop in order: vCPU, VM, memory.
pub struct TestVm {
    pub vcpu: Box<dyn Vcpu>,
    pub vm: Arc<dyn Vm>,
    pub mem: GuestMemory,
}

impl TestVm {
    /// A VM with `RAM_SIZE` of RAM in slot 0 and vCPU 0 with the engine's CPUID.
    pub fn new(hv: &dyn Hypervisor, irqchip: bool) -> Result<TestVm, String> {
        let config = VmConfig {
            irqchip,
            pit: false,
            vcpus: 1,
        };
        Self::with_config(hv, &config)
    }

    /// As `new`, with a chosen VM configuration.
    pub fn with_config(hv: &dyn Hypervisor, config: &VmConfig) -> Result<TestVm, String> {
        let vm = hv.create_vm(config).ctx("create_vm")?;
        let mem = GuestMemory::new(RAM_SIZE)?;
        let region = MemoryRegion {
            slot: 0,
            guest_phys_addr: 0,
            size: mem.size(),
            host_addr: mem.host_addr(),
            readonly: false,
            log_dirty: false,
        };
        // SAFETY: `mem` lives in the returned TestVm and drops after the VM.
        unsafe { vm.set_memory_region(region) }.ctx("set_memory_region (RAM)")?;
        let mut vcpu = vm.create_vcpu(0).ctx("create_vcpu")?;
        let cpuid = hv.supported_cpuid().ctx("supported_cpuid")?;
        vcpu.set_cpuid(&cpuid).ctx("set_cpuid")?;
        Ok(TestVm { vcpu, vm, mem })
    }

    /// Assemble `build` for `bitness` at guest address `at` and copy it there.
    /// Returns the code bytes.
    pub fn load_code(
        &self,
        bitness: u32,
        at: u64,
        build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
    ) -> Result<Vec<u8>, String> {
        let code = assemble(bitness, at, build)?;
        self.mem.write(at, &code)?;
        Ok(code)
    }

    /// Start in real mode (CS=DS=ES=SS=0) at `entry`, stack at `STACK_TOP`.
    pub fn real_mode(&mut self, entry: u64) -> Result<(), String> {
        real_mode_state(self.vcpu.as_mut(), entry)
    }

    /// Start in flat 32-bit protected mode without paging at `entry`.
    pub fn protected_mode(&mut self, entry: u64) -> Result<(), String> {
        self.write_gdt()?;
        let mut sregs = self.vcpu.sregs().ctx("sregs")?;
        flat_segments(&mut sregs, FlatKind::Code32, SEL_CODE32);
        sregs.cr0 = CR0_PE | CR0_ET | CR0_NE;
        sregs.cr4 = 0;
        sregs.efer = 0;
        self.vcpu
            .set_sregs(&sregs)
            .ctx("set_sregs (protected mode)")?;
        self.set_entry(entry)
    }

    /// Start in 64-bit long mode with the identity page tables at `entry`.
    pub fn long_mode(&mut self, entry: u64) -> Result<(), String> {
        self.write_gdt()?;
        self.write_page_tables()?;
        let sregs = self.long_mode_sregs()?;
        self.vcpu.set_sregs(&sregs).ctx("set_sregs (long mode)")?;
        self.set_entry(entry)
    }

    /// The long-mode sregs `long_mode` sets.
    pub fn long_mode_sregs(&self) -> Result<Sregs, String> {
        let mut sregs = self.vcpu.sregs().ctx("sregs")?;
        flat_segments(&mut sregs, FlatKind::Code64, SEL_CODE64);
        sregs.cr3 = PML4;
        sregs.cr4 = CR4_PAE;
        sregs.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
        sregs.efer = EFER_LME | EFER_LMA;
        Ok(sregs)
    }

    fn set_entry(&mut self, entry: u64) -> Result<(), String> {
        let regs = Regs {
            rip: entry,
            rsp: STACK_TOP,
            rflags: RFLAGS_FIXED,
            ..Default::default()
        };
        self.vcpu.set_regs(&regs).ctx("set_regs")
    }

    /// GDT at `GDT`: null, 32-bit code (0x08), data (0x10), 64-bit code (0x18).
    /// The pseudo-descriptor for LGDT (limit, base) is at `GDT + 0x40`.
    pub fn write_gdt(&self) -> Result<(), String> {
        let entries = [
            0,
            Segment::flat(SEL_CODE32, FlatKind::Code32).to_descriptor(),
            Segment::flat(SEL_DATA, FlatKind::Data).to_descriptor(),
            Segment::flat(SEL_CODE64, FlatKind::Code64).to_descriptor(),
        ];
        for (i, e) in entries.iter().enumerate() {
            self.mem.write_u64(GDT + 8 * i as u64, *e)?;
        }
        let limit = (entries.len() * 8 - 1) as u16;
        let mut pseudo = limit.to_le_bytes().to_vec();
        pseudo.extend_from_slice(&(GDT as u32).to_le_bytes());
        self.mem.write(GDT + 0x40, &pseudo)
    }

    /// Identity map: the first 2 MiB with 4 KiB pages (PT), the rest of the
    /// first 1 GiB with 2 MiB pages. Present + writable everywhere.
    pub fn write_page_tables(&self) -> Result<(), String> {
        const PW: u64 = 0x3;
        self.mem.write_u64(PML4, PDPT | PW)?;
        self.mem.write_u64(PDPT, PD | PW)?;
        self.mem.write_u64(PD, PT | PW)?;
        for i in 1..512u64 {
            self.mem.write_u64(PD + 8 * i, (i << 21) | PW | 0x80)?;
        }
        for i in 0..512u64 {
            self.mem.write_u64(PT + 8 * i, (i << 12) | PW)?;
        }
        Ok(())
    }

    /// A 32-bit interrupt gate for `vector` to `handler` in the IDT at `IDT`,
    /// and IDTR pointing at it (256 entries).
    pub fn idt32_gate(&mut self, vector: u8, handler: u32) -> Result<(), String> {
        let gate = u64::from(handler & 0xffff)
            | (u64::from(SEL_CODE32) << 16)
            | (0x8e_u64 << 40)
            | (u64::from(handler >> 16) << 48);
        self.mem.write_u64(IDT + 8 * u64::from(vector), gate)?;
        let mut sregs = self.vcpu.sregs().ctx("sregs")?;
        sregs.idt = DescriptorTable {
            base: IDT,
            limit: 256 * 8 - 1,
        };
        self.vcpu.set_sregs(&sregs).ctx("set_sregs (IDT)")
    }

    /// Run once under the watchdog. `IoIn`/`MmioRead` get `input`'s
    /// little-endian bytes (repeated for string I/O).
    pub fn run(&mut self, input: u64) -> Result<Exit, String> {
        run_with_watchdog(self.vcpu.as_mut(), input)
    }

    /// Run, requiring exactly `want`.
    pub fn expect(&mut self, input: u64, want: Exit, what: &str) -> Result<(), String> {
        let got = self.run(input)?;
        check_eq(got, want, what)
    }

    pub fn regs(&self) -> Result<Regs, String> {
        self.vcpu.regs().ctx("regs")
    }
}

/// Put `vcpu` in real mode (CS=DS=ES=SS=0) at `entry`, stack at `STACK_TOP`.
pub fn real_mode_state(vcpu: &mut dyn Vcpu, entry: u64) -> Result<(), String> {
    let mut sregs = vcpu.sregs().ctx("sregs")?;
    sregs.cs = Segment::real_mode(0, true);
    for seg in [
        &mut sregs.ds,
        &mut sregs.es,
        &mut sregs.fs,
        &mut sregs.gs,
        &mut sregs.ss,
    ] {
        *seg = Segment::real_mode(0, false);
    }
    sregs.cr0 = CR0_ET;
    sregs.cr4 = 0;
    sregs.efer = 0;
    vcpu.set_sregs(&sregs).ctx("set_sregs (real mode)")?;
    let regs = Regs {
        rip: entry,
        rsp: STACK_TOP,
        rflags: RFLAGS_FIXED,
        ..Default::default()
    };
    vcpu.set_regs(&regs).ctx("set_regs")
}

fn flat_segments(sregs: &mut Sregs, code: FlatKind, code_sel: u16) {
    sregs.cs = Segment::flat(code_sel, code);
    for seg in [
        &mut sregs.ds,
        &mut sregs.es,
        &mut sregs.fs,
        &mut sregs.gs,
        &mut sregs.ss,
    ] {
        *seg = Segment::flat(SEL_DATA, FlatKind::Data);
    }
    sregs.tr = Segment {
        base: TSS,
        limit: 0x67,
        selector: 0,
        type_: 0xb,
        present: true,
        s: false,
        ..Default::default()
    };
    sregs.ldt = Segment {
        unusable: true,
        type_: 0x2,
        ..Default::default()
    };
    sregs.gdt = DescriptorTable {
        base: GDT,
        limit: 4 * 8 - 1,
    };
}

/// Assemble `build` for `bitness` (16, 32 or 64) at `origin`.
pub fn assemble(
    bitness: u32,
    origin: u64,
    build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> Result<Vec<u8>, String> {
    let mut a = CodeAssembler::new(bitness).ctx("code assembler")?;
    build(&mut a).ctx("assembling guest code")?;
    a.assemble(origin).ctx("assembling guest code")
}

/// The address after each instruction of `code` (loaded at `origin`).
pub fn next_ips(bitness: u32, origin: u64, code: &[u8]) -> Vec<u64> {
    let decoder = iced_x86::Decoder::with_ip(bitness, code, origin, iced_x86::DecoderOptions::NONE);
    decoder.into_iter().map(|i| i.next_ip()).collect()
}

/// Copy an exit out of the vCPU, filling input buffers from `input`.
pub fn owned_exit(exit: VcpuExit<'_>, input: u64) -> Exit {
    let fill = |data: &mut [u8], unit: usize| {
        let bytes = input.to_le_bytes();
        let unit = unit.clamp(1, 8);
        for chunk in data.chunks_mut(unit) {
            let n = chunk.len();
            chunk.copy_from_slice(&bytes[..n]);
        }
    };
    match exit {
        VcpuExit::IoIn { port, size, data } => {
            fill(data, usize::from(size));
            Exit::IoIn {
                port,
                size,
                len: data.len(),
            }
        }
        VcpuExit::IoOut { port, size, data } => Exit::IoOut {
            port,
            size,
            data: data.to_vec(),
        },
        VcpuExit::MmioRead { addr, data } => {
            let len = data.len();
            fill(data, len);
            Exit::MmioRead { addr, len }
        }
        VcpuExit::MmioWrite { addr, data } => Exit::MmioWrite {
            addr,
            data: data.to_vec(),
        },
        VcpuExit::Hlt => Exit::Hlt,
        VcpuExit::Shutdown => Exit::Shutdown,
        VcpuExit::SystemEvent(e) => Exit::SystemEvent(e),
        VcpuExit::FailEntry { reason } => Exit::FailEntry(reason),
        VcpuExit::Debug { rip, hit } => Exit::Debug { rip, hit },
        VcpuExit::Interrupted => Exit::Interrupted,
        VcpuExit::InternalError(msg) => Exit::InternalError(msg),
    }
}

/// Kicks the vCPU if the guest runs longer than `WATCHDOG`.
struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<bool>>,
}

impl Watchdog {
    fn start(kick: Arc<dyn VcpuKick>) -> Watchdog {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::spawn(move || match stopped.recv_timeout(WATCHDOG) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                kick.kick();
                // A vCPU that ignores its kick would hang the test run: fail loudly.
                if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(WATCHDOG) {
                    eprintln!(
                        "conformance watchdog: the vCPU did not leave run after a kick; aborting"
                    );
                    std::process::abort();
                }
                true
            }
            _ => false,
        });
        Watchdog {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stop the watchdog; true if it fired.
    fn finish(mut self) -> bool {
        self.stop.take();
        self.thread.take().is_some_and(|t| t.join().unwrap_or(true))
    }
}

/// Run `vcpu` once; fail if the watchdog had to kick it.
pub fn run_with_watchdog(vcpu: &mut dyn Vcpu, input: u64) -> Result<Exit, String> {
    let dog = Watchdog::start(vcpu.kick_handle());
    let exit = vcpu.run().map(|e| owned_exit(e, input));
    let fired = dog.finish();
    let exit = exit.ctx("run")?;
    if fired && exit == Exit::Interrupted {
        return Err(format!("the guest did not exit within {WATCHDOG:?}"));
    }
    Ok(exit)
}
