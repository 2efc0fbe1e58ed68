//! The per-engine conformance suite: the same small guests run on every engine,
//! checking what a user of the API would check (exits, registers, memory).
//!
//! Each engine crate instantiates it in `tests/conformance.rs`:
//!
//! ```ignore
//! kite_hypervisor::conformance_tests!(
//!     my_engine::MyHypervisor::new(),
//!     known_failures: &[("case_name", "why this engine cannot pass it")]
//! );
//! ```
//!
//! `known_failures` is any expression with a `to_vec()` giving
//! `Vec<(&'static str, &'static str)>` (case name, reason), so an engine can
//! add host-dependent entries at run time. The macro expands to one `#[test]`
//! per case. `make` is evaluated per test; if it
//! returns `Error::Unavailable` the test prints why and passes (the engine cannot
//! run on this host). A case listed in `known_failures` still runs: the test
//! prints the reason and the observed failure, and it *fails* if the case
//! unexpectedly passes, so the list stays true.

pub mod cases;
pub mod snapshot;
pub mod support;

use crate::{Error, Hypervisor, Result};

/// What a case returns: `Err` carries a message saying what differed.
pub type CaseResult = std::result::Result<(), String>;

/// Run one case against a fresh engine from `make`.
pub fn run_case<H: Hypervisor>(
    name: &str,
    case: fn(&dyn Hypervisor) -> CaseResult,
    make: impl FnOnce() -> Result<H>,
    known_failures: &[(&str, &str)],
) {
    let hv = match make() {
        Ok(hv) => hv,
        Err(Error::Unavailable(why)) => {
            println!("SKIPPED {name}: engine unavailable on this host: {why}");
            return;
        }
        Err(e) => panic!("{name}: cannot create the engine: {e}"),
    };
    let engine = hv.kind().name();
    let known = known_failures
        .iter()
        .find(|(case, _)| *case == name)
        .map(|(_, why)| *why);
    match (case(&hv), known) {
        (Ok(()), None) => {}
        (Err(e), None) => panic!("{name} failed on the {engine} engine: {e}"),
        (Err(e), Some(why)) => {
            println!("KNOWN FAILURE {name} on the {engine} engine: {why}\n  observed: {e}")
        }
        (Ok(()), Some(why)) => panic!(
            "{name} passed on the {engine} engine but is listed as a known failure ({why}); \
             remove it from known_failures"
        ),
    }
}

/// Check that every name in a known-failure list is a real case.
pub fn check_known_failures(known_failures: &[(&str, &str)], cases: &[&str]) {
    for (name, _) in known_failures {
        assert!(
            cases.contains(name),
            "known_failures names `{name}`, which is not a conformance case"
        );
    }
}

/// One `#[test]` per conformance case; see the module documentation.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!($make, known_failures: &[]);
    };
    ($make:expr, known_failures: $known:expr) => {
        fn kite_conformance_known_failures() -> Vec<(&'static str, &'static str)> {
            $known.to_vec()
        }
        $crate::__conformance_case_tests!(
            $make;
            port_out_sizes,
            port_in_sizes,
            string_out,
            string_in,
            mmio_write_read,
            readonly_memory,
            hlt_without_irqchip,
            regs_round_trip,
            sregs_round_trip,
            fpu_round_trip,
            msrs_round_trip,
            unknown_msr_is_an_error,
            cpuid_seen_by_guest,
            loop_in_long_mode,
            self_modifying_code,
            remapped_code_page,
            mode_switch_by_guest,
            translate_four_level,
            translate_permissions,
            single_step,
            hardware_breakpoint,
            triple_fault_shuts_down,
            dirty_log,
            interrupt_via_pic,
            interrupt_via_ioapic,
            interrupt_via_msi,
            interrupt_lines_checked,
            pit_timer_interrupt,
            software_interrupt_and_iret,
            inject_interrupt,
            inject_nmi,
            inject_exception,
            kick_running_vcpu,
            kick_before_run,
            kick_halted_vcpu,
            two_vcpus_on_threads,
            snapshot_long_mode_state,
            snapshot_irqchip_state,
            snapshot_pit_interrupt,
            snapshot_hostile_state
        );
    };
}

/// Implementation detail of `conformance_tests!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_case_tests {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::run_case(
                    stringify!($name),
                    $crate::conformance::cases::$name,
                    || $make,
                    &kite_conformance_known_failures(),
                );
            }
        )*

        #[test]
        fn known_failures_name_real_cases() {
            $crate::conformance::check_known_failures(
                &kite_conformance_known_failures(),
                &[$(stringify!($name)),*],
            );
        }
    };
}
