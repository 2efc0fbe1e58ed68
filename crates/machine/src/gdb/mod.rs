//! A GDB stub for the machine (`--gdb tcp:HOST:PORT[,wait=on]`): the GDB
//! remote serial protocol through the `gdbstub` crate, with every vCPU as a
//! gdb thread in gdb's x86-64 register layout (32-bit guests too, as QEMU
//! presents them), stop/continue, single-step, software and hardware
//! breakpoints, watchpoints where the engine has them, memory by virtual
//! address, and a triple fault reported to gdb before the machine resets.
//!
//! `hub` is where vCPU threads and the stub meet (below the protocol),
//! `target` is the machine as gdbstub sees it, `server` the TCP side,
//! `regs` the register layout. It talks to engines only through the
//! hypervisor API and to the session only through `MachineControl`'s
//! debug hook; it must not know devices.

mod arch;
mod hub;
mod regs;
mod server;
mod target;

pub use hub::{DebugHub, HubError, Stop};
pub use server::{GdbArch, GdbConfig, GdbError, GdbServer};
