//! kvm-engine checks beyond the conformance suite: requests the engine must
//! refuse with `Error::Invalid` before they reach the kernel.
//! Skipped (with a message) only when /dev/kvm does not exist.

use kite_engine_kvm::KvmHypervisor;
use kite_hypervisor::{Error, Hypervisor, MemoryRegion, VmConfig};

fn kvm() -> Option<KvmHypervisor> {
    if !std::path::Path::new("/dev/kvm").exists() {
        println!("SKIPPED: /dev/kvm does not exist on this host");
        return None;
    }
    match KvmHypervisor::new() {
        Ok(kvm) => Some(kvm),
        Err(e) => panic!("/dev/kvm exists but cannot be used: {e}"),
    }
}

#[test]
fn pit_without_irqchip_is_refused() {
    let Some(kvm) = kvm() else { return };
    let config = VmConfig {
        irqchip: false,
        pit: true,
        vcpus: 1,
    };
    assert!(matches!(kvm.create_vm(&config), Err(Error::Invalid(_))));
}

#[test]
fn vm_with_irqchip_and_pit_is_created() {
    let Some(kvm) = kvm() else { return };
    let config = VmConfig {
        irqchip: true,
        pit: true,
        vcpus: 2,
    };
    let vm = kvm
        .create_vm(&config)
        .expect("create_vm with irqchip and PIT");
    vm.create_vcpu(0).expect("vCPU 0");
    vm.create_vcpu(1).expect("vCPU 1");
}

#[test]
fn misaligned_memory_region_is_refused() {
    let Some(kvm) = kvm() else { return };
    let vm = kvm.create_vm(&VmConfig::default()).expect("create_vm");
    let region = MemoryRegion {
        slot: 0,
        guest_phys_addr: 0x1000,
        size: 0x1800,
        host_addr: 0x7000_0000,
        readonly: false,
        log_dirty: false,
    };
    // SAFETY: refused before reaching KVM, so the bogus host address is never used.
    let result = unsafe { vm.set_memory_region(region) };
    assert!(matches!(result, Err(Error::Invalid(_))), "{result:?}");
}

#[test]
fn dirty_log_of_unknown_slot_is_refused() {
    let Some(kvm) = kvm() else { return };
    let vm = kvm.create_vm(&VmConfig::default()).expect("create_vm");
    assert!(matches!(vm.dirty_log(7), Err(Error::Invalid(_))));
}

#[test]
fn supported_cpuid_has_the_basic_leaves() {
    let Some(kvm) = kvm() else { return };
    let cpuid = kvm.supported_cpuid().expect("supported_cpuid");
    let max_basic = cpuid.iter().find(|e| e.function == 0).expect("leaf 0").eax;
    assert!(
        max_basic >= 1,
        "leaf 0 says the highest basic leaf is {max_basic}"
    );
    assert!(cpuid.iter().any(|e| e.function == 1), "no leaf 1");
    assert!(
        cpuid.iter().any(|e| e.function == 0x8000_0001),
        "no leaf 0x80000001"
    );
}
