//! Snapshots across engines: a guest saved on the emu engine goes on on
//! kvm, and one saved on kvm goes on on emu, ending as the uninterrupted
//! run does (the snapshot cases of the conformance suite, with two engines).
//!
//! Skips (with a message) only when /dev/kvm does not exist.

use kite_engine_emu::EmuHypervisor;
use kite_engine_kvm::KvmHypervisor;
use kite_hypervisor::conformance::snapshot::*;
use kite_hypervisor::conformance::CaseResult;
use kite_hypervisor::{Error, Hypervisor};

type Between = fn(&dyn Hypervisor, &dyn Hypervisor) -> CaseResult;

fn both_ways(name: &str, case: Between) {
    let kvm = match KvmHypervisor::new() {
        Ok(kvm) => kvm,
        Err(Error::Unavailable(why)) if !std::path::Path::new("/dev/kvm").exists() => {
            println!("SKIPPED {name}: no /dev/kvm: {why}");
            return;
        }
        Err(e) => panic!("{name}: /dev/kvm exists but cannot be used: {e}"),
    };
    let emu = EmuHypervisor::new();
    if let Err(e) = case(&emu, &kvm) {
        panic!("{name}, emu -> kvm: {e}");
    }
    if let Err(e) = case(&kvm, &emu) {
        panic!("{name}, kvm -> emu: {e}");
    }
}

#[test]
fn long_mode_state_across_engines() {
    both_ways("long_mode_state", snapshot_long_mode_state_between);
}

#[test]
fn irqchip_state_across_engines() {
    both_ways("irqchip_state", snapshot_irqchip_state_between);
}

#[test]
fn pit_interrupt_across_engines() {
    both_ways("pit_interrupt", snapshot_pit_interrupt_between);
}

#[test]
fn halted_vcpu_across_engines() {
    both_ways("halted_vcpu", snapshot_halted_vcpu_between);
}

#[test]
fn waiting_application_processor_across_engines() {
    both_ways(
        "waiting_application_processor",
        snapshot_waiting_application_processor_between,
    );
}
