//! One boot's snapshot state: the devices (by name), guest RAM and the VM,
//! assembled in one place. `write` saves a paused machine (the vCPUs' own
//! states come from their threads through `MachineControl::capture`);
//! `restore` checks a decoded stream against this machine completely and
//! only then applies it, to a machine that has not run yet.
//!
//! It must not know how the vCPU threads are parked, nor the CLI or QMP.

use std::io::Write;
use std::sync::{Arc, Mutex};

use kite_devices::bus::lock;
use kite_devices::state::{StateReader, StateWriter};
use kite_devices::Snapshot;
use kite_hypervisor::{Vcpu, Vm};
use vm_memory::GuestMemoryMmap;

use super::format::{Decoded, Header, StreamWriter, FORMAT_VERSION};
use super::ram::{self, RamPages};
use super::SnapshotError;

/// The "machine" section's version.
const MACHINE_VERSION: u16 = 1;
/// Engine blobs are versioned inside; the section version is the API's.
const ENGINE_VERSION: u16 = 1;
const RAM_VERSION: u16 = 1;

/// The devices a snapshot saves, by section name.
#[derive(Default)]
pub struct DeviceTable {
    entries: Vec<(String, Arc<Mutex<dyn Snapshot>>)>,
}

impl DeviceTable {
    pub fn new() -> DeviceTable {
        DeviceTable::default()
    }

    /// Save `dev` as section `dev.<name>`.
    pub fn add(&mut self, name: &str, dev: Arc<Mutex<dyn Snapshot>>) {
        self.entries.push((format!("dev.{name}"), dev));
    }

    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|(n, _)| n.clone()).collect()
    }
}

/// How the machine was when saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedRun {
    /// The vCPUs ran (else they were paused by the user).
    pub running: bool,
}

/// What a snapshot reads and writes of one boot.
pub struct MachineState {
    vm: Arc<dyn Vm>,
    mem: Arc<GuestMemoryMmap>,
    devices: DeviceTable,
    fingerprint: Vec<(String, String)>,
    vcpus: usize,
}

/// How far a write got, for `query-migrate`.
pub trait Progress: Send + Sync {
    fn set_total(&self, _bytes: u64) {}
    fn add(&self, _bytes: u64) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// No one is watching.
pub struct NoProgress;
impl Progress for NoProgress {}

impl MachineState {
    pub fn new(
        vm: Arc<dyn Vm>,
        mem: Arc<GuestMemoryMmap>,
        devices: DeviceTable,
        fingerprint: Vec<(String, String)>,
        vcpus: usize,
    ) -> MachineState {
        MachineState {
            vm,
            mem,
            devices,
            fingerprint,
            vcpus,
        }
    }

    pub fn header(&self) -> Header {
        Header {
            format: FORMAT_VERSION,
            kite_version: env!("CARGO_PKG_VERSION").to_string(),
            fingerprint: self.fingerprint.clone(),
        }
    }

    /// Write the whole paused machine to `out`: the run status, the VM's
    /// and each vCPU's engine state, RAM, then every device. Returns the
    /// bytes written.
    pub fn write(
        &self,
        out: impl Write,
        vcpus: &[Vec<u8>],
        saved: SavedRun,
        progress: &dyn Progress,
    ) -> Result<u64, SnapshotError> {
        let io = SnapshotError::Io;
        let vm_state = self
            .vm
            .save_state()
            .map_err(|e| SnapshotError::Engine(format!("saving the VM's state: {e}")))?;
        // Sizes first, so a watcher sees the total.
        let ranges = ram::ranges(&self.mem);
        let pages: Vec<Vec<u64>> = ranges
            .iter()
            .map(|&(b, s)| ram::pages_to_send(&self.mem, b, s, None))
            .collect();
        let devices: Vec<(String, u16, Vec<u8>)> = self
            .devices
            .entries
            .iter()
            .map(|(name, dev)| {
                let d = lock(dev);
                let mut w = StateWriter::new();
                d.save_state(&mut w);
                (name.clone(), d.state_version(), w.into_bytes())
            })
            .collect();
        let total: u64 = pages.iter().map(|p| ram::payload_len(p)).sum::<u64>()
            + devices.iter().map(|d| d.2.len() as u64).sum::<u64>()
            + vcpus.iter().map(|v| v.len() as u64).sum::<u64>()
            + vm_state.len() as u64;
        progress.set_total(total);

        let mut w = StreamWriter::new(out, &self.header()).map_err(io)?;
        w.section("machine", MACHINE_VERSION, &[u8::from(saved.running)])
            .map_err(io)?;
        w.section("vm", ENGINE_VERSION, &vm_state).map_err(io)?;
        progress.add(vm_state.len() as u64);
        for (i, v) in vcpus.iter().enumerate() {
            w.section(&format!("vcpu.{i}"), ENGINE_VERSION, v)
                .map_err(io)?;
            progress.add(v.len() as u64);
        }
        for (i, (&(base, size), p)) in ranges.iter().zip(&pages).enumerate() {
            let mem = &self.mem;
            w.section_parts(
                &format!("ram.{i}"),
                RAM_VERSION,
                ram::payload_len(p),
                |sink| {
                    // Report progress (and honour a cancel) as pages go.
                    let mut counted = |b: &[u8]| {
                        if progress.cancelled() {
                            return Err(std::io::Error::other("migration cancelled"));
                        }
                        progress.add(b.len() as u64);
                        sink(b)
                    };
                    ram::write_pages(mem, base, size, p, &mut counted)
                },
            )
            .map_err(io)?;
        }
        for (name, version, data) in &devices {
            w.section(name, *version, data).map_err(io)?;
            progress.add(data.len() as u64);
        }
        let written = w.written();
        w.finish().map_err(io)?;
        Ok(written)
    }

