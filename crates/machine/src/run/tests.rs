//! The run loop against a scripted engine: exits dispatched to devices,
//! threads named per vCPU, every way a run ends.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kite_hypervisor::{
    CpuidEntry, EngineKind, Error, Event, Fpu, GuestDebug, Hypervisor, MemoryRegion, Msi, Regs,
    Result, Sregs, Translation, Vcpu, VcpuExit, VcpuKick, Vm, VmConfig,
};

use super::*;
use crate::config::{EngineChoice, SerialMode};
use crate::loader::Image;

#[derive(Clone, Debug)]
enum Step {
    Out(u16, Vec<u8>),
    In(u16),
    Shutdown,
    Internal(&'static str),
    /// Wait (up to a second) until this many vCPU threads have entered `run`.
    AwaitThreads(usize),
}

/// Scripts per boot, per vCPU; what happened, for the test to check.
#[derive(Default)]
struct Record {
    boots: AtomicUsize,
    thread_names: Mutex<Vec<String>>,
    regions: Mutex<Vec<MemoryRegion>>,
    boot_rip: Mutex<Vec<u64>>,
    io_in: Mutex<Vec<u8>>,
    irq_lines: Mutex<Vec<(u32, bool)>>,
    restored_rip: Mutex<Vec<u64>>,
}

struct FakeHv {
    scripts: Vec<Vec<Step>>,
    record: Arc<Record>,
}

struct FakeVm {
    script: Vec<Step>,
    record: Arc<Record>,
}

struct Kick(AtomicBool);
impl VcpuKick for Kick {
    fn kick(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct FakeVcpu {
    id: u32,
    steps: VecDeque<Step>,
    buf: Vec<u8>,
    pending_in: bool,
    kick: Arc<Kick>,
    regs: Regs,
    sregs: Sregs,
    record: Arc<Record>,
}

impl Hypervisor for FakeHv {
    fn kind(&self) -> EngineKind {
        EngineKind::Emu
    }
    fn create_vm(&self, _c: &VmConfig) -> Result<Arc<dyn Vm>> {
        let boot = self.record.boots.fetch_add(1, Ordering::SeqCst);
        let script = self.scripts.get(boot).cloned().unwrap_or_default();
        Ok(Arc::new(FakeVm {
            script,
            record: self.record.clone(),
        }))
    }
    fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>> {
        Ok(vec![CpuidEntry {
            function: 1,
            ..Default::default()
        }])
    }
}

impl Vm for FakeVm {
    unsafe fn set_memory_region(&self, region: MemoryRegion) -> Result<()> {
        self.record.regions.lock().unwrap().push(region);
        Ok(())
    }
    fn dirty_log(&self, _slot: u32) -> Result<Vec<u64>> {
        Err(Error::Invalid("no".into()))
    }
    fn create_vcpu(&self, id: u32) -> Result<Box<dyn Vcpu>> {
        let steps = if id == 0 {
            self.script.iter().cloned().collect()
        } else {
            VecDeque::new()
        };
        Ok(Box::new(FakeVcpu {
            id,
            steps,
            buf: Vec::new(),
            pending_in: false,
            kick: Arc::new(Kick(AtomicBool::new(false))),
            regs: Regs::default(),
            sregs: Sregs {
                apic_base: 0xfee0_0900,
                ..Default::default()
            },
            record: self.record.clone(),
        }))
    }
    fn set_irq_line(&self, gsi: u32, level: bool) -> Result<()> {
        self.record.irq_lines.lock().unwrap().push((gsi, level));
        Ok(())
    }
    fn signal_msi(&self, _msi: Msi) -> Result<()> {
        Ok(())
    }
    fn save_state(&self) -> Result<Vec<u8>> {
        Ok(b"fake-vm".to_vec())
    }
    fn restore_state(&self, state: &[u8]) -> Result<()> {
        if state == b"fake-vm" {
            Ok(())
        } else {
            Err(Error::Invalid("not a fake VM's state".into()))
        }
    }
}

impl Vcpu for FakeVcpu {
    fn id(&self) -> u32 {
        self.id
    }
    fn run(&mut self) -> Result<VcpuExit<'_>> {
        if self.pending_in {
            self.record
                .io_in
                .lock()
                .unwrap()
                .extend_from_slice(&self.buf);
            self.pending_in = false;
        }
        {
            let mut names = self.record.thread_names.lock().unwrap();
            let name = std::thread::current().name().unwrap_or("?").to_string();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        match self.steps.pop_front() {
            Some(Step::Out(port, data)) => {
                self.buf = data;
                Ok(VcpuExit::IoOut {
                    port,
                    size: 1,
                    data: &self.buf,
                })
            }
            Some(Step::In(port)) => {
                self.buf = vec![0; 1];
                self.pending_in = true;
                Ok(VcpuExit::IoIn {
                    port,
                    size: 1,
                    data: &mut self.buf,
                })
            }
            Some(Step::Shutdown) => {
                self.regs.rip = 0xdead;
                Ok(VcpuExit::Shutdown)
            }
            Some(Step::Internal(m)) => Ok(VcpuExit::InternalError(m.to_string())),
            Some(Step::AwaitThreads(n)) => {
                for _ in 0..1000 {
                    if self.record.thread_names.lock().unwrap().len() >= n {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(VcpuExit::Interrupted)
            }
            None => {
                while !self.kick.0.swap(false, Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(VcpuExit::Interrupted)
            }
        }
    }
    fn kick_handle(&self) -> Arc<dyn VcpuKick> {
        self.kick.clone()
    }
    fn regs(&self) -> Result<Regs> {
        Ok(self.regs)
    }
    fn set_regs(&mut self, regs: &Regs) -> Result<()> {
        self.record.boot_rip.lock().unwrap().push(regs.rip);
        self.regs = *regs;
        Ok(())
    }
    fn sregs(&self) -> Result<Sregs> {
        Ok(self.sregs)
    }
    fn set_sregs(&mut self, sregs: &Sregs) -> Result<()> {
        assert_eq!(
            sregs.apic_base, 0xfee0_0900,
            "the builder keeps the engine's APIC base"
        );
        self.sregs = *sregs;
        Ok(())
    }
    fn fpu(&self) -> Result<Fpu> {
        Ok(Fpu::default())
    }
    fn set_fpu(&mut self, _fpu: &Fpu) -> Result<()> {
        Ok(())
    }
    fn msrs(&self, _i: &[u32]) -> Result<Vec<(u32, u64)>> {
        Ok(Vec::new())
    }
    fn set_msrs(&mut self, _m: &[(u32, u64)]) -> Result<()> {
        Ok(())
    }
    fn set_cpuid(&mut self, entries: &[CpuidEntry]) -> Result<()> {
        assert_eq!(entries[0].ebx >> 24, self.id, "APIC id in CPUID leaf 1");
        Ok(())
    }
    fn inject(&mut self, _e: Event) -> Result<()> {
        Ok(())
    }
    fn translate(&self, _gva: u64) -> Result<Option<Translation>> {
        Ok(None)
    }
    fn set_guest_debug(&mut self, _d: &GuestDebug) -> Result<()> {
        Ok(())
    }
    // The fake's whole state is its rip.
    fn save_state(&self) -> Result<Vec<u8>> {
        Ok(self.regs.rip.to_le_bytes().to_vec())
    }
    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        let b: [u8; 8] = state
            .try_into()
            .map_err(|_| Error::Invalid("not a fake vCPU's state".into()))?;
        self.regs.rip = u64::from_le_bytes(b);
        self.record.restored_rip.lock().unwrap().push(self.regs.rip);
        Ok(())
    }
}

fn out_file(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("kite-run-{tag}-{}", std::process::id()))
}

fn config(cpus: u32, serial: SerialMode, no_reboot: bool) -> MachineConfig {
    MachineConfig {
        engine: EngineChoice::Emu,
        memory: 32 << 20,
        cpus,
        kernel: Some(Image::from_bytes("hello", kite_testkernels::hello())),
        firmware: Default::default(),
        initrd: None,
        cmdline: String::new(),
        serial,
        no_reboot,
        disks: Vec::new(),
        ide: Default::default(),
        display: None,
        rng: false,
        net: None,
    }
}

fn session(scripts: Vec<Vec<Step>>, cfg: &MachineConfig) -> (Outcome, Arc<Record>) {
    let record = Arc::new(Record::default());
    let hv = FakeHv {
        scripts,
        record: record.clone(),
    };
    (run_session_on(cfg, &hv).unwrap(), record)
}

fn serial_bytes(s: &str) -> Vec<Step> {
    s.bytes().map(|b| Step::Out(0x3f8, vec![b])).collect()
}

#[test]
fn serial_output_then_debug_exit_on_two_vcpus() {
    let path = out_file("hello");
    let mut script = vec![Step::AwaitThreads(2)];
    script.extend(serial_bytes("hi\n"));
    script.push(Step::In(0x3fd)); // LSR: transmitter empty
    script.push(Step::Out(0xf4, vec![5]));
    script.push(Step::Out(0x3f8, b"X".to_vec())); // never runs
    let (outcome, rec) = session(
        vec![script],
        &config(2, SerialMode::File(path.clone()), false),
    );
    assert_eq!(outcome, Outcome::DebugExit(5));
    assert_eq!(outcome.status(), 11);
    assert_eq!(std::fs::read(&path).unwrap(), b"hi\n");
    std::fs::remove_file(&path).unwrap();
    let mut names = rec.thread_names.lock().unwrap().clone();
    names.sort();
    assert_eq!(names, vec!["kite-vcpu0", "kite-vcpu1"]);
    assert_ne!(rec.io_in.lock().unwrap()[0] & 0x20, 0);
    let regions = rec.regions.lock().unwrap();
    // RAM below the VGA window, RAM above 1 MiB, then the PAM segments of
    // 0xc0000-0xfffff as RAM (Kite plays the firmware for a direct boot).
    assert_eq!(
        (regions[0].slot, regions[0].guest_phys_addr, regions[0].size),
        (0, 0, 0xa_0000)
    );
    assert_eq!(
        (regions[1].slot, regions[1].guest_phys_addr, regions[1].size),
        (1, 0x10_0000, 31 << 20)
    );
    let pam: u64 = regions
        .iter()
        .filter(|r| (0xc_0000..0x10_0000).contains(&r.guest_phys_addr) && r.size > 0)
        .map(|r| {
            assert!(!r.readonly);
            r.size
        })
        .sum();
    assert_eq!(pam, 0x4_0000);
    // Every slot is deleted before the memory is unmapped.
    let mut live = std::collections::BTreeSet::new();
    for r in regions.iter() {
        if r.size == 0 {
            live.remove(&r.slot);
        } else {
            live.insert(r.slot);
        }
    }
    assert!(live.is_empty(), "slots left registered: {live:?}");
    assert_eq!(
        *rec.boot_rip.lock().unwrap(),
        vec![0x10_0040],
        "only vCPU 0 gets the entry point"
    );
}

#[test]
fn triple_fault_reboots_then_exits() {
    let scripts = vec![
        vec![Step::Shutdown],
        vec![Step::Shutdown],
        vec![Step::Out(0xf4, vec![0])],
    ];
    let (outcome, rec) = session(scripts, &config(1, SerialMode::None, false));
    assert_eq!(outcome, Outcome::DebugExit(0));
    assert_eq!(rec.boots.load(Ordering::SeqCst), 3);
    assert_eq!(
        rec.boot_rip.lock().unwrap().len(),
        3,
        "each boot reloads the kernel state"
    );
}

#[test]
fn triple_fault_with_no_reboot_names_state() {
    let (outcome, rec) = session(
        vec![vec![Step::Shutdown]],
        &config(1, SerialMode::None, true),
    );
    assert_eq!(outcome.status(), 1);
    let msg = outcome.message().unwrap();
    for part in [
        "triple fault",
        "rip=0xdead",
        "cr0=0x11",
        "cr3=",
        "cr4=",
        "efer=",
        "cs=0x8",
        "--no-reboot",
    ] {
        assert!(msg.contains(part), "{part} missing from {msg}");
    }
    assert_eq!(rec.boots.load(Ordering::SeqCst), 1);
}

#[test]
fn keyboard_controller_reset() {
    let reset = vec![Step::Out(0x64, vec![0xfe])];
    let (outcome, _) = session(vec![reset.clone()], &config(1, SerialMode::None, true));
    assert_eq!(outcome, Outcome::ResetRefused(None));
    assert_eq!(outcome.status(), 0);
    let (outcome, rec) = session(
        vec![reset, vec![Step::Out(0xf4, vec![2])]],
        &config(1, SerialMode::None, false),
    );
    assert_eq!(outcome, Outcome::DebugExit(2));
    assert_eq!(rec.boots.load(Ordering::SeqCst), 2);
}

#[test]
fn engine_failure_is_status_1() {
    let (outcome, _) = session(
        vec![vec![Step::Internal("cannot decode 0f 0b at 0x1000")]],
        &config(1, SerialMode::None, false),
    );
    assert_eq!(outcome.status(), 1);
    assert!(outcome.message().unwrap().contains("vCPU 0: cannot decode"));
}

#[test]
fn bad_configs_are_user_errors() {
    let record = Arc::new(Record::default());
    let hv = FakeHv {
        scripts: vec![],
        record,
    };
    let mut c = config(0, SerialMode::None, false);
    assert!(run_session_on(&c, &hv).unwrap_err().is_user_error());
    c.cpus = 1;
    c.memory = 1000;
    assert!(run_session_on(&c, &hv).unwrap_err().is_user_error());
    c.memory = 32 << 20;
    c.kernel = Some(Image::from_bytes("junk", vec![1, 2, 3]));
    let e = run_session_on(&c, &hv).unwrap_err();
    assert!(e.is_user_error());
    assert!(e.to_string().contains("junk: not a kernel image"));
}

#[test]
fn device_interrupts_reach_the_vm_lines() {
    let script = vec![
        // COM1: enable the THR-empty interrupt; the transmitter is empty, so
        // the UART interrupts at once on IRQ 4.
        Step::Out(0x3f9, vec![0x02]),
        // i8042 self-test with the keyboard interrupt enabled: IRQ 1.
        Step::Out(0x64, vec![0xaa]),
        Step::Out(0xf4, vec![1]),
    ];
    let (outcome, rec) = session(vec![script], &config(1, SerialMode::None, false));
    assert_eq!(outcome, Outcome::DebugExit(1));
    let lines = rec.irq_lines.lock().unwrap().clone();
    assert_eq!(lines, vec![(4, true), (4, false), (1, true), (1, false)]);
}

/// Run `script` until it idles, snapshot it through the session handle,
/// quit; the stream.
fn snapshot_of(script: Vec<Step>, cfg: &MachineConfig, pause_first: bool) -> Vec<u8> {
    let record = Arc::new(Record::default());
    let hv = FakeHv {
        scripts: vec![script],
        record: record.clone(),
    };
    let control = MachineControl::new();
    let c = control.clone();
    let taker = std::thread::spawn(move || {
        // Wait for the script to have run (its last step idles).
        for _ in 0..2000 {
            if c.vcpu_threads().len() == 1 && !record.io_in.lock().unwrap().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if pause_first {
            c.pause().unwrap();
        }
        let cap = c.capture().unwrap();
        assert_eq!(cap.was_running, !pause_first);
        let mut out = Vec::new();
        cap.machine
            .write(
                &mut out,
                &cap.vcpus,
                crate::snapshot::SavedRun {
                    running: cap.was_running,
                },
                &crate::snapshot::NoProgress,
            )
            .unwrap();
        c.quit();
        out
    });
    let outcome = run_session_on_controlled(cfg, &hv, &control).unwrap();
    assert_eq!(outcome, Outcome::HostQuit);
    taker.join().unwrap()
}

fn restore(
    bytes: Vec<u8>,
    script: Vec<Step>,
    cfg: &MachineConfig,
    control: &MachineControl,
) -> (std::result::Result<Outcome, MachineError>, Arc<Record>) {
    let record = Arc::new(Record::default());
    let hv = FakeHv {
        scripts: vec![script],
        record: record.clone(),
    };
    let incoming = Incoming {
        bytes,
        source: "test".into(),
        disk_wait: std::time::Duration::ZERO,
    };
    (
        run_session_incoming_on(cfg, &hv, control, &incoming),
        record,
    )
}

#[test]
fn a_snapshot_restores_devices_vcpus_and_ram_into_a_new_session() {
    let cfg = config(1, SerialMode::None, false);
    // The guest sets the UART's scratch register, then idles.
    let bytes = snapshot_of(
        vec![Step::Out(0x3ff, vec![0x5a]), Step::In(0x3ff)],
        &cfg,
        false,
    );
    let (outcome, rec) = restore(
        bytes,
        vec![Step::In(0x3ff), Step::Out(0xf4, vec![3])],
        &cfg,
        &MachineControl::new(),
    );
    assert_eq!(outcome.unwrap(), Outcome::DebugExit(3));
    assert_eq!(
        *rec.io_in.lock().unwrap(),
        vec![0x5a],
        "the restored UART has the scratch byte"
    );
    // The vCPU state came from the snapshot (the boot rip set at build).
    assert_eq!(*rec.restored_rip.lock().unwrap(), vec![0x10_0040]);
}

#[test]
fn a_paused_snapshot_restores_paused() {
    let cfg = config(1, SerialMode::None, false);
    let bytes = snapshot_of(vec![Step::In(0x3ff)], &cfg, true);
    let control = MachineControl::new();
    let c = control.clone();
    let watcher = std::thread::spawn(move || {
        for _ in 0..2000 {
            if c.vcpu_threads().len() == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50));
        let status = c.status();
        c.quit();
        status
    });
    let (outcome, rec) = restore(bytes, vec![Step::Out(0xf4, vec![3])], &cfg, &control);
    assert_eq!(watcher.join().unwrap(), crate::control::RunStatus::Paused);
    assert_eq!(
        outcome.unwrap(),
        Outcome::HostQuit,
        "the debug exit never ran"
    );
    assert!(rec.io_in.lock().unwrap().is_empty());
}

#[test]
fn damaged_or_foreign_snapshots_are_refused_before_anything_runs() {
    let cfg = config(1, SerialMode::None, false);
    let bytes = snapshot_of(vec![Step::In(0x3ff)], &cfg, false);
    let control = MachineControl::new();
    let cases: Vec<(Vec<u8>, MachineConfig, &str)> = vec![
        (bytes[..bytes.len() / 2].to_vec(), cfg.clone(), "truncated"),
        (
            {
                let mut b = bytes.clone();
                let at = b.len() / 3;
                b[at] ^= 0x40;
                b
            },
            cfg.clone(),
            "checksum",
        ),
        (
            bytes.clone(),
            MachineConfig {
                memory: 64 << 20,
                ..cfg.clone()
            },
            "--memory 32 MiB",
        ),
        (
            bytes.clone(),
            config(2, SerialMode::None, false),
            "--cpus 1",
        ),
        (
            b"not a snapshot".to_vec(),
            cfg.clone(),
            "not a Kite snapshot",
        ),
    ];
    for (b, c, want) in cases {
        let (outcome, rec) = restore(b, vec![Step::Out(0xf4, vec![3])], &c, &control);
        let e = outcome.unwrap_err();
        assert!(e.is_user_error(), "{e}");
        assert!(e.to_string().contains(want), "{want}: {e}");
        assert_eq!(rec.boots.load(Ordering::SeqCst), 0, "no VM was built");
    }
}
