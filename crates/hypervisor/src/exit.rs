//! Why a vCPU left guest mode.

/// What reset or power event the guest asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemEvent {
    /// The guest asked for a reset (KVM_SYSTEM_EVENT_RESET).
    Reset,
    /// The guest asked to power off (KVM_SYSTEM_EVENT_SHUTDOWN).
    Shutdown,
}

/// An exit from guest mode. Buffers borrow the vCPU: fill `IoIn`/`MmioRead`
/// data before the next `run`.
#[derive(Debug)]
pub enum VcpuExit<'a> {
    /// IN/INS: `data.len()` is `size * count`; fill it.
    IoIn {
        port: u16,
        size: u8,
        data: &'a mut [u8],
    },
    /// OUT/OUTS: `data.len()` is `size * count`.
    IoOut { port: u16, size: u8, data: &'a [u8] },
    /// A read of guest-physical memory that no RAM slot backs; fill `data`.
    MmioRead { addr: u64, data: &'a mut [u8] },
    /// A write of guest-physical memory that no writable RAM slot backs.
    MmioWrite { addr: u64, data: &'a [u8] },
    /// HLT executed (only without an irqchip; with one, HLT sleeps in `run`).
    Hlt,
    /// Triple fault or an equivalent shutdown condition.
    Shutdown,
    /// The guest requested a reset or power-off through the engine.
    SystemEvent(SystemEvent),
    /// The engine could not enter guest mode with the given state.
    FailEntry { reason: u64 },
    /// Single-step, breakpoint or watchpoint; `rip` is the next instruction.
    Debug { rip: u64, hit: crate::DebugHit },
    /// `VcpuKick::kick` was called (or a signal interrupted the run).
    Interrupted,
    /// The engine cannot continue this guest: an unimplemented instruction,
    /// an emulation failure. The message names the bytes and address.
    InternalError(String),
}