    /// The sections a stream for this machine must have, exactly.
    fn expected_sections(&self) -> Vec<String> {
        let mut v = vec!["machine".to_string(), "vm".to_string()];
        v.extend((0..self.vcpus).map(|i| format!("vcpu.{i}")));
        v.extend((0..ram::ranges(&self.mem).len()).map(|i| format!("ram.{i}")));
        v.extend(self.devices.names());
        v
    }

    /// Check `image` against this machine, then apply it: RAM, devices,
    /// the VM's state (interrupt controllers, clocks), each vCPU. Nothing is
    /// touched unless the stream is whole and every section is one this
    /// machine has; a device refusing its state fails the restore before
    /// any vCPU runs.
    pub fn restore(
        &self,
        image: &Decoded<'_>,
        vcpus: &mut [Box<dyn Vcpu>],
    ) -> Result<SavedRun, SnapshotError> {
        let bad = SnapshotError::Mismatch;
        super::fingerprint::check(&image.header.fingerprint, &self.fingerprint).map_err(bad)?;
        let want = self.expected_sections();
        for s in &image.sections {
            if !want.iter().any(|w| w == s.name) {
                return Err(SnapshotError::Mismatch(format!(
                    "the snapshot has a section {} this machine does not",
                    s.name
                )));
            }
        }
        for w in &want {
            match image.sections.iter().filter(|s| s.name == w).count() {
                1 => {}
                0 => {
                    return Err(SnapshotError::Mismatch(format!(
                        "the snapshot lacks section {w}"
                    )))
                }
                _ => {
                    return Err(SnapshotError::Corrupt(format!(
                        "section {w} appears more than once"
                    )))
                }
            }
        }
        let get = |n: &str| {
            image
                .section(n)
                .ok_or(SnapshotError::Corrupt(n.to_string()))
        };
        let machine = get("machine")?;
        if machine.version != MACHINE_VERSION || machine.data.len() != 1 || machine.data[0] > 1 {
            return Err(SnapshotError::Corrupt("the machine section".into()));
        }
        let running = machine.data[0] == 1;
        let ranges = ram::ranges(&self.mem);
        let mut pages = Vec::new();
        for i in 0..ranges.len() {
            let s = get(&format!("ram.{i}"))?;
            if s.version != RAM_VERSION {
                return Err(SnapshotError::Corrupt(format!(
                    "RAM section version {}",
                    s.version
                )));
            }
            pages.push(RamPages::parse(s.data, &ranges).map_err(SnapshotError::Corrupt)?);
        }
        for (name, dev) in &self.devices.entries {
            let s = get(name)?;
            let version = lock(dev).state_version();
            if s.version != version {
                return Err(SnapshotError::Mismatch(format!(
                    "{name} is at state version {}, this Kite reads version {version}",
                    s.version
                )));
            }
        }
        if vcpus.len() != self.vcpus {
            return Err(SnapshotError::Mismatch(format!(
                "{} vCPUs to restore, the machine has {}",
                vcpus.len(),
                self.vcpus
            )));
        }

        // Everything is there and checked: apply.
        for p in &pages {
            p.apply_full(&self.mem).map_err(SnapshotError::Apply)?;
        }
        for (name, dev) in &self.devices.entries {
            let s = get(name)?;
            let mut r = StateReader::new(s.data);
            let mut d = lock(dev);
            d.restore_state(&mut r)
                .and_then(|()| r.finish())
                .map_err(|e| SnapshotError::Device {
                    name: name.trim_start_matches("dev.").to_string(),
                    reason: e.to_string(),
                })?;
        }
        self.vm
            .restore_state(get("vm")?.data)
            .map_err(|e| SnapshotError::Engine(format!("restoring the VM's state: {e}")))?;
        for (i, v) in vcpus.iter_mut().enumerate() {
            v.restore_state(get(&format!("vcpu.{i}"))?.data)
                .map_err(|e| SnapshotError::Engine(format!("restoring vCPU {i}: {e}")))?;
        }
        Ok(SavedRun { running })
    }
}
