//! One IDE channel (primary or secondary): two device slots sharing the
//! command block (8 ports) and control block (device control / alternate
//! status), device selection, software reset, the PIO data phases (DRQ
//! blocks in and out of a bounded buffer), the interrupt line (held while
//! an interrupt is pending and nIEN is clear; a Status read clears it) and
//! the channel's bus-master registers.
//!
//! What commands mean is in `ata` and `atapi`; DMA transfers in
//! `bus_master`. The channel must not know the PCI function around it.

use std::sync::{Arc, Mutex};

use vm_memory::GuestMemoryMmap;

use super::atapi::AtapiData;
use super::bus_master::BusMaster;
use super::drive::*;
use crate::bus::{lock, IrqLine, PioDevice};

/// Device control register bits.
const CTL_NIEN: u8 = 0x02;
const CTL_SRST: u8 = 0x04;
const CTL_HOB: u8 = 0x80;

/// Which way a PIO phase moves data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Device to host (the host reads the data register).
    In,
    /// Host to device.
    Out,
}

/// What happens when the host has moved a whole DRQ block.
pub enum Next {
    /// The command is over.
    Done,
    /// READ SECTORS/MULTIPLE: load the next block.
    AtaRead { lba: u64, left: u64, per_block: u64 },
    /// WRITE SECTORS/MULTIPLE: the block in the buffer goes to `lba`;
    /// `left` sectors (this block included) remain.
    AtaWrite { lba: u64, left: u64, per_block: u64 },
    /// The 12-byte ATAPI command packet.
    Packet,
    /// More ATAPI reply data.
    Atapi(AtapiData),
}

/// A PIO data phase.
pub struct Pio {
    pub dir: Dir,
    pub buf: Vec<u8>,
    pub pos: usize,
    pub next: Next,
}

/// A DMA command waiting for the bus master to run.
pub enum DmaOp {
    AtaRead { lba: u64, sectors: u64 },
    AtaWrite { lba: u64, sectors: u64 },
    Atapi(AtapiData),
}

impl DmaOp {
    /// Whether the transfer writes guest memory.
    pub fn to_memory(&self) -> bool {
        !matches!(self, DmaOp::AtaWrite { .. })
    }
}

/// One channel.
pub struct IdeChannel {
    pub(super) drives: [Option<Drive>; 2],
    /// The selected device (device register bit 4).
    pub(super) selected: usize,
    ctrl: u8,
    irq: Arc<dyn IrqLine>,
    irq_pending: bool,
    irq_level: bool,
    /// The PIIX decode-enable bit for this channel (IDETIM bit 15).
    pub(super) decode: bool,
    pub(super) pio: Option<Pio>,
    pub(super) dma: Option<DmaOp>,
    pub(super) bm: BusMaster,
    pub(super) mem: Arc<GuestMemoryMmap>,
    /// Rate limit for guest-error log lines.
    warnings: u32,
}

/// At most this many guest-error lines per channel.
const MAX_WARNINGS: u32 = 20;

impl IdeChannel {
    pub fn new(
        drives: [Option<Drive>; 2],
        irq: Arc<dyn IrqLine>,
        mem: Arc<GuestMemoryMmap>,
    ) -> IdeChannel {
        let mut bm = BusMaster::default();
        bm.set_capable(drives[0].is_some(), drives[1].is_some());
        IdeChannel {
            drives,
            selected: 0,
            ctrl: 0,
            irq,
            irq_pending: false,
            irq_level: false,
            decode: true,
            pio: None,
            dma: None,
            bm,
            mem,
            warnings: 0,
        }
    }

    /// Log a guest mistake (rate-limited).
    pub(super) fn warn(&mut self, what: std::fmt::Arguments) {
        if self.warnings < MAX_WARNINGS {
            self.warnings += 1;
            log::warn!("ide: {what}");
        }
    }

    fn any_drive(&self) -> bool {
        self.drives.iter().any(Option::is_some)
    }

    /// The selected drive, if present.
    pub(super) fn cur(&mut self) -> Option<&mut Drive> {
        self.drives[self.selected].as_mut()
    }

    /// (device control, interrupt pending), for a snapshot.
    pub(super) fn irq_state(&self) -> (u8, bool) {
        (self.ctrl, self.irq_pending)
    }

    /// Restore `irq_state` and drive the line to match.
    pub(super) fn set_irq_state(&mut self, ctrl: u8, pending: bool) {
        self.ctrl = ctrl;
        self.irq_pending = pending;
        self.update_irq();
    }

    /// Drive the line from the pending flag and nIEN.
    fn update_irq(&mut self) {
        let level = self.irq_pending && self.ctrl & CTL_NIEN == 0;
        if level != self.irq_level {
            self.irq_level = level;
            self.irq.set_level(level);
        }
    }

    /// The device asks for an interrupt (a DRQ block ready, or a command done).
    pub(super) fn raise_irq(&mut self) {
        self.irq_pending = true;
        self.bm.set_irq();
        self.update_irq();
    }

