//! Guest code is hostile: random bytes run as code, in real, 32-bit protected
//! and 64-bit long mode, from random registers and memory (page tables,
//! descriptor tables and IDT included, since the guest may overwrite them),
//! with random answers to its port and MMIO reads. The engine must never
//! panic (this suite builds with debug assertions, so arithmetic overflow in
//! the engine panics too) and must keep answering through the API.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kite_engine_emu::EmuHypervisor;
use kite_hypervisor::conformance::support::{TestVm, CODE};
use kite_hypervisor::{Hypervisor, VcpuExit};

/// xorshift64*: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Run one random program; returns how many exits it made.
fn run_program(hv: &dyn Hypervisor, seed: u64, mode: u32) -> usize {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut t = TestVm::new(hv, false).expect("test VM");
    match mode {
        16 => t.real_mode(CODE).expect("real mode"),
        32 => t.protected_mode(CODE).expect("protected mode"),
        _ => t.long_mode(CODE).expect("long mode"),
    }
    // Random code, and random bytes over a data page the code may point at.
    t.mem.write(CODE, &rng.bytes(4096)).expect("code");
    t.mem.write(0x9000, &rng.bytes(4096)).expect("data");
    let mut regs = t.vcpu.regs().expect("regs");
    let mut g = [0u64; 16];
    for (i, r) in g.iter_mut().enumerate() {
        // Mostly small values (addresses in RAM), sometimes anything.
        *r = if rng.next().is_multiple_of(4) {
            rng.next()
        } else {
            rng.next() % 0x40_0000
        };
        if i == 4 {
            *r = regs.rsp;
        }
    }
    regs.set_gprs(&g);
    regs.rflags = 2 | (rng.next() & 0xcd5);
    t.vcpu.set_regs(&regs).expect("set regs");

    // A watchdog: a program that loops forever is kicked out.
    let kick = t.vcpu.kick_handle();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let watchdog = std::thread::spawn(move || {
        for _ in 0..6 {
            std::thread::sleep(Duration::from_millis(5));
            if d.load(Ordering::Acquire) {
                return;
            }
        }
        kick.kick();
    });
    let mut exits = 0;
    while exits < 64 {
        exits += 1;
        match t.vcpu.run().expect("run must answer") {
            VcpuExit::IoIn { data, .. } | VcpuExit::MmioRead { data, .. } => {
                for b in data.iter_mut() {
                    *b = rng.next() as u8;
                }
            }
            VcpuExit::IoOut { .. }
            | VcpuExit::MmioWrite { .. }
            | VcpuExit::Hlt
            | VcpuExit::Debug { .. } => {}
            VcpuExit::Shutdown
            | VcpuExit::Interrupted
            | VcpuExit::InternalError(_)
            | VcpuExit::SystemEvent(_)
            | VcpuExit::FailEntry { .. } => break,
        }
    }
    done.store(true, Ordering::Release);
    let _ = watchdog.join();
    // The vCPU still answers state queries.
    t.vcpu.regs().expect("regs after the run");
    t.vcpu.sregs().expect("sregs after the run");
    exits
}

#[test]
fn random_code_never_panics_the_engine() {
    let hv = EmuHypervisor::new();
    let programs: u64 = std::env::var("KITE_HOSTILE_PROGRAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut exits = 0;
    for seed in 0..programs {
        for mode in [16, 32, 64] {
            exits += run_program(&hv, seed, mode);
        }
    }
    // The programs did run (exits were taken), so the test exercised something.
    assert!(exits as u64 >= programs * 3, "only {exits} exits");
}
