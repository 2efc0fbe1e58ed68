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
use crate::memory_map::GuestMap;

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
    map: Arc<GuestMap>,
    devices: DeviceTable,
    fingerprint: Vec<(String, String)>,
    vcpus: usize,
}

/// How far a write got, for `query-migrate`.
pub trait Progress: Send + Sync {
    fn set_total(&self, _bytes: u64) {}
    fn add_total(&self, _bytes: u64) {}
    fn add(&self, _bytes: u64) {}
    /// Pages per second the guest dirtied in the last pre-copy round.
    fn dirty_rate(&self, _pages_per_sec: u64) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// The check value of each RAM page last sent (live migration), so the
/// final pass finds pages written behind the engine's dirty log (device
/// DMA) too.
#[derive(Default)]
pub struct SentPages {
    sums: Vec<Vec<u32>>,
}

/// No one is watching.
pub struct NoProgress;
impl Progress for NoProgress {}

impl MachineState {
    pub fn new(
        vm: Arc<dyn Vm>,
        mem: Arc<GuestMemoryMmap>,
        map: Arc<GuestMap>,
        devices: DeviceTable,
        fingerprint: Vec<(String, String)>,
        vcpus: usize,
    ) -> MachineState {
        MachineState {
            vm,
            mem,
            map,
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
        let mut w = StreamWriter::new(out, &self.header()).map_err(io)?;
        self.write_ram(&mut w, progress, None)?;
        self.write_state(&mut w, vcpus, saved, progress)?;
        let written = w.written();
        w.finish().map_err(io)?;
        Ok(written)
    }

    /// Every RAM range's non-zero pages (`ram.N`), noting what was sent in
    /// `sent` when given.
    pub fn write_ram<W: Write>(
        &self,
        w: &mut StreamWriter<W>,
        progress: &dyn Progress,
        sent: Option<&mut SentPages>,
    ) -> Result<(), SnapshotError> {
        let ranges = ram::ranges(&self.mem);
        let pages: Vec<Vec<u64>> = ranges
            .iter()
            .map(|&(b, s)| ram::pages_to_send(&self.mem, b, s, None))
            .collect();
        progress.add_total(pages.iter().map(|p| ram::payload_len(p)).sum());
        if let Some(sent) = sent {
            *sent = self.page_sums();
        }
        for (i, (&(base, size), p)) in ranges.iter().zip(&pages).enumerate() {
            self.write_pages(w, &format!("ram.{i}"), base, size, p, progress)?;
        }
        Ok(())
    }

    /// The check value of every RAM page now.
    pub fn page_sums(&self) -> SentPages {
        SentPages {
            sums: ram::ranges(&self.mem)
                .iter()
                .map(|&(b, s)| ram::page_sums(&self.mem, b, s))
                .collect(),
        }
    }

    /// The pages written since the last call, by range: what the engine
    /// logged, and (with `sent`, the machine paused) every page whose
    /// contents differ from what was sent.
    pub fn dirty_pages(&self, sent: Option<&SentPages>) -> Vec<Vec<u64>> {
        let ranges = ram::ranges(&self.mem);
        let mut out: Vec<Vec<u64>> = vec![Vec::new(); ranges.len()];
        for gpa in self.map.take_dirty_ram() {
            if let Some(i) = ranges.iter().position(|&(b, s)| gpa >= b && gpa < b + s) {
                out[i].push((gpa - ranges[i].0) / ram::PAGE as u64);
            }
        }
        if let Some(sent) = sent {
            let now = self.page_sums();
            for (i, (old, new)) in sent.sums.iter().zip(&now.sums).enumerate() {
                out[i].extend(
                    old.iter()
                        .zip(new)
                        .enumerate()
                        .filter(|(_, (a, b))| a != b)
                        .map(|(p, _)| p as u64),
                );
            }
        }
        for v in &mut out {
            v.sort_unstable();
            v.dedup();
        }
        out
    }

    /// Pages `pages` (by range) as `ramdelta.N` sections; `sent` learns
    /// their new check values.
    pub fn write_delta<W: Write>(
        &self,
        w: &mut StreamWriter<W>,
        pages: &[Vec<u64>],
        progress: &dyn Progress,
        sent: Option<&mut SentPages>,
    ) -> Result<(), SnapshotError> {
        let ranges = ram::ranges(&self.mem);
        // A range with no dirty page sends no section.
        progress.add_total(
            pages
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| ram::payload_len(p))
                .sum(),
        );
        if let Some(sent) = sent {
            for (i, p) in pages.iter().enumerate() {
                let (base, _) = ranges[i];
                for &page in p {
                    if let Some(slot) = sent.sums.get_mut(i).and_then(|s| s.get_mut(page as usize))
                    {
                        *slot = ram::page_sum(&self.mem, base, page);
                    }
                }
            }
        }
        for (i, (&(base, size), p)) in ranges.iter().zip(pages).enumerate() {
            if !p.is_empty() {
                self.write_pages(w, &format!("ramdelta.{i}"), base, size, p, progress)?;
            }
        }
        Ok(())
    }

