//! The software x86 CPU: architectural state, the execution loop and the
//! instruction groups.
//!
//! Layout (a file per concern):
//! - `mod.rs`: the `Cpu` state and the `Fault` type every handler returns;
//! - `flags.rs`: RFLAGS and the arithmetic flag helpers;
//! - `access.rs`: memory access (segmentation, TLB, MMIO/PIO exits);
//! - `seg_cache.rs`: which segments are flat, decided once per segment change;
//! - `addr32.rs`: 32-bit memory operand forms chosen at decode time;
//! - `operand.rs`: reading and writing iced-x86 operands;
//! - `exec.rs` + `block_cache.rs`: decode once per guest-physical block, run;
//! - `integer/`: the general-purpose instruction set;
//! - `system/`: segments, interrupts and exceptions, far transfers, modes,
//!   control registers, MSRs, SYSCALL/SYSENTER, task state;
//! - `fpu/`, `sse/`: x87, MMX, SSE..SSE4.2, FXSAVE/XSAVE;
//! - `cpuid.rs`: the CPUID the engine presents (exactly what is implemented).
//!
//! Handlers follow one rule that makes exceptions precise and MMIO restartable:
//! *every read and every fault happens before any architectural state is
//! committed*. A handler computes, then writes its memory destination, then
//! commits registers, flags and `next_rip`.

pub mod access;
pub mod addr32;
pub mod block_cache;
pub mod cpuid;
pub mod exec;
pub mod flags;
pub mod fpu;
pub mod integer;
#[cfg(test)]
pub mod native_stub;
pub mod operand;
pub mod profile;
pub mod seg_cache;
pub mod sse;
pub mod system;

use std::sync::Arc;

use kite_hypervisor::{x86, CpuidEntry, DescriptorTable, Segment};

use crate::irq::{IrqChip, VcpuIrq};
use crate::memory::{CodePages, PhysMemory, SlotView};
use crate::mmu::tlb::Tlb;

/// Segment registers in encoding order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Seg {
    Es = 0,
    Cs = 1,
    Ss = 2,
    Ds = 3,
    Fs = 4,
    Gs = 5,
}

impl Seg {
    pub const ALL: [Seg; 6] = [Seg::Es, Seg::Cs, Seg::Ss, Seg::Ds, Seg::Fs, Seg::Gs];

    pub fn from_iced(r: iced_x86::Register) -> Option<Seg> {
        use iced_x86::Register as R;
        Some(match r {
            R::ES => Seg::Es,
            R::CS => Seg::Cs,
            R::SS => Seg::Ss,
            R::DS => Seg::Ds,
            R::FS => Seg::Fs,
            R::GS => Seg::Gs,
            _ => return None,
        })
    }
}

/// GPR indices in encoding order.
pub mod reg {
    pub const RAX: usize = 0;
    pub const RCX: usize = 1;
    pub const RDX: usize = 2;
    pub const RBX: usize = 3;
    pub const RSP: usize = 4;
    pub const RBP: usize = 5;
    pub const RSI: usize = 6;
    pub const RDI: usize = 7;
}

/// An exception raised by an instruction (vector and error code). Eight
/// bytes, so that `Res` comes back from a handler in one register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception {
    pub vector: u8,
    has_code: bool,
    code: u32,
}

impl Exception {
    #[inline]
    pub fn error_code(&self) -> Option<u32> {
        self.has_code.then_some(self.code)
    }
}

/// Why an instruction did not complete. The instruction has had no
/// architectural effect (see the module rule), so it can be restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Deliver this exception to the guest.
    Exception(Exception),
    /// An access must leave the engine first (see `Cpu::pending`); the
    /// instruction restarts after the exit completes.
    Exit,
    /// The engine cannot go on (see `Cpu::error`): unimplemented, or a
    /// condition the guest cannot recover from.
    Internal,
    /// Shutdown: a fault while delivering a double fault.
    TripleFault,
}

