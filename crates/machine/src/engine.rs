//! Engine choice: the one place that knows which engines exist and how to
//! open them.

use std::sync::Arc;

use kite_hypervisor::Hypervisor;

use crate::config::EngineChoice;
use crate::error::MachineError;

/// Open the engine `choice` names; `auto` takes kvm only when the host CPU
/// has hardware virtualization and /dev/kvm opens, else emu.
pub fn open_engine(choice: EngineChoice) -> Result<Arc<dyn Hypervisor>, MachineError> {
    match choice {
        EngineChoice::Kvm => open_kvm(),
        EngineChoice::Emu => open_emu(),
        EngineChoice::Auto => {
            if host_has_hardware_virtualization() && dev_kvm_opens() {
                open_kvm()
            } else {
                open_emu()
            }
        }
    }
}

/// The kvm engine (/dev/kvm).
fn open_kvm() -> Result<Arc<dyn Hypervisor>, MachineError> {
    let hv = kite_engine_kvm::KvmHypervisor::new()
        .map_err(|e| MachineError::EngineUnavailable(format!("kvm engine: {e}")))?;
    Ok(Arc::new(hv))
}

/// The emu engine (Kite's software x86).
fn open_emu() -> Result<Arc<dyn Hypervisor>, MachineError> {
    Ok(Arc::new(kite_engine_emu::EmuHypervisor::new()))
}

/// Whether /proc/cpuinfo lists the vmx (Intel VT-x) or svm (AMD-V) flag.
pub fn host_has_hardware_virtualization() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|s| cpuinfo_has_virtualization(&s))
}

fn cpuinfo_has_virtualization(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// Whether /dev/kvm can be opened for reading and writing.
pub fn dev_kvm_opens() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_flags() {
        assert!(cpuinfo_has_virtualization(
            "processor\t: 0\nflags\t\t: fpu vme vmx sse\n"
        ));
        assert!(cpuinfo_has_virtualization("flags\t: svm lm\n"));
        assert!(!cpuinfo_has_virtualization(
            "flags\t: fpu vmxnet lm\nmodel name: vmx\n"
        ));
        assert!(!cpuinfo_has_virtualization(""));
    }
}