    fn clear_irq(&mut self) {
        self.irq_pending = false;
        self.update_irq();
    }

    /// Whether an interrupt is pending (for tests and the bus master).
    pub fn irq_pending(&self) -> bool {
        self.irq_pending
    }

    /// Start a PIO phase for the selected drive: DRQ set, status ready.
    pub(super) fn start_pio(&mut self, dir: Dir, buf: Vec<u8>, next: Next, irq: bool) {
        if let Some(d) = self.cur() {
            d.regs.status = ST_DRDY | ST_DSC | ST_DRQ;
            d.regs.error = 0;
        }
        self.pio = Some(Pio {
            dir,
            buf,
            pos: 0,
            next,
        });
        if irq {
            self.raise_irq();
        }
    }

    /// End the selected drive's command well, with an interrupt.
    pub(super) fn complete(&mut self) {
        self.pio = None;
        if let Some(d) = self.cur() {
            d.ok();
        }
        self.raise_irq();
    }

    /// End the selected drive's command with `error`, with an interrupt.
    pub(super) fn abort(&mut self, error: u8) {
        self.pio = None;
        self.dma = None;
        if let Some(d) = self.cur() {
            d.fail(error);
        }
        self.raise_irq();
    }

    /// SRST or a power-on: both devices reset, device 0 selected.
    fn soft_reset(&mut self) {
        self.pio = None;
        self.dma = None;
        self.bm.stop();
        for d in self.drives.iter_mut().flatten() {
            d.reset();
            d.regs.device = 0;
        }
        self.selected = 0;
        self.clear_irq();
    }

    /// A write to command-block register `reg` (1-7).
    fn write_reg(&mut self, reg: u16, v: u8) {
        if reg == 7 {
            self.command(v);
            return;
        }
        // Writes reach both devices, as on the cable.
        for d in self.drives.iter_mut().flatten() {
            let r = &mut d.regs;
            match reg {
                1 => {
                    r.hob_feature = r.feature;
                    r.feature = v;
                }
                2 => {
                    r.hob_count = r.count;
                    r.count = v;
                }
                3 => {
                    r.hob_lba_low = r.lba_low;
                    r.lba_low = v;
                }
                4 => {
                    r.hob_lba_mid = r.lba_mid;
                    r.lba_mid = v;
                }
                5 => {
                    r.hob_lba_high = r.lba_high;
                    r.lba_high = v;
                }
                6 => r.device = v | 0xa0,
                _ => {}
            }
        }
        if reg == 6 {
            self.selected = usize::from(v & 0x10 != 0);
        }
    }

    /// A read of command-block register `reg` (1-7).
    fn read_reg(&mut self, reg: u16) -> u8 {
        if !self.any_drive() {
            return 0;
        }
        let hob = self.ctrl & CTL_HOB != 0;
        let present = self.drives[self.selected].is_some();
        let other = self.drives[1 - self.selected].as_ref().map(|d| d.regs);
        let Some(r) = self.drives[self.selected]
            .as_ref()
            .map(|d| d.regs)
            .or(other)
        else {
            return 0;
        };
        match reg {
            1 => {
                if hob {
                    r.hob_feature
                } else if present {
                    r.error
                } else {
                    0
                }
            }
            2 => pick(hob, r.count, r.hob_count),
            3 => pick(hob, r.lba_low, r.hob_lba_low),
            4 => pick(hob, r.lba_mid, r.hob_lba_mid),
            5 => pick(hob, r.lba_high, r.hob_lba_high),
            6 => r.device,
            7 => {
                self.clear_irq();
                self.status()
            }
            _ => 0xff,
        }
    }

    /// The selected device's status (device 0 answers 0 for an absent device 1).
    fn status(&self) -> u8 {
        match &self.drives[self.selected] {
            Some(d) => d.regs.status,
            None => 0,
        }
    }

    /// A write to the device control register.
    fn write_control(&mut self, v: u8) {
        let was_reset = self.ctrl & CTL_SRST != 0;
        self.ctrl = v;
        if v & CTL_SRST != 0 {
            if !was_reset {
                self.soft_reset();
            }
            for d in self.drives.iter_mut().flatten() {
                d.regs.status = ST_BSY;
            }
        } else if was_reset {
            // Leaving reset: the devices finish their diagnostics at once.
            for d in self.drives.iter_mut().flatten() {
                d.reset();
            }
        }
        self.update_irq();
    }

    /// A command written to the selected device.
    fn command(&mut self, cmd: u8) {
        let Some(d) = self.drives[self.selected].as_ref() else {
            return; // commands to an absent device 1 are not answered
        };
        if self.ctrl & CTL_SRST != 0 {
            return;
        }
        let busy = d.regs.status & ST_BSY != 0;
        let kind = d.kind;
        // DEVICE RESET is the one command a busy ATAPI device takes.
        if busy && !(cmd == 0x08 && kind == DriveKind::Cdrom) {
            self.warn(format_args!(
                "command {cmd:#04x} written while busy, ignored"
            ));
            return;
        }
        // A new command ends whatever phase was under way.
        self.pio = None;
        self.dma = None;
        self.clear_irq();
        match kind {
            DriveKind::Disk => self.ata_command(cmd),
            DriveKind::Cdrom => self.atapi_command(cmd),
        }
    }