pub type Res<T = ()> = Result<T, Fault>;

const _: () = assert!(std::mem::size_of::<Res>() == 8);

#[inline]
pub fn exception(vector: u8, error_code: Option<u32>) -> Fault {
    Fault::Exception(Exception {
        vector,
        has_code: error_code.is_some(),
        code: error_code.unwrap_or(0),
    })
}

/// #GP(code).
#[inline]
pub fn gp(code: u32) -> Fault {
    exception(x86::GP, Some(code))
}

/// #GP(0).
#[inline]
pub fn gp0() -> Fault {
    gp(0)
}

/// #UD.
#[inline]
pub fn ud() -> Fault {
    exception(x86::UD, None)
}

/// An access that must leave the engine as an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    IoIn {
        port: u16,
        size: u8,
    },
    IoOut {
        port: u16,
        size: u8,
        data: [u8; 4],
    },
    MmioRead {
        addr: u64,
        size: u8,
    },
    MmioWrite {
        addr: u64,
        size: u8,
        data: [u8; 16],
    },
    /// HLT without an irqchip.
    Hlt,
    /// Single-step, breakpoint or watchpoint.
    Debug(kite_hypervisor::DebugHit),
}

/// The processor's operating mode, derived from CR0, EFER, RFLAGS.VM and CS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Real,
    Vm86,
    /// Protected mode (or compatibility mode under long mode) with 16/32-bit CS.
    Protected,
    /// 64-bit mode.
    Long,
}

/// Model-specific registers kept by the CPU itself (the LAPIC keeps its own).
#[derive(Debug, Clone, Default)]
pub struct Msrs {
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub pat: u64,
    pub misc_enable: u64,
    pub tsc_aux: u64,
    pub mtrr_def_type: u64,
    pub mtrr_fixed: [u64; 11],
    pub mtrr_var: [u64; 16],
    /// Guest TSC = host-derived TSC + tsc_offset.
    pub tsc_offset: i64,
    pub tsc_adjust: u64,
    pub feature_control: u64,
    pub xcr0: u64,
}

/// Architectural state of one vCPU, and its private caches.
pub struct Cpu {
    /// RAX..R15 in encoding order.
    pub gpr: [u64; 16],
    pub rip: u64,
    /// Where execution continues after the current instruction; control
    /// transfers set it.
    pub next_rip: u64,
    pub flags: flags::Flags,
    /// The segment registers' descriptor caches. Whoever writes them (or
    /// the mode) calls `refresh_seg_cache` (`update_mode` does).
    pub seg: [Segment; 6],
    /// Fast-path decisions derived from `seg` and `mode` (see `seg_cache`).
    pub seg_cache: seg_cache::SegCache,
    pub ldtr: Segment,
    pub tr: Segment,
    pub gdtr: DescriptorTable,
    pub idtr: DescriptorTable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub dr: [u64; 8],
    pub msr: Msrs,
    pub fpu: fpu::FpuState,
    /// Current privilege level (CS.RPL in protected mode; 3 in VM86).
    pub cpl: u8,
    pub mode: Mode,
    /// Default operand/address size of CS (16, 32 or 64) for decoding.
    pub code_bits: u32,
    /// Interrupts are inhibited for one instruction (after STI, MOV SS, POP SS).
    pub interrupt_shadow: bool,
    /// Blocking NMIs until IRET.
    pub nmi_blocked: bool,
    pub halted: bool,
    /// Set by a handler that changes state the current block depends on
    /// (mode, paging, code bytes): the block ends after this instruction.
    pub end_block: bool,
    /// CPUID leaves presented to the guest.
    pub cpuid: Vec<CpuidEntry>,
    pub apic_id: u32,

    /// An access waiting for an exit.
    pub pending: Option<Pending>,
    /// Completed reads (MMIO or IN) to replay, in access order, while an
    /// instruction re-executes after its exits.
    pub replay: Vec<u64>,
    pub replay_pos: usize,
    /// Writes (MMIO or OUT) that completed instructions made; each leaves as
    /// an exit before the next instruction.
    pub posted: std::collections::VecDeque<Pending>,
    /// Why `Fault::Internal` happened.
    pub error: String,

