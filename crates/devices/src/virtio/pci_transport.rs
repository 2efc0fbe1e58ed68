//! The virtio 1.2 PCI transport ("modern" only): vendor 0x1af4, device id
//! 0x1040 + type, and one 32-bit memory BAR holding the common, ISR, device
//! and notify configuration structures (found through vendor capabilities)
//! plus the MSI-X table and PBA. Without MSI-X the device raises its INTx
//! line (level) until the driver reads the ISR.
//!
//! Queue notifications are handled synchronously on the vCPU thread that
//! writes the notify register.

use std::sync::Arc;

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK,
    VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::{VirtioDevice, VirtioError, VIRTIO_F_VERSION_1};
use crate::bus::{IrqLine, MmioDevice, MsiSender};
use crate::pci::config_space::{Bar, BarKind, ConfigSpace, ConfigSpaceError, COMMAND_MEMORY_SPACE};
use crate::pci::PciDevice;
use crate::state::{Snapshot, StateError, StateReader, StateWriter};

pub const VIRTIO_PCI_VENDOR: u16 = 0x1af4;
pub const VIRTIO_PCI_DEVICE_BASE: u16 = 0x1040;

/// BAR 0's layout.
pub const BAR_SIZE: u64 = 0x8000;
const COMMON_OFFSET: u64 = 0x0000;
const COMMON_LEN: u64 = 0x38;
const ISR_OFFSET: u64 = 0x1000;
const DEVICE_CFG_OFFSET: u64 = 0x2000;
const DEVICE_CFG_LEN: u64 = 0x1000;
const NOTIFY_OFFSET: u64 = 0x3000;
const NOTIFY_MULTIPLIER: u32 = 4;
const MSIX_TABLE_OFFSET: u64 = 0x4000;
const MSIX_PBA_OFFSET: u64 = 0x6000;

/// Virtio PCI capability types.
const CAP_COMMON: u8 = 1;
const CAP_NOTIFY: u8 = 2;
const CAP_ISR: u8 = 3;
const CAP_DEVICE: u8 = 4;
/// The configuration-space window into the BARs (virtio_pci_cfg_cap).
const CAP_PCI_CFG: u8 = 5;
const PCI_CAP_VENDOR: u8 = 0x09;
const PCI_CAP_MSIX: u8 = 0x11;

const NO_VECTOR: u16 = 0xffff;
const MSIX_ENABLE: u16 = 1 << 15;
const MSIX_FUNCTION_MASK: u16 = 1 << 14;
/// PCI command register: INTx disable.
const COMMAND_INTX_DISABLE: u16 = 1 << 10;

const ISR_QUEUE: u8 = 1;
const ISR_CONFIG: u8 = 2;

#[derive(Clone, Copy, Default)]
struct MsixEntry {
    address: u64,
    data: u32,
    masked: bool,
}

/// Where the device's interrupts go.
pub struct Interrupts {
    pub intx: Arc<dyn IrqLine>,
    pub msi: Arc<dyn MsiSender>,
}

/// A virtio device on the PCI transport; implements both `PciDevice` (its
/// configuration space) and `MmioDevice` (BAR 0, wherever the guest maps it).
pub struct VirtioPciDevice {
    config: ConfigSpace,
    msix_cap: usize,
    /// Offset of the VIRTIO_PCI_CAP_PCI_CFG capability.
    pci_cfg_cap: usize,
    device: Box<dyn VirtioDevice>,
    mem: Arc<GuestMemoryMmap>,
    irq: Interrupts,

    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    config_generation: u8,
    config_vector: u16,
    queue_select: u16,
    queues: Vec<Queue>,
    queue_vectors: Vec<u16>,
    isr: u8,
    msix: Vec<MsixEntry>,
    pending: Vec<bool>,
    /// A malformed chain was reported; stay quiet until reset.
    broken: bool,
}

