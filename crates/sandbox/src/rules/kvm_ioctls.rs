//! The KVM ioctl request numbers Kite's KVM engine issues, computed as the
//! kernel's _IO/_IOR/_IOW/_IOWR macros do from kvm-bindings' structures.
//! It must not know which thread issues which.

use std::mem::size_of;

use kvm_bindings::*;

const KVMIO: u64 = 0xAE;
const NONE: u64 = 0;
const WRITE: u64 = 1;
const READ: u64 = 2;

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
}
const fn io(nr: u64) -> u64 {
    ioc(NONE, nr, 0)
}
const fn ior<T>(nr: u64) -> u64 {
    ioc(READ, nr, size_of::<T>())
}
const fn iow<T>(nr: u64) -> u64 {
    ioc(WRITE, nr, size_of::<T>())
}
const fn iowr<T>(nr: u64) -> u64 {
    ioc(READ | WRITE, nr, size_of::<T>())
}

/// Every KVM ioctl has this type byte in bits 8..16 of the request.
pub(crate) const KVM_IOCTL_TYPE_MASK: u64 = 0xff00;
pub(crate) const KVM_IOCTL_TYPE: u64 = KVMIO << 8;

pub(crate) const KVM_RUN: u64 = io(0x80);
pub(crate) const KVM_NMI: u64 = io(0x9a);
pub(crate) const KVM_KVMCLOCK_CTRL: u64 = io(0xad);
pub(crate) const KVM_GET_REGS: u64 = ior::<kvm_regs>(0x81);
pub(crate) const KVM_SET_REGS: u64 = iow::<kvm_regs>(0x82);
pub(crate) const KVM_GET_SREGS: u64 = ior::<kvm_sregs>(0x83);
pub(crate) const KVM_SET_SREGS: u64 = iow::<kvm_sregs>(0x84);
pub(crate) const KVM_TRANSLATE: u64 = iowr::<kvm_translation>(0x85);
pub(crate) const KVM_GET_MSRS: u64 = iowr::<kvm_msrs>(0x88);
pub(crate) const KVM_SET_MSRS: u64 = iow::<kvm_msrs>(0x89);
pub(crate) const KVM_GET_FPU: u64 = ior::<kvm_fpu>(0x8c);
pub(crate) const KVM_SET_FPU: u64 = iow::<kvm_fpu>(0x8d);
pub(crate) const KVM_GET_LAPIC: u64 = ior::<kvm_lapic_state>(0x8e);
pub(crate) const KVM_SET_LAPIC: u64 = iow::<kvm_lapic_state>(0x8f);
pub(crate) const KVM_SET_CPUID2: u64 = iow::<kvm_cpuid2>(0x90);
pub(crate) const KVM_GET_MP_STATE: u64 = ior::<kvm_mp_state>(0x98);
pub(crate) const KVM_SET_MP_STATE: u64 = iow::<kvm_mp_state>(0x99);
pub(crate) const KVM_SET_GUEST_DEBUG: u64 = iow::<kvm_guest_debug>(0x9b);
pub(crate) const KVM_GET_VCPU_EVENTS: u64 = ior::<kvm_vcpu_events>(0x9f);
pub(crate) const KVM_SET_VCPU_EVENTS: u64 = iow::<kvm_vcpu_events>(0xa0);
pub(crate) const KVM_GET_DEBUGREGS: u64 = ior::<kvm_debugregs>(0xa1);
pub(crate) const KVM_SET_DEBUGREGS: u64 = iow::<kvm_debugregs>(0xa2);
pub(crate) const KVM_GET_XSAVE: u64 = ior::<kvm_xsave>(0xa4);
pub(crate) const KVM_SET_XSAVE: u64 = iow::<kvm_xsave>(0xa5);
pub(crate) const KVM_GET_XCRS: u64 = ior::<kvm_xcrs>(0xa6);
pub(crate) const KVM_SET_XCRS: u64 = iow::<kvm_xcrs>(0xa7);

