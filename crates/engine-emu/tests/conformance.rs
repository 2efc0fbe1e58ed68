//! The hypervisor conformance suite on the emu engine: the same cases as on
//! the kvm engine, with the same expected results, on each execution tier:
//! the interpreter only, every block translated on its first run, and the
//! default mix (hot blocks translated).

use kite_engine_emu::jit::Tier;
use kite_engine_emu::EmuHypervisor;
use kite_hypervisor::Result;

mod interp {
    use super::*;
    fn emu() -> Result<EmuHypervisor> {
        Ok(EmuHypervisor::with_tier(Tier::Interp))
    }
    kite_hypervisor::conformance_tests!(emu());
}

mod jit_all {
    use super::*;
    fn emu() -> Result<EmuHypervisor> {
        Ok(EmuHypervisor::with_tier(Tier::All))
    }
    kite_hypervisor::conformance_tests!(emu());
}

mod jit_auto {
    use super::*;
    fn emu() -> Result<EmuHypervisor> {
        Ok(EmuHypervisor::with_tier(Tier::Auto))
    }
    kite_hypervisor::conformance_tests!(emu());
}
