//! `KvmHypervisor`: the /dev/kvm handle that creates VMs and reports CPUID.

use std::sync::Arc;

use kite_hypervisor::{CpuidEntry, EngineKind, Error, Hypervisor, Result, Vm, VmConfig};
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::Kvm;

use crate::convert::cpuid_from_kvm;
use crate::vm::KvmVm;

/// The kvm engine: an open /dev/kvm.
pub struct KvmHypervisor {
    kvm: Kvm,
}

impl KvmHypervisor {
    /// Open /dev/kvm. `Error::Unavailable` if it is missing, not accessible or
    /// speaks an unexpected API version.
    pub fn new() -> Result<Self> {
        let kvm = Kvm::new().map_err(|e| {
            Error::Unavailable(format!(
                "cannot open /dev/kvm ({}); is KVM enabled and are you allowed to use it (group kvm)?",
                std::io::Error::from(e)
            ))
        })?;
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(Error::Unavailable(format!(
                "/dev/kvm speaks API version {version}, Kite needs 12"
            )));
        }
        Ok(KvmHypervisor { kvm })
    }
}

impl Hypervisor for KvmHypervisor {
    fn kind(&self) -> EngineKind {
        EngineKind::Kvm
    }

    fn create_vm(&self, config: &VmConfig) -> Result<Arc<dyn Vm>> {
        Ok(Arc::new(KvmVm::new(&self.kvm, config)?))
    }

    fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>> {
        let cpuid = self
            .kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| Error::host("KVM_GET_SUPPORTED_CPUID", e))?;
        Ok(cpuid.as_slice().iter().map(cpuid_from_kvm).collect())
    }
}