fn cap_body(cfg_type: u8, offset: u64, len: u64, extra: &[u8]) -> Vec<u8> {
    let cap_len = 16 + extra.len() as u8;
    let mut b = vec![cap_len, cfg_type, 0, 0, 0, 0];
    b.extend_from_slice(&(offset as u32).to_le_bytes());
    b.extend_from_slice(&(len as u32).to_le_bytes());
    b.extend_from_slice(extra);
    b
}

impl VirtioPciDevice {
    /// Wrap `device`; BAR 0 is at `bar_address` (aligned to `BAR_SIZE`), the
    /// INTx pin is INTA# reported as `irq_line`.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: Arc<GuestMemoryMmap>,
        irq: Interrupts,
        bar_address: u64,
        irq_line: u8,
    ) -> Result<VirtioPciDevice, ConfigSpaceError> {
        let type_ = device.device_type();
        // Class: mass storage for block, network for net, "other" otherwise.
        let class = match type_ {
            1 => 0x02_0000,
            2 => 0x01_8000,
            _ => 0xff_0000,
        };
        let mut config =
            ConfigSpace::new(VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE_BASE + type_, class, 1);
        config.set_subsystem(VIRTIO_PCI_VENDOR, 0x40);
        config.set_interrupt(1, irq_line);
        config.add_bar(
            0,
            Bar {
                kind: BarKind::Memory32 {
                    prefetchable: false,
                },
                size: BAR_SIZE,
            },
            bar_address,
        )?;
        let queue_max = device.queue_max_sizes().to_vec();
        let vectors = queue_max.len() + 1;
        let mut msix_body = Vec::new();
        msix_body.extend_from_slice(&((vectors - 1) as u16).to_le_bytes());
        msix_body.extend_from_slice(&(MSIX_TABLE_OFFSET as u32).to_le_bytes());
        msix_body.extend_from_slice(&(MSIX_PBA_OFFSET as u32).to_le_bytes());
        let msix_cap =
            config.add_capability(PCI_CAP_MSIX, &msix_body, &[0, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0])?;
        config.add_capability(
            PCI_CAP_VENDOR,
            &cap_body(CAP_COMMON, COMMON_OFFSET, COMMON_LEN, &[]),
            &[],
        )?;
        config.add_capability(
            PCI_CAP_VENDOR,
            &cap_body(
                CAP_NOTIFY,
                NOTIFY_OFFSET,
                u64::from(NOTIFY_MULTIPLIER) * queue_max.len() as u64,
                &NOTIFY_MULTIPLIER.to_le_bytes(),
            ),
            &[],
        )?;
        config.add_capability(PCI_CAP_VENDOR, &cap_body(CAP_ISR, ISR_OFFSET, 1, &[]), &[])?;
        config.add_capability(
            PCI_CAP_VENDOR,
            &cap_body(CAP_DEVICE, DEVICE_CFG_OFFSET, DEVICE_CFG_LEN, &[]),
            &[],
        )?;
        // bar, offset, length and the 4-byte data window are the driver's.
        let mut cfg_mask = vec![0u8; 18];
        cfg_mask[2] = 0xff;
        cfg_mask[6..18].fill(0xff);
        let pci_cfg_cap = config.add_capability(
            PCI_CAP_VENDOR,
            &cap_body(CAP_PCI_CFG, 0, 0, &[0; 4]),
            &cfg_mask,
        )?;
        let mut queues = Vec::new();
        for &max in &queue_max {
            // virtio-queue refuses sizes that are zero, too big or not a power of two.
            queues.push(Queue::new(max).map_err(|_| ConfigSpaceError::BadBarSize {
                size: u64::from(max),
                min: 1,
            })?);
        }
        Ok(VirtioPciDevice {
            config,
            msix_cap,
            pci_cfg_cap,
            device,
            mem,
            irq,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            config_generation: 0,
            config_vector: NO_VECTOR,
            queue_select: 0,
            queue_vectors: vec![NO_VECTOR; queues.len()],
            queues,
            isr: 0,
            msix: vec![
                MsixEntry {
                    masked: true,
                    ..MsixEntry::default()
                };
                vectors
            ],
            pending: vec![false; vectors],
            broken: false,
        })
    }

    fn device_features(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1
    }

    fn msix_control(&self) -> u16 {
        let b = self.config.bytes();
        u16::from_le_bytes([b[self.msix_cap + 2], b[self.msix_cap + 3]])
    }

    fn msix_enabled(&self) -> bool {
        self.msix_control() & MSIX_ENABLE != 0
    }

    /// Raise an interrupt: through MSI-X vector `vector` when MSI-X is on,
    /// else INTx with `isr_bit` in the ISR.
    fn interrupt(&mut self, vector: u16, isr_bit: u8) {
        if self.msix_enabled() {
            let v = usize::from(vector);
            if v >= self.msix.len() {
                return; // NO_VECTOR or out of range: the driver wants none.
            }
            let e = self.msix[v];
            if e.masked || self.msix_control() & MSIX_FUNCTION_MASK != 0 {
                self.pending[v] = true;
            } else {
                self.irq.msi.send_msi(e.address, e.data);
            }
        } else {
            self.isr |= isr_bit;
            if self.config.command() & COMMAND_INTX_DISABLE == 0 {
                self.irq.intx.set_level(true);
            }
        }
    }

    fn deliver_pending(&mut self) {
        if !self.msix_enabled() || self.msix_control() & MSIX_FUNCTION_MASK != 0 {
            return;
        }
        for v in 0..self.msix.len() {
            if self.pending[v] && !self.msix[v].masked {
                self.pending[v] = false;
                self.irq
                    .msi
                    .send_msi(self.msix[v].address, self.msix[v].data);
            }
        }
    }

    fn reset(&mut self) {
        self.device.reset();
        self.driver_features = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.status = 0;
        self.config_vector = NO_VECTOR;
        self.queue_select = 0;
        for q in &mut self.queues {
            q.reset();
        }
        self.queue_vectors.fill(NO_VECTOR);
        self.isr = 0;
        self.irq.intx.set_level(false);
        self.broken = false;
    }

    /// Mark the device broken and tell the driver (config change interrupt).
    fn needs_reset(&mut self, e: &VirtioError) {
        if !self.broken {
            crate::guest_warn!(
                "virtio {} device: {e}; it needs a reset",
                self.device.device_type()
            );
        }
        self.broken = true;
        self.status |= VIRTIO_CONFIG_S_NEEDS_RESET as u8;
        self.interrupt(self.config_vector, ISR_CONFIG);
    }

    /// Run queue `index` for a backend that has work for it (e.g. frames
    /// received from the host), as a driver notification would.
    pub fn run_queue(&mut self, index: usize) {
        self.notify(index);
    }

    fn notify(&mut self, index: usize) {
        if self.broken || self.status & VIRTIO_CONFIG_S_DRIVER_OK as u8 == 0 {
            return;
        }
        let Some(queue) = self.queues.get_mut(index) else {
            return;
        };
        if !queue.ready() {
            return;
        }
        if !queue.is_valid(&*self.mem) {
            self.needs_reset(&VirtioError::BadRing);
            return;
        }
        let mem = self.mem.clone();
        match self.device.process_queue(index, queue, &mem) {
            Ok(true) => {
                let vector = self.queue_vectors[index];
                self.interrupt(vector, ISR_QUEUE);
            }
            Ok(false) => {}
            Err(e) => self.needs_reset(&e),
        }
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(usize::from(self.queue_select))
    }

    fn common_read(&mut self, offset: u64) -> u64 {
        let q = usize::from(self.queue_select);
        let queue = self.queues.get(q);
        match offset {
            0x00 => u64::from(self.device_feature_select),
            0x04 => match self.device_feature_select {
                0 => self.device_features() & 0xffff_ffff,
                1 => self.device_features() >> 32,
                _ => 0,
            },
            0x08 => u64::from(self.driver_feature_select),
            0x0c => match self.driver_feature_select {
                0 => self.driver_features & 0xffff_ffff,
                1 => self.driver_features >> 32,
                _ => 0,
            },
            0x10 => u64::from(self.config_vector),
            0x12 => self.queues.len() as u64,
            0x14 => u64::from(self.status),
            0x15 => u64::from(self.config_generation),
            0x16 => u64::from(self.queue_select),
            0x18 => queue.map_or(0, |q| u64::from(q.size())),
            0x1a => self
                .queue_vectors
                .get(q)
                .map_or(u64::from(NO_VECTOR), |&v| u64::from(v)),
            0x1c => queue.map_or(0, |q| u64::from(q.ready())),
            0x1e => queue.map_or(0, |_| q as u64),
            0x20 => queue.map_or(0, |q| q.desc_table()),
            0x24 => queue.map_or(0, |q| q.desc_table() >> 32),
            0x28 => queue.map_or(0, |q| q.avail_ring()),
            0x2c => queue.map_or(0, |q| q.avail_ring() >> 32),
            0x30 => queue.map_or(0, |q| q.used_ring()),
            0x34 => queue.map_or(0, |q| q.used_ring() >> 32),
            _ => 0,
        }
    }

    fn set_status(&mut self, v: u8) {
        if v == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        let mut v = v | (old & VIRTIO_CONFIG_S_NEEDS_RESET as u8);
        if v & VIRTIO_CONFIG_S_FEATURES_OK as u8 != 0
            && old & VIRTIO_CONFIG_S_FEATURES_OK as u8 == 0
        {
            // Refuse features we did not offer, and drivers without VERSION_1.
            let ok = self.driver_features & !self.device_features() == 0
                && self.driver_features & VIRTIO_F_VERSION_1 != 0;
            if !ok {
                v &= !(VIRTIO_CONFIG_S_FEATURES_OK as u8);
            }
        }
        if v & VIRTIO_CONFIG_S_DRIVER_OK as u8 != 0 && old & VIRTIO_CONFIG_S_DRIVER_OK as u8 == 0 {
            self.device.activate(self.driver_features);
        }
        if v & VIRTIO_CONFIG_S_FAILED as u8 != 0 {
            log::debug!("virtio driver gave up on the device (status FAILED)");
        }
        self.status = v;
    }

    fn common_write(&mut self, offset: u64, v: u64) {
        let features_locked = self.status & VIRTIO_CONFIG_S_FEATURES_OK as u8 != 0;
        let q = usize::from(self.queue_select);
        let enabled = self.queues.get(q).is_some_and(|q| q.ready());
        match offset {
            0x00 => self.device_feature_select = v as u32,
            0x08 => self.driver_feature_select = v as u32,
            0x0c if !features_locked => match self.driver_feature_select {
                0 => {
                    self.driver_features = (self.driver_features & !0xffff_ffff) | (v & 0xffff_ffff)
                }
                1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (v << 32),
                _ => {}
            },
            0x10 => self.config_vector = v as u16,
            0x14 => self.set_status(v as u8),
            0x16 => self.queue_select = v as u16,
            0x18 if !enabled => {
                if let Some(queue) = self.selected_queue() {
                    // Sizes that are not a power of two up to the maximum are ignored.
                    queue.set_size(v as u16);
                }
            }
            0x1a => {
                if let Some(slot) = self.queue_vectors.get_mut(q) {
                    *slot = v as u16;
                }
            }
            0x1c if v == 1 => {
                if let Some(queue) = self.selected_queue() {
                    queue.set_ready(true);
                }
            }
            0x20 | 0x24 | 0x28 | 0x2c | 0x30 | 0x34 if !enabled => {
                let Some(queue) = self.selected_queue() else {
                    return;
                };
                let (low, high) = if offset.is_multiple_of(8) {
                    (Some(v as u32), None)
                } else {
                    (None, Some(v as u32))
                };
                match offset & !7 {
                    0x20 => queue.set_desc_table_address(low, high),
                    0x28 => queue.set_avail_ring_address(low, high),
                    _ => queue.set_used_ring_address(low, high),
                }
            }
            _ => {}
        }
    }

    fn msix_table_read(&self, offset: u64) -> u32 {
        let Some(e) = self.msix.get((offset / 16) as usize) else {
            return 0;
        };
        match offset % 16 {
            0 => e.address as u32,
            4 => (e.address >> 32) as u32,
            8 => e.data,
            _ => u32::from(e.masked),
        }
    }

    fn msix_table_write(&mut self, offset: u64, v: u32) {
        let Some(e) = self.msix.get_mut((offset / 16) as usize) else {
            return;
        };
        match offset % 16 {
            0 => e.address = (e.address & !0xffff_ffff) | u64::from(v & !3),
            4 => e.address = (e.address & 0xffff_ffff) | (u64::from(v) << 32),
            8 => e.data = v,
            _ => {
                e.masked = v & 1 != 0;
                self.deliver_pending();
            }
        }
    }
}

