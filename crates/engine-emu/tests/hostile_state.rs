//! Saved states are hostile too (a snapshot file, a migration socket):
//! random mutations of a valid vCPU state, restored into an emu vCPU with
//! an irqchip and run briefly. Restore either refuses the state or the
//! vCPU runs from it; the engine must never panic (debug assertions on).

use std::time::Duration;

use kite_engine_emu::EmuHypervisor;
use kite_hypervisor::conformance::support::{TestVm, CODE};
use kite_hypervisor::state::VcpuState;
use kite_hypervisor::{VcpuExit, VmConfig};

#[test]
fn mutated_vcpu_states_restore_or_are_refused_without_panics() {
    let hv = EmuHypervisor::new();
    let config = VmConfig {
        irqchip: true,
        pit: true,
        vcpus: 1,
    };
    let mut t = TestVm::with_config(&hv, &config).expect("test VM");
    t.long_mode(CODE).expect("long mode");
    let good = t.vcpu.save_state().expect("save_state");
    let vm_good = t.vm.save_state().expect("Vm::save_state");
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut restored, mut refused) = (0, 0);
    for _ in 0..1000 {
        let mut b = good.clone();
        for _ in 0..1 + next() % 8 {
            let at = (next() % b.len() as u64) as usize;
            b[at] = next() as u8;
        }
        let mut v = vm_good.clone();
        let at = (next() % v.len() as u64) as usize;
        v[at] = next() as u8;
        let _ = t.vm.restore_state(&v);
        match t.vcpu.restore_state(&b) {
            Err(_) => refused += 1,
            Ok(()) => {
                restored += 1;
                assert!(
                    VcpuState::from_bytes(&b).is_ok(),
                    "it restored, so it decodes"
                );
                // Run a little: a kick ends it if the guest neither exits nor stops.
                let kick = t.vcpu.kick_handle();
                let kicker = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(2));
                    kick.kick();
                });
                for _ in 0..4 {
                    match t.vcpu.run() {
                        Ok(VcpuExit::Interrupted)
                        | Ok(VcpuExit::Shutdown)
                        | Ok(VcpuExit::InternalError(_))
                        | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                let _ = kicker.join();
                // Complete whatever exit is left, then the state saves again.
                t.vcpu.kick_handle().kick();
                let _ = t.vcpu.run();
            }
        }
        // The vCPU still answers through the API.
        t.vcpu.regs().expect("regs after a hostile restore");
    }
    assert!(
        restored > 0 && refused > 0,
        "{restored} restored, {refused} refused"
    );
}
