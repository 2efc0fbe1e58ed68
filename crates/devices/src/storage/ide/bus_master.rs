//! The bus-master IDE function of one channel (8 bytes of BAR4): command
//! (start, direction), status (active, error, interrupt, drive DMA
//! capable) and the physical region descriptor table's address; and the
//! DMA transfer itself: walk the PRD table (every entry checked: inside
//! guest RAM, at most 64 KiB with 0 meaning 64 KiB, a bounded number of
//! entries, end of table), then move the data through vm-memory.
//!
//! Outcomes, as the PIIX documents them: PRDs exactly as long as the
//! transfer: active clear, interrupt set; PRDs longer: active still set,
//! interrupt set; PRDs shorter: active clear, no interrupt, the command
//! dropped; a PRD outside RAM: error and interrupt, the command aborted.
//!
//! It must not know about ports or the command set beyond the DMA ops.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::channel::{DmaOp, IdeChannel};
use super::drive::*;

const CMD_START: u8 = 0x01;
/// Set: the bus master writes memory (a device-to-memory read).
const CMD_WRITE_MEMORY: u8 = 0x08;
const ST_ACTIVE: u8 = 0x01;
const ST_ERROR: u8 = 0x02;
const ST_INTERRUPT: u8 = 0x04;
const ST_CAPABLE: u8 = 0x60;

/// A PRD table lies inside one 64 KiB page: at most this many entries.
const MAX_PRD_ENTRIES: usize = 65536 / 8;
/// The most bytes moved between the image and guest memory at a time.
const CHUNK: usize = 64 * 1024;

/// One channel's registers.
#[derive(Debug, Default, Clone)]
pub struct BusMaster {
    cmd: u8,
    status: u8,
    prd: u32,
}

impl BusMaster {
    /// (command, status, PRD table address), for a snapshot.
    pub fn registers(&self) -> (u8, u8, u32) {
        (self.cmd, self.status, self.prd)
    }

    /// Registers as `registers` returned them (only bits that exist kept).
    pub fn from_registers(cmd: u8, status: u8, prd: u32) -> BusMaster {
        BusMaster {
            cmd: cmd & (CMD_START | CMD_WRITE_MEMORY),
            status: status & (ST_ACTIVE | ST_ERROR | ST_INTERRUPT | ST_CAPABLE),
            prd: prd & !3,
        }
    }

    /// Set the "drive N is DMA capable" bits as firmware would.
    pub fn set_capable(&mut self, d0: bool, d1: bool) {
        self.status = (self.status & !ST_CAPABLE) | (u8::from(d0) << 5) | (u8::from(d1) << 6);
    }

    /// The drive raised its interrupt: latch it here too.
    pub fn set_irq(&mut self) {
        self.status |= ST_INTERRUPT;
    }

    /// Stop the engine (a reset).
    pub fn stop(&mut self) {
        self.cmd &= !CMD_START;
        self.status &= !ST_ACTIVE;
    }

    pub fn active(&self) -> bool {
        self.status & ST_ACTIVE != 0
    }

    /// Register byte at `offset` (0-7).
    pub fn read(&self, offset: u64) -> u8 {
        match offset {
            0 => self.cmd,
            2 => self.status,
            4..=7 => (self.prd >> (8 * (offset - 4))) as u8,
            _ => 0,
        }
    }

    /// Write a register byte; true when this started the engine.
    pub fn write(&mut self, offset: u64, v: u8) -> bool {
        match offset {
            0 => {
                let was = self.cmd & CMD_START != 0;
                let start = v & CMD_START != 0;
                if was && start {
                    // The direction cannot change while running.
                    return false;
                }
                self.cmd = v & (CMD_START | CMD_WRITE_MEMORY);
                if start && !was {
                    self.status |= ST_ACTIVE;
                    return true;
                }
                if !start {
                    self.status &= !ST_ACTIVE;
                }
                false
            }
            2 => {
                self.status = (self.status & !ST_CAPABLE & !(v & (ST_ERROR | ST_INTERRUPT)))
                    | (v & ST_CAPABLE);
                false
            }
            4..=7 => {
                let shift = 8 * (offset - 4);
                let mut p = self.prd & !(0xff << shift);
                p |= u32::from(v) << shift;
                // Dword aligned: bits 1:0 read as zero.
                self.prd = p & !3;
                false
            }
            _ => false,
        }
    }
}

/// What a PRD walk found for a transfer of some length.
struct Segments {
    /// Guest regions covering the transfer (or less, when the table is short).
    list: Vec<(u64, usize)>,
    /// The table covers less than the transfer.
    short: bool,
    /// The table covers more than the transfer.
    long: bool,
}

/// Why a PRD table cannot be used.
enum PrdError {
    /// The table or a region lies outside guest RAM.
    OutsideRam(u64),
    /// No end-of-table flag within the 64 KiB a table may span.
    TooManyEntries,
}