    /// Data register read: the next bytes of a device-to-host phase.
    fn read_data(&mut self, data: &mut [u8]) {
        let Some(p) = self.pio.as_mut().filter(|p| p.dir == Dir::In) else {
            data.fill(0xff);
            return;
        };
        let n = data.len().min(p.buf.len() - p.pos);
        data[..n].copy_from_slice(&p.buf[p.pos..p.pos + n]);
        data[n..].fill(0xff);
        p.pos += n;
        if p.pos >= p.buf.len() {
            self.block_done();
        }
    }

    /// Data register write: the next bytes of a host-to-device phase.
    fn write_data(&mut self, data: &[u8]) {
        let Some(p) = self.pio.as_mut().filter(|p| p.dir == Dir::Out) else {
            return;
        };
        let n = data.len().min(p.buf.len() - p.pos);
        p.buf[p.pos..p.pos + n].copy_from_slice(&data[..n]);
        p.pos += n;
        if p.pos >= p.buf.len() {
            self.block_done();
        }
    }

    /// The host moved a whole DRQ block: go on with the command.
    fn block_done(&mut self) {
        let Some(p) = self.pio.take() else { return };
        match p.next {
            Next::Done => {
                // The last block of a data-in command: no interrupt.
                if let Some(d) = self.cur() {
                    d.ok();
                }
            }
            Next::AtaRead {
                lba,
                left,
                per_block,
            } => self.ata_read_block(lba, left, per_block),
            Next::AtaWrite {
                lba,
                left,
                per_block,
            } => self.ata_write_block(&p.buf, lba, left, per_block),
            Next::Packet => self.atapi_packet(&p.buf),
            Next::Atapi(data) => self.atapi_send(data),
        }
    }

    /// Drive bits 5/6 of the bus-master status say which devices can DMA.
    pub fn bus_master_read(&mut self, offset: u64) -> u8 {
        self.bm.read(offset)
    }

    /// A bus-master register write; starting the engine may run a
    /// pending DMA command.
    pub fn bus_master_write(&mut self, offset: u64, v: u8) {
        if self.bm.write(offset, v) {
            self.run_dma();
        }
    }

    /// A read at `offset` of the command block (port base + 0..8).
    pub fn read_command_block(&mut self, offset: u16, data: &mut [u8]) {
        if !self.decode {
            data.fill(0xff);
            return;
        }
        if offset == 0 {
            self.read_data(data);
            return;
        }
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.read_reg(offset + i as u16);
        }
    }

    /// A write at `offset` of the command block.
    pub fn write_command_block(&mut self, offset: u16, data: &[u8]) {
        if !self.decode {
            return;
        }
        if offset == 0 {
            self.write_data(data);
            return;
        }
        for (i, &b) in data.iter().enumerate() {
            self.write_reg(offset + i as u16, b);
        }
    }

    /// A read of the control block: alternate status (no interrupt change).
    pub fn read_control_block(&mut self, data: &mut [u8]) {
        let v = if !self.decode {
            0xff
        } else if self.any_drive() {
            self.status()
        } else {
            0
        };
        data.fill(v);
    }

    /// A write of the control block: device control.
    pub fn write_control_block(&mut self, data: &[u8]) {
        if self.decode {
            if let Some(&v) = data.first() {
                self.write_control(v);
            }
        }
    }

    /// Put a disc in (or take it out of) the CD-ROM in slot `slot`.
    pub fn change_medium(&mut self, slot: usize, image: Option<crate::storage::DiskImage>) -> bool {
        match self.drives.get_mut(slot).and_then(Option::as_mut) {
            Some(d) if d.kind == DriveKind::Cdrom => {
                d.change_medium(image);
                true
            }
            _ => false,
        }
    }
}

fn pick(hob: bool, low: u8, high: u8) -> u8 {
    if hob {
        high
    } else {
        low
    }
}

/// Which block of a channel's ports a bus range is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortBlock {
    /// 8 ports: data, error/feature, count, LBA, device, status/command.
    Command,
    /// 1 port: alternate status / device control.
    Control,
}

/// A channel's legacy ports on the port bus.
pub struct ChannelPorts {
    pub channel: Arc<Mutex<IdeChannel>>,
    pub block: PortBlock,
}

impl PioDevice for ChannelPorts {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let mut c = lock(&self.channel);
        match self.block {
            PortBlock::Command => c.read_command_block(offset, data),
            PortBlock::Control => c.read_control_block(data),
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        let mut c = lock(&self.channel);
        match self.block {
            PortBlock::Command => c.write_command_block(offset, data),
            PortBlock::Control => c.write_control_block(data),
        }
    }
}
