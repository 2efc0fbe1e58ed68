//! Kite's kvm engine: guest mode by the host's /dev/kvm.
//!
//! Implements the `kite-hypervisor` traits on top of kvm-ioctls: `KvmHypervisor`
//! (the /dev/kvm handle), `KvmVm` (a VM file descriptor with its memory slots and
//! in-kernel irqchip) and `KvmVcpu` (a vCPU file descriptor and its `kvm_run`
//! page). This crate knows nothing about PCs: no devices, no loaders.
//!
//! Kicks (`Vcpu::kick_handle`) send the real-time signal SIGRTMIN to the vCPU
//! thread, with a no-op handler installed once per process: a program using
//! this engine must not block SIGRTMIN in vCPU threads or use it otherwise.
//! `Vcpu::translate` takes the physical address from KVM_TRANSLATE and the
//! write/user permissions from its own walk of the guest page tables (KVM
//! reports fixed values for those on x86).

mod convert;
mod hypervisor;
mod kick;
mod page_walk;
pub mod snapshot;
mod sw_breakpoints;
mod vcpu;
mod vm;

pub use hypervisor::KvmHypervisor;
pub use vcpu::KvmVcpu;
pub use vm::KvmVm;
