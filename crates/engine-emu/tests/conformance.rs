//! The hypervisor conformance suite on the emu engine: the same cases as on
//! the kvm engine, with the same expected results.

use kite_engine_emu::EmuHypervisor;
use kite_hypervisor::Result;

fn emu() -> Result<EmuHypervisor> {
    Ok(EmuHypervisor::new())
}

kite_hypervisor::conformance_tests!(emu());