/// Little-endian value of up to 8 bytes.
fn le(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

fn put_le(v: u64, data: &mut [u8]) {
    let b = v.to_le_bytes();
    let n = data.len().min(8);
    data[..n].copy_from_slice(&b[..n]);
}

impl MmioDevice for VirtioPciDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if self.config.command() & COMMAND_MEMORY_SPACE == 0 {
            data.fill(0xff);
            return;
        }
        let len = data.len() as u64;
        match offset {
            o if o + len <= COMMON_LEN => {
                // Drivers access each register at its own offset with its
                // own width (64-bit addresses as two 32-bit halves).
                put_le(self.common_read(o), data);
            }
            ISR_OFFSET => {
                data[0] = self.isr;
                self.isr = 0;
                self.irq.intx.set_level(false);
            }
            o if (DEVICE_CFG_OFFSET..DEVICE_CFG_OFFSET + DEVICE_CFG_LEN).contains(&o) => {
                let cfg = self.device.config_bytes();
                let start = (o - DEVICE_CFG_OFFSET) as usize;
                for (i, b) in data.iter_mut().enumerate() {
                    *b = cfg.get(start + i).copied().unwrap_or(0);
                }
            }
            o if (MSIX_TABLE_OFFSET..MSIX_PBA_OFFSET).contains(&o) => {
                let v = self.msix_table_read((o - MSIX_TABLE_OFFSET) & !3);
                put_le(u64::from(v) >> ((o & 3) * 8), data);
            }
            o if (MSIX_PBA_OFFSET..MSIX_PBA_OFFSET + 8).contains(&o) => {
                let bits = self
                    .pending
                    .iter()
                    .enumerate()
                    .fold(0u64, |acc, (i, &p)| acc | (u64::from(p) << i));
                put_le(bits >> ((o - MSIX_PBA_OFFSET) * 8), data);
            }
            _ => {}
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if self.config.command() & COMMAND_MEMORY_SPACE == 0 {
            return;
        }
        let v = le(data);
        let len = data.len() as u64;
        match offset {
            o if o + len <= COMMON_LEN => {
                if len == 8 && o % 8 == 0 {
                    self.common_write(o, v & 0xffff_ffff);
                    self.common_write(o + 4, v >> 32);
                } else {
                    self.common_write(o, v);
                }
            }
            o if (DEVICE_CFG_OFFSET..DEVICE_CFG_OFFSET + DEVICE_CFG_LEN).contains(&o) => {
                self.device.write_config(o - DEVICE_CFG_OFFSET, data);
            }
            o if (NOTIFY_OFFSET..NOTIFY_OFFSET + 0x1000).contains(&o) => {
                let index = ((o - NOTIFY_OFFSET) / u64::from(NOTIFY_MULTIPLIER)) as usize;
                self.notify(index);
            }
            o if (MSIX_TABLE_OFFSET..MSIX_PBA_OFFSET).contains(&o) => {
                let rel = o - MSIX_TABLE_OFFSET;
                if len == 8 && rel.is_multiple_of(8) {
                    self.msix_table_write(rel, v as u32);
                    self.msix_table_write(rel + 4, (v >> 32) as u32);
                } else if rel.is_multiple_of(4) {
                    self.msix_table_write(rel, v as u32);
                }
            }
            _ => {}
        }
    }
}

