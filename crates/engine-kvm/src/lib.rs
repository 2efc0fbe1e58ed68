//! Kite's kvm engine: guest mode by the host's /dev/kvm.
//!
//! Implements the `kite-hypervisor` traits on top of kvm-ioctls: `KvmHypervisor`
//! (the /dev/kvm handle), `KvmVm` (a VM file descriptor with its memory slots and
//! in-kernel irqchip) and `KvmVcpu` (a vCPU file descriptor and its `kvm_run`
//! page). This crate knows nothing about PCs: no devices, no loaders.

mod convert;
mod hypervisor;
mod kick;
mod page_walk;
mod vcpu;
mod vm;

pub use hypervisor::KvmHypervisor;
pub use vcpu::KvmVcpu;
pub use vm::KvmVm;