pub(crate) const KVM_GET_DIRTY_LOG: u64 = iow::<kvm_dirty_log>(0x42);
pub(crate) const KVM_SET_USER_MEMORY_REGION: u64 = iow::<kvm_userspace_memory_region>(0x46);
pub(crate) const KVM_IRQ_LINE: u64 = iow::<kvm_irq_level>(0x61);
pub(crate) const KVM_IRQ_LINE_STATUS: u64 = iowr::<kvm_irq_level>(0x67);
pub(crate) const KVM_SET_GSI_ROUTING: u64 = iow::<kvm_irq_routing>(0x6a);
pub(crate) const KVM_SIGNAL_MSI: u64 = iow::<kvm_msi>(0xa5);

/// What a vCPU thread asks of its own vCPU.
pub(crate) const VCPU: &[u64] = &[
    KVM_RUN,
    KVM_NMI,
    KVM_KVMCLOCK_CTRL,
    KVM_GET_REGS,
    KVM_SET_REGS,
    KVM_GET_SREGS,
    KVM_SET_SREGS,
    KVM_TRANSLATE,
    KVM_GET_MSRS,
    KVM_SET_MSRS,
    KVM_GET_FPU,
    KVM_SET_FPU,
    KVM_GET_LAPIC,
    KVM_SET_LAPIC,
    KVM_SET_CPUID2,
    KVM_GET_MP_STATE,
    KVM_SET_MP_STATE,
    KVM_SET_GUEST_DEBUG,
    KVM_GET_VCPU_EVENTS,
    KVM_SET_VCPU_EVENTS,
    KVM_GET_DEBUGREGS,
    KVM_SET_DEBUGREGS,
    KVM_GET_XSAVE,
    KVM_SET_XSAVE,
    KVM_GET_XCRS,
    KVM_SET_XCRS,
];

/// What a device model asks of the VM from whatever thread it runs on:
/// interrupts, MSIs and their routes, a BAR's memory slot, the dirty log.
pub(crate) const VM_DEVICE: &[u64] = &[
    KVM_IRQ_LINE,
    KVM_IRQ_LINE_STATUS,
    KVM_SIGNAL_MSI,
    KVM_SET_GSI_ROUTING,
    KVM_SET_USER_MEMORY_REGION,
    KVM_GET_DIRTY_LOG,
];

pub(crate) const KVM_GET_IRQCHIP: u64 = iowr::<kvm_irqchip>(0x62);
pub(crate) const KVM_GET_CLOCK: u64 = ior::<kvm_clock_data>(0x7c);
pub(crate) const KVM_GET_PIT2: u64 = ior::<kvm_pit_state2>(0x9f);

/// What saving a snapshot asks of the VM (the migration thread).
pub(crate) const VM_STATE: &[u64] = &[KVM_GET_IRQCHIP, KVM_GET_CLOCK, KVM_GET_PIT2];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_kernel_abi() {
        // Values from the kernel's <linux/kvm.h> on x86_64.
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(KVM_SET_REGS, 0x4090_ae82);
        assert_eq!(KVM_GET_SREGS, 0x8138_ae83);
        assert_eq!(KVM_SET_USER_MEMORY_REGION, 0x4020_ae46);
        assert_eq!(KVM_IRQ_LINE, 0x4008_ae61);
        assert_eq!(KVM_SIGNAL_MSI, 0x4020_aea5);
        assert_eq!(KVM_SET_CPUID2, 0x4008_ae90);
        assert_eq!(KVM_GET_DIRTY_LOG, 0x4010_ae42);
        assert_eq!(KVM_GET_IRQCHIP, 0xc208_ae62);
        assert_eq!(KVM_GET_CLOCK, 0x8030_ae7c);
        assert_eq!(KVM_GET_PIT2, 0x8070_ae9f);
        for n in VCPU.iter().chain(VM_DEVICE).chain(VM_STATE) {
            assert_eq!(n & KVM_IOCTL_TYPE_MASK, KVM_IOCTL_TYPE);
        }
    }
}