impl IdeChannel {
    /// Walk the PRD table for `len` bytes.
    fn segments(&self, len: u64) -> Result<Segments, PrdError> {
        let mut list = Vec::new();
        let mut covered = 0u64;
        let mut at = u64::from(self.bm.prd);
        for _ in 0..MAX_PRD_ENTRIES {
            let mut e = [0u8; 8];
            self.mem
                .read_slice(&mut e, GuestAddress(at))
                .map_err(|_| PrdError::OutsideRam(at))?;
            let addr = u64::from(u32::from_le_bytes([e[0], e[1], e[2], e[3]]) & !1);
            let count = u16::from_le_bytes([e[4], e[5]]) & !1;
            let bytes = if count == 0 { 65536 } else { u64::from(count) };
            let eot = e[7] & 0x80 != 0;
            if covered < len {
                let n = bytes.min(len - covered);
                if !self.mem.check_range(GuestAddress(addr), n as usize) {
                    return Err(PrdError::OutsideRam(addr));
                }
                list.push((addr, n as usize));
                covered += n;
                if covered == len {
                    return Ok(Segments {
                        list,
                        short: false,
                        long: n < bytes || !eot,
                    });
                }
            }
            if eot {
                return Ok(Segments {
                    list,
                    short: true,
                    long: false,
                });
            }
            at += 8;
        }
        Err(PrdError::TooManyEntries)
    }

    /// Run the pending DMA command if the engine is started.
    pub(super) fn run_dma(&mut self) {
        if !self.bm.active() {
            return;
        }
        let Some(op) = self.dma.take() else { return };
        let atapi = matches!(op, DmaOp::Atapi(_));
        if op.to_memory() != (self.bm.cmd & CMD_WRITE_MEMORY != 0) {
            self.warn(format_args!(
                "bus master direction does not match the DMA command"
            ));
            self.dma_failed(atapi);
            return;
        }
        let len = match &op {
            DmaOp::AtaRead { sectors, .. } | DmaOp::AtaWrite { sectors, .. } => sectors * SECTOR,
            DmaOp::Atapi(d) => d.left(),
        };
        let segs = match self.segments(len) {
            Ok(s) => s,
            Err(e) => {
                let prd = self.bm.prd;
                match e {
                    PrdError::OutsideRam(a) => self.warn(format_args!(
                        "PRD table at {prd:#x} points outside guest RAM ({a:#x})"
                    )),
                    PrdError::TooManyEntries => self.warn(format_args!(
                        "PRD table at {prd:#x} has no end within 64 KiB"
                    )),
                }
                self.dma_failed(atapi);
                return;
            }
        };
        if segs.short {
            // The device still has data; the engine stops without an interrupt.
            let prd = self.bm.prd;
            self.warn(format_args!(
                "PRD table at {prd:#x} is shorter than the {len}-byte transfer"
            ));
            self.bm.status &= !ST_ACTIVE;
            if let Some(d) = self.cur() {
                d.regs.status = ST_DRDY | ST_DSC;
            }
            return;
        }
        let moved = self.move_data(op, &segs.list);
        match moved {
            Ok(()) => {
                if !segs.long {
                    self.bm.status &= !ST_ACTIVE;
                }
                if atapi {
                    self.atapi_done();
                } else {
                    self.complete();
                }
            }
            Err(MoveError::Guest) => self.dma_failed(atapi),
            Err(MoveError::Host(e)) => {
                crate::guest_warn!("ide: DMA from/to the image failed on the host: {e}");
                self.bm.status &= !ST_ACTIVE;
                if atapi {
                    self.atapi_check(SENSE_NOT_READY, 0x3a);
                } else {
                    self.abort(ER_UNC | ER_ABRT);
                }
            }
        }
    }

    /// A guest-side failure (bad table, wrong direction): error, interrupt.
    fn dma_failed(&mut self, atapi: bool) {
        self.bm.status = (self.bm.status & !ST_ACTIVE) | ST_ERROR;
        if atapi {
            self.atapi_check(SENSE_ILLEGAL_REQUEST, 0x24);
        } else {
            self.abort(ER_ABRT);
        }
    }

    /// Move the op's data through `segs`, a chunk at a time.
    fn move_data(&mut self, op: DmaOp, segs: &[(u64, usize)]) -> Result<(), MoveError> {
        let mem = self.mem.clone();
        let Some(d) = self.cur() else {
            return Ok(());
        };
        let write_through = !d.write_cache;
        let image = d.image.as_ref();
        match op {
            DmaOp::AtaRead { lba, .. } | DmaOp::AtaWrite { lba, .. } => {
                let write = matches!(op, DmaOp::AtaWrite { .. });
                let img = image.ok_or(MoveError::Host(std::io::Error::other("no image")))?;
                let mut pos = lba * SECTOR;
                let mut buf = Vec::new();
                for &(addr, len) in segs {
                    let mut done = 0;
                    while done < len {
                        let n = (len - done).min(CHUNK);
                        buf.resize(n, 0);
                        let at = GuestAddress(addr + done as u64);
                        if write {
                            mem.read_slice(&mut buf, at).map_err(|_| MoveError::Guest)?;
                            img.write_at(pos, &buf).map_err(MoveError::Host)?;
                        } else {
                            img.read_at(pos, &mut buf).map_err(MoveError::Host)?;
                            mem.write_slice(&buf, at).map_err(|_| MoveError::Guest)?;
                        }
                        pos += n as u64;
                        done += n;
                    }
                }
                if write && write_through {
                    img.flush().map_err(MoveError::Host)?;
                }
            }
            DmaOp::Atapi(mut data) => {
                for &(addr, len) in segs {
                    let mut done = 0;
                    while done < len {
                        let n = (len - done).min(CHUNK);
                        let chunk = data.take(image, n).map_err(MoveError::Host)?;
                        mem.write_slice(&chunk, GuestAddress(addr + done as u64))
                            .map_err(|_| MoveError::Guest)?;
                        done += n;
                    }
                }
            }
        }
        Ok(())
    }
}

enum MoveError {
    /// Guest memory refused the access.
    Guest,
    /// The image could not be read or written.
    Host(std::io::Error),
}