    fn write_pages<W: Write>(
        &self,
        w: &mut StreamWriter<W>,
        name: &str,
        base: u64,
        size: u64,
        pages: &[u64],
        progress: &dyn Progress,
    ) -> Result<(), SnapshotError> {
        let mem = &self.mem;
        w.section_parts(name, RAM_VERSION, ram::payload_len(pages), |sink| {
            // Report progress (and honour a cancel) as pages go.
            let mut counted = |b: &[u8]| {
                if progress.cancelled() {
                    return Err(std::io::Error::other("migration cancelled"));
                }
                progress.add(b.len() as u64);
                sink(b)
            };
            ram::write_pages(mem, base, size, pages, &mut counted)
        })
        .map_err(SnapshotError::Io)
    }

    /// The paused machine's run status, engine states and devices.
    pub fn write_state<W: Write>(
        &self,
        w: &mut StreamWriter<W>,
        vcpus: &[Vec<u8>],
        saved: SavedRun,
        progress: &dyn Progress,
    ) -> Result<(), SnapshotError> {
        let io = SnapshotError::Io;
        let vm_state = self
            .vm
            .save_state()
            .map_err(|e| SnapshotError::Engine(format!("saving the VM's state: {e}")))?;
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
        progress.add_total(
            devices.iter().map(|d| d.2.len() as u64).sum::<u64>()
                + vcpus.iter().map(|v| v.len() as u64).sum::<u64>()
                + vm_state.len() as u64,
        );
        w.section("machine", MACHINE_VERSION, &[u8::from(saved.running)])
            .map_err(io)?;
        w.section("vm", ENGINE_VERSION, &vm_state).map_err(io)?;
        progress.add(vm_state.len() as u64);
        for (i, v) in vcpus.iter().enumerate() {
            w.section(&format!("vcpu.{i}"), ENGINE_VERSION, v)
                .map_err(io)?;
            progress.add(v.len() as u64);
        }
        for (name, version, data) in &devices {
            w.section(name, *version, data).map_err(io)?;
            progress.add(data.len() as u64);
        }
        Ok(())
    }

    /// Have the engine log RAM writes (live migration) or stop.
    pub fn log_ram_writes(&self, on: bool) -> Result<(), SnapshotError> {
        self.map
            .log_ram_writes(on)
            .map_err(|e| SnapshotError::Engine(format!("dirty-page logging: {e}")))
    }

    /// Let go of (`false`) or take back (`true`) what another process
    /// needs to run this machine's devices: the disk images' locks, handed
    /// to a migration's destination on the same host. Taking them back is
    /// all or nothing.
    pub fn set_images_active(&self, active: bool) -> Result<(), SnapshotError> {
        let devices: Vec<_> = self
            .devices
            .entries
            .iter()
            .map(|(name, dev)| (name.trim_start_matches("dev.").to_string(), &**dev))
            .collect();
        kite_devices::state::set_images_active_all(&devices, active).map_err(SnapshotError::Images)
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
        let nranges = ram::ranges(&self.mem).len();
        let is_delta = |n: &str| {
            n.strip_prefix("ramdelta.")
                .and_then(|i| i.parse::<usize>().ok())
                .is_some_and(|i| i < nranges)
        };
        for s in &image.sections {
            if !is_delta(s.name) && !want.iter().any(|w| w == s.name) {
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
        // Live migration: later copies of pages, in stream order.
        let mut deltas = Vec::new();
        for s in image.sections.iter().filter(|s| is_delta(s.name)) {
            if s.version != RAM_VERSION {
                return Err(SnapshotError::Corrupt(format!(
                    "RAM section version {}",
                    s.version
                )));
            }
            let d = RamPages::parse(s.data, &ranges).map_err(SnapshotError::Corrupt)?;
            let want = ranges
                .iter()
                .position(|&r| r == (d.base, d.size))
                .map(|i| format!("ramdelta.{i}"));
            if want.as_deref() != Some(s.name) {
                return Err(SnapshotError::Corrupt(format!(
                    "{} holds another range",
                    s.name
                )));
            }
            deltas.push(d);
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
        for d in &deltas {
            d.apply_delta(&self.mem).map_err(SnapshotError::Apply)?;
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