    pub mem: Arc<PhysMemory>,
    pub slots: SlotView,
    pub code: Arc<CodePages>,
    pub tlb: Tlb,
    pub irq: Option<Arc<VcpuIrq>>,
    pub chip: Option<Arc<IrqChip>>,
    /// Epochs of `mem` this vCPU has caught up with.
    pub seen_layout_epoch: u64,
    pub seen_write_epoch: u64,
    pub seen_inval_epoch: u64,
    pub seen_dirty_epoch: u64,
    /// `mem.any_epoch` as of the last full look at the epochs above.
    pub seen_any_epoch: u64,
    /// This vCPU's side of the dirty-log handshake (see `PhysMemory::dirty_log`).
    pub mem_ack: Arc<crate::memory::VcpuMemAck>,
    pub single_step: bool,
    /// Execution breakpoints (linear addresses), sorted.
    pub breakpoints: Vec<u64>,
    /// Data breakpoints, checked on every linear data access while non-empty.
    pub watchpoints: Vec<kite_hypervisor::Watchpoint>,
    /// The watchpoint the current instruction touched (reported after it).
    pub watch_hit: Option<kite_hypervisor::Watchpoint>,
    /// Resume past a breakpoint at RIP once.
    pub skip_breakpoint: bool,
    /// The irqchip said an external interrupt is pending (delivered when IF=1).
    pub intr_pending: bool,
    /// Addresses already reported as unimplemented.
    pub reported_ud: Vec<u64>,
    /// Guest-RIP sampling for developers (KITE_EMU_PROFILE=path).
    pub profile: Option<Box<profile::Profile>>,
    /// An application processor waiting for a start-up IPI.
    pub wait_for_sipi: bool,
    /// Set by `VcpuKick`: leave `run` at the next block boundary.
    pub kick: Arc<std::sync::atomic::AtomicBool>,
    /// Which blocks run as generated code (see `jit`).
    pub tier: crate::jit::Tier,
    /// The fault an instruction run from generated code raised, for the
    /// run loop to deliver (see `jit::translate`).
    pub jit_fault: Option<Fault>,
    /// The block whose translation is running (chaining moves it on).
    pub jit_block: u32,
    /// The chain slot (`jit::chain::ChainSlot`, as an address) of the exit
    /// the last translation left by without chaining; 0 if none.
    pub jit_exit: usize,
    /// Blocks entered by chaining (for tests and tuning).
    pub jit_chained: u64,
    /// What chained generated code loads to see that the run loop has
    /// nothing to do (`jit::chain`): addresses of the irqchip's events word
    /// (or of a word that stays 0), of the kick flag and of
    /// `mem.any_epoch`. Set at each `run` from the fields they belong to.
    pub chain_events: usize,
    pub chain_kick: usize,
    pub chain_any_epoch: usize,
}

