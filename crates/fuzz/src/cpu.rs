//! The emu engine's x86 front end and interpreter. `x86_decode`: the bytes
//! decoded as 16-, 32- and 64-bit code the way the block decoder does
//! (iced-x86), each instruction mapped to its handler and checked for a
//! block end. `emu_exec`: the bytes run as guest code in a small VM (4 MiB
//! of RAM, real, protected or long mode, registers from the input), with
//! port and MMIO reads answered from the input, under a watchdog.
//!
//! Checked: decoded lengths are 1-15 bytes and tile the input exactly;
//! `Vcpu::run` always returns an exit (never an error, never a panic, with
//! overflow checks on), and the vCPU still answers register queries after.
//!
//! It must not know devices: every exit is answered here.

use std::sync::mpsc;
use std::time::Duration;

use iced_x86::{Decoder, DecoderOptions, Instruction};
use kite_engine_emu::cpu::exec::{ends_block, handler_for};
use kite_engine_emu::EmuHypervisor;
use kite_hypervisor::conformance::support::{TestVm, CODE, DATA};
use kite_hypervisor::{VcpuExit, VmConfig};

use crate::input::Input;

pub fn x86_decode(data: &[u8]) {
    for bits in [16u32, 32, 64] {
        let mut d = Decoder::with_ip(bits, data, 0x1000, DecoderOptions::NONE);
        let mut ins = Instruction::default();
        let mut consumed = 0usize;
        let mut ends = 0usize;
        while d.can_decode() {
            d.decode_out(&mut ins);
            let len = ins.len();
            assert!((1..=15).contains(&len) || ins.is_invalid(), "length {len}");
            consumed += len;
            let _handler = handler_for(&ins);
            if ends_block(&ins) {
                ends += 1;
            }
        }
        assert!(consumed <= data.len(), "decoded past the input");
        assert!(ends <= data.len());
    }
}

/// How long one program may run before the watchdog kicks its vCPU.
const WATCHDOG: Duration = Duration::from_millis(5);
/// Exits taken per program at most.
const MAX_EXITS: usize = 64;

pub fn emu_exec(data: &[u8]) {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let config = VmConfig {
        irqchip: flags & 0x80 != 0,
        pit: false,
        vcpus: 1,
    };
    let hv = EmuHypervisor::new();
    let mut t = match TestVm::with_config(&hv, &config) {
        Ok(t) => t,
        Err(e) => panic!("harness setup: test VM: {e}"),
    };
    let started = match flags % 3 {
        0 => t.real_mode(CODE),
        1 => t.protected_mode(CODE),
        _ => t.long_mode(CODE),
    };
    if let Err(e) = started {
        panic!("harness setup: vCPU mode: {e}");
    }
    let mut regs = match t.vcpu.regs() {
        Ok(r) => r,
        Err(e) => panic!("engine lost its registers before running: {e}"),
    };
    let mut g = [0u64; 16];
    for (i, r) in g.iter_mut().enumerate() {
        *r = match inp.u8() & 3 {
            0 => inp.u64(),
            _ => u64::from(inp.u16()) << 4,
        };
        if i == 4 {
            *r = regs.rsp;
        }
    }
    regs.set_gprs(&g);
    regs.rflags = 2 | (u64::from(inp.u16()) & 0xcd5);
    if let Err(e) = t.vcpu.set_regs(&regs) {
        panic!("set_regs refused valid registers: {e}");
    }
    // The code, and a data page it may point at.
    let code = inp.bytes(4096);
    if t.mem.write(CODE, code).is_err() || t.mem.write(DATA, inp.bytes(4096)).is_err() {
        panic!("harness setup: code in guest RAM");
    }
    let answers = inp.rest();

    let kick = t.vcpu.kick_handle();
    let (done, wait) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if wait.recv_timeout(WATCHDOG).is_err() {
            kick.kick();
        }
    });
    let mut k = 0usize;
    for _ in 0..MAX_EXITS {
        let exit = match t.vcpu.run() {
            Ok(e) => e,
            Err(e) => panic!("Vcpu::run failed instead of answering with an exit: {e}"),
        };
        match exit {
            VcpuExit::IoIn { data, .. } | VcpuExit::MmioRead { data, .. } => {
                for b in data.iter_mut() {
                    *b = answers
                        .get(k % answers.len().max(1))
                        .copied()
                        .unwrap_or(0xff);
                    k += 1;
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
    let _ = done.send(());
    let _ = watchdog.join();
    assert!(t.vcpu.regs().is_ok(), "registers lost after the run");
    assert!(
        t.vcpu.sregs().is_ok(),
        "segment registers lost after the run"
    );
}
