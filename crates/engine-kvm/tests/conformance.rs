//! The hypervisor conformance suite on the kvm engine.
//!
//! Skips (with a message) only when /dev/kvm does not exist; if it exists but
//! cannot be used, every case fails with the reason.

use kite_engine_kvm::KvmHypervisor;
use kite_hypervisor::{Error, Result};

fn kvm() -> Result<KvmHypervisor> {
    match KvmHypervisor::new() {
        Err(Error::Unavailable(why)) if std::path::Path::new("/dev/kvm").exists() => {
            Err(Error::Invalid(format!("/dev/kvm exists but cannot be used: {why}")))
        }
        other => other,
    }
}

kite_hypervisor::conformance_tests!(
    kvm(),
    known_failures: [(
        "translate_permissions",
        "KVM_TRANSLATE on x86 always reports writeable=1 and usermode=0"
    )]
);