impl Cpu {
    pub fn new(
        mem: Arc<PhysMemory>,
        chip: Option<Arc<IrqChip>>,
        irq: Option<Arc<VcpuIrq>>,
        apic_id: u32,
    ) -> Cpu {
        let slots = SlotView { slots: mem.slots() };
        let code = mem.code_pages();
        let mem_ack = mem.register_vcpu();
        let mut cpu = Cpu {
            gpr: [0; 16],
            rip: 0,
            next_rip: 0,
            flags: flags::Flags::default(),
            seg: [Segment::default(); 6],
            seg_cache: Default::default(),
            ldtr: Segment::default(),
            tr: Segment::default(),
            gdtr: DescriptorTable::default(),
            idtr: DescriptorTable::default(),
            cr0: 0,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            efer: 0,
            dr: [0; 8],
            msr: Msrs::default(),
            fpu: fpu::FpuState::default(),
            cpl: 0,
            mode: Mode::Real,
            code_bits: 16,
            interrupt_shadow: false,
            nmi_blocked: false,
            halted: false,
            end_block: false,
            cpuid: cpuid::for_vcpu(apic_id),
            apic_id,
            pending: None,
            replay: Vec::new(),
            replay_pos: 0,
            posted: Default::default(),
            error: String::new(),
            mem,
            slots,
            code,
            tlb: Tlb::new(),
            irq,
            chip,
            seen_layout_epoch: 0,
            seen_write_epoch: 0,
            seen_inval_epoch: 0,
            seen_dirty_epoch: 0,
            seen_any_epoch: u64::MAX,
            mem_ack,
            single_step: false,
            breakpoints: Vec::new(),
            watchpoints: Vec::new(),
            watch_hit: None,
            skip_breakpoint: false,
            intr_pending: false,
            reported_ud: Vec::new(),
            kick: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            wait_for_sipi: false,
            profile: profile::Profile::from_env(apic_id),
            tier: crate::jit::Tier::from_env(),
            jit_fault: None,
            jit_block: 0,
            jit_exit: 0,
            jit_chained: 0,
            chain_events: 0,
            chain_kick: 0,
            chain_any_epoch: 0,
        };
        cpu.reset();
        cpu
    }

    /// The power-on/INIT state (SDM vol 3, 9.1.1): real mode at F000:FFF0.
    pub fn reset(&mut self) {
        self.gpr = [0; 16];
        self.gpr[reg::RDX] = 0x600; // family 6
        self.rip = 0xfff0;
        self.flags = flags::Flags::default();
        for s in Seg::ALL {
            self.seg[s as usize] = Segment::real_mode(0, false);
        }
        self.seg[Seg::Cs as usize] = Segment {
            base: 0xffff_0000,
            ..Segment::real_mode(0xf000, true)
        };
        self.ldtr = Segment {
            type_: 2,
            present: true,
            s: false,
            limit: 0xffff,
            ..Default::default()
        };
        self.tr = Segment {
            type_: 0xb,
            present: true,
            s: false,
            limit: 0xffff,
            ..Default::default()
        };
        self.gdtr = DescriptorTable {
            base: 0,
            limit: 0xffff,
        };
        self.idtr = DescriptorTable {
            base: 0,
            limit: 0xffff,
        };
        self.cr0 = x86::CR0_ET | x86::CR0_CD | x86::CR0_NW;
        self.cr2 = 0;
        self.cr3 = 0;
        self.cr4 = 0;
        self.efer = 0;
        self.dr = [0, 0, 0, 0, 0xffff_0ff0, 0x400, 0xffff_0ff0, 0x400];
        self.msr.pat = 0x0007_0406_0007_0406;
        self.msr.misc_enable = 1; // fast strings
        self.msr.xcr0 = 1; // x87 state is always enabled
        self.fpu = fpu::FpuState::default();
        self.interrupt_shadow = false;
        self.nmi_blocked = false;
        self.halted = false;
        self.pending = None;
        self.replay.clear();
        self.replay_pos = 0;
        self.posted.clear();
        self.update_mode();
        self.tlb.flush_all();
    }

    /// Recompute `mode`, `cpl`-independent decode size after CR0, EFER,
    /// RFLAGS.VM or CS changed.
    pub fn update_mode(&mut self) {
        let cs = &self.seg[Seg::Cs as usize];
        self.mode = if self.cr0 & x86::CR0_PE == 0 {
            Mode::Real
        } else if self.flags.get(x86::RFLAGS_VM) {
            Mode::Vm86
        } else if self.efer & x86::EFER_LMA != 0 && cs.l {
            Mode::Long
        } else {
            Mode::Protected
        };
        self.code_bits = match self.mode {
            Mode::Long => 64,
            Mode::Real | Mode::Vm86 => 16,
            Mode::Protected => {
                if cs.db {
                    32
                } else {
                    16
                }
            }
        };
        if self.mode == Mode::Real {
            self.cpl = 0;
        } else if self.mode == Mode::Vm86 {
            self.cpl = 3;
        }
        self.refresh_seg_cache();
        self.end_block = true;
    }