impl VirtioPciDevice {
    /// The PCI_CFG window's BAR access (offset, length) when the driver set
    /// a valid one: BAR 0, 1, 2 or 4 bytes, aligned, inside the BAR.
    fn pci_cfg_access(&self) -> Option<(u64, usize)> {
        let b = self.config.bytes();
        let at = self.pci_cfg_cap;
        let word = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let (bar, off, len) = (b[at + 4], u64::from(word(at + 8)), word(at + 12) as usize);
        (bar == 0
            && matches!(len, 1 | 2 | 4)
            && off % len as u64 == 0
            && off + len as u64 <= BAR_SIZE)
            .then_some((off, len))
    }

    /// Whether a config access at `offset` of `len` bytes is the data window.
    fn is_pci_cfg_data(&self, offset: u16, len: usize) -> bool {
        usize::from(offset) == self.pci_cfg_cap + 16 && len >= 1
    }
}

impl Snapshot for VirtioPciDevice {
    fn save_state(&self, w: &mut StateWriter) {
        self.config.save_state(w);
        w.u32(self.device_feature_select);
        w.u32(self.driver_feature_select);
        w.u64(self.driver_features);
        w.u8(self.status);
        w.u8(self.config_generation);
        w.u16(self.config_vector);
        w.u16(self.queue_select);
        w.u16(self.queues.len() as u16);
        for (q, &vector) in self.queues.iter().zip(&self.queue_vectors) {
            let st = q.state();
            w.u16(st.size);
            w.bool(st.ready);
            w.u64(st.desc_table);
            w.u64(st.avail_ring);
            w.u64(st.used_ring);
            w.u16(st.next_avail);
            w.u16(st.next_used);
            w.bool(st.event_idx_enabled);
            w.u16(vector);
        }
        w.u8(self.isr);
        w.u16(self.msix.len() as u16);
        for (e, &p) in self.msix.iter().zip(&self.pending) {
            w.u64(e.address);
            w.u32(e.data);
            w.bool(e.masked);
            w.bool(p);
        }
        w.bool(self.broken);
        let mut dev = StateWriter::new();
        self.device.save_state(&mut dev);
        w.bytes(&dev.into_bytes());
    }

    fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let mut config = self.config.clone();
        config.restore_state(r)?;
        let device_feature_select = r.u32("virtio feature select")?;
        let driver_feature_select = r.u32("virtio driver feature select")?;
        let driver_features = r.u64("virtio driver features")?;
        if driver_features & !self.device_features() != 0 {
            return Err(StateError::Invalid(format!(
                "virtio: the driver's features {driver_features:#x} include some the device does not offer ({:#x})",
                self.device_features()
            )));
        }
        let status = r.u8("virtio device status")?;
        let config_generation = r.u8("virtio config generation")?;
        let config_vector = r.u16("virtio config vector")?;
        let queue_select = r.u16("virtio queue select")?;
        let n = usize::from(r.u16("virtio queue count")?);
        if n != self.queues.len() {
            return Err(StateError::Invalid(format!(
                "virtio: {n} queues saved, the device has {}",
                self.queues.len()
            )));
        }
        let mut queues = Vec::with_capacity(n);
        let mut vectors = Vec::with_capacity(n);
        for q in &self.queues {
            let st = virtio_queue::QueueState {
                max_size: q.max_size(),
                size: r.u16("virtio queue size")?,
                ready: r.bool("virtio queue ready")?,
                desc_table: r.u64("virtio descriptor table")?,
                avail_ring: r.u64("virtio avail ring")?,
                used_ring: r.u64("virtio used ring")?,
                next_avail: r.u16("virtio next avail")?,
                next_used: r.u16("virtio next used")?,
                event_idx_enabled: r.bool("virtio event index")?,
            };
            // Requests are completed synchronously: at most a ring's worth
            // can be taken and not yet used.
            if st.next_avail.wrapping_sub(st.next_used) > st.size {
                return Err(StateError::Invalid(format!(
                    "virtio: queue indices avail {} / used {} are further apart than the ring's {} entries",
                    st.next_avail, st.next_used, st.size
                )));
            }
            let queue = Queue::try_from(st).map_err(|e| {
                StateError::Invalid(format!("virtio: a saved queue is not valid: {e}"))
            })?;
            queues.push(queue);
            vectors.push(r.u16("virtio queue vector")?);
        }
        let isr = r.u8("virtio ISR")?;
        if isr & !(ISR_QUEUE | ISR_CONFIG) != 0 {
            return Err(StateError::invalid(format!("virtio: ISR {isr:#x}")));
        }
        let m = usize::from(r.u16("MSI-X vector count")?);
        if m != self.msix.len() {
            return Err(StateError::Invalid(format!(
                "virtio: {m} MSI-X vectors saved, the device has {}",
                self.msix.len()
            )));
        }
        let mut msix = Vec::with_capacity(m);
        let mut pending = Vec::with_capacity(m);
        for _ in 0..m {
            msix.push(MsixEntry {
                address: r.u64("MSI-X address")? & !3,
                data: r.u32("MSI-X data")?,
                masked: r.bool("MSI-X mask")?,
            });
            pending.push(r.bool("MSI-X pending")?);
        }
        let broken = r.bool("virtio broken")?;
        let device_state = r.bytes(usize::MAX, "virtio device state")?;