    /// Run on `tier` from the next block on (on hosts other than x86-64
    /// the interpreter runs everything whatever the tier).
    pub fn set_tier(&mut self, tier: crate::jit::Tier) {
        self.tier = tier;
    }

    /// A start-up IPI: real mode at vector * 0x1000.
    pub fn start_at_sipi(&mut self, vector: u8) {
        self.wait_for_sipi = false;
        self.halted = false;
        let sel = u16::from(vector) << 8;
        self.seg[Seg::Cs as usize] = Segment::real_mode(sel, true);
        self.rip = 0;
        self.update_mode();
    }

    #[inline]
    pub fn long_mode_active(&self) -> bool {
        self.efer & x86::EFER_LMA != 0
    }

    /// Stack address size in bits (SS.B, or 64 in 64-bit mode).
    #[inline]
    pub fn stack_bits(&self) -> u32 {
        match self.mode {
            Mode::Long => 64,
            Mode::Real | Mode::Vm86 => {
                if self.seg[Seg::Ss as usize].db {
                    32
                } else {
                    16
                }
            }
            Mode::Protected => {
                if self.seg[Seg::Ss as usize].db {
                    32
                } else {
                    16
                }
            }
        }
    }

    /// Record why the engine cannot continue.
    pub fn internal(&mut self, msg: impl Into<String>) -> Fault {
        self.error = msg.into();
        Fault::Internal
    }

    /// Catch up with slot-table and code-page changes made elsewhere.
    /// Returns true when the slot table changed (decoded blocks are stale).
    #[inline]
    pub fn sync_memory_epochs(&mut self) -> bool {
        use std::sync::atomic::Ordering;
        // SeqCst: pairs with `PhysMemory::dirty_log` (see `enter_guest`);
        // loaded before the others, so a bump after it is seen next time.
        let any = self.mem.any_epoch.load(Ordering::SeqCst);
        if any == self.seen_any_epoch {
            return false;
        }
        self.seen_any_epoch = any;
        let mut changed = false;
        let layout = self.mem.layout_epoch.load(Ordering::Acquire);
        if layout != self.seen_layout_epoch {
            self.seen_layout_epoch = layout;
            self.slots = SlotView {
                slots: self.mem.slots(),
            };
            self.code = self.mem.code_pages();
            self.tlb.flush_all();
            changed = true;
        }
        let we = self.code.write_epoch.load(Ordering::Acquire);
        if we != self.seen_write_epoch {
            self.seen_write_epoch = we;
            self.tlb.drop_write_permissions();
        }
        let inval = self.code.inval_epoch.load(Ordering::Acquire);
        if inval != self.seen_inval_epoch {
            self.seen_inval_epoch = inval;
            self.tlb.bump_epoch();
        }
        // SeqCst: pairs with `PhysMemory::dirty_log` (see `enter_guest`).
        let de = self.mem.dirty_epoch.load(Ordering::SeqCst);
        if de != self.seen_dirty_epoch {
            self.seen_dirty_epoch = de;
            self.tlb.drop_write_permissions();
            self.mem_ack.seen_dirty_epoch.store(de, Ordering::SeqCst);
        }
        changed
    }

    /// Say that guest code runs from now until `leave_guest`. The store is
    /// SeqCst before the epoch loads of `sync_memory_epochs`, and
    /// `dirty_log` bumps its epoch before it reads this flag: either it sees
    /// the vCPU in guest code and waits for it, or the vCPU sees the new
    /// epoch before its next write.
    #[inline]
    pub fn enter_guest(&self) {
        self.mem_ack
            .in_guest
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    #[inline]
    pub fn leave_guest(&self) {
        self.mem_ack
            .in_guest
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