        self.config = config;
        self.device_feature_select = device_feature_select;
        self.driver_feature_select = driver_feature_select;
        self.driver_features = driver_features;
        self.status = status;
        self.config_generation = config_generation;
        self.config_vector = config_vector;
        self.queue_select = queue_select;
        self.queues = queues;
        self.queue_vectors = vectors;
        self.isr = isr;
        self.msix = msix;
        self.pending = pending;
        self.broken = broken;
        if status & VIRTIO_CONFIG_S_DRIVER_OK as u8 != 0 {
            self.device.activate(driver_features);
        }
        crate::state::restore_from_reader(&mut *self.device, device_state)?;
        let intx = !self.msix_enabled()
            && self.isr != 0
            && self.config.command() & COMMAND_INTX_DISABLE == 0;
        self.irq.intx.set_level(intx);
        Ok(())
    }

    fn set_images_active(&mut self, active: bool) -> Result<(), String> {
        self.device.set_images_active(active)
    }
}

impl PciDevice for VirtioPciDevice {
    fn read_config(&mut self, offset: u16, data: &mut [u8]) {
        self.config.read(offset, data);
        if self.is_pci_cfg_data(offset, data.len()) {
            if let Some((off, len)) = self.pci_cfg_access() {
                let n = len.min(data.len());
                MmioDevice::read(self, off, &mut data[..n]);
            }
        }
    }

    fn write_config(&mut self, offset: u16, data: &[u8]) {
        self.config.write(offset, data);
        if self.is_pci_cfg_data(offset, data.len()) {
            if let Some((off, len)) = self.pci_cfg_access() {
                let n = len.min(data.len());
                MmioDevice::write(self, off, &data[..n]);
            }
        }
        if usize::from(offset) <= self.msix_cap + 3
            && usize::from(offset) + data.len() > self.msix_cap
        {
            self.deliver_pending();
        }
    }

    fn bar_regions(&self) -> Vec<crate::pci::BarRegion> {
        self.config.bar_regions()
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        if bar == 0 {
            MmioDevice::read(self, offset, data);
        } else {
            data.fill(0xff);
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        if bar == 0 {
            MmioDevice::write(self, offset, data);
        }
    }
}

#[cfg(test)]
mod tests;
