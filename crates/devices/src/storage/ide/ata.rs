//! ATA disk commands: IDENTIFY DEVICE, PIO and DMA reads and writes (28-
//! and 48-bit LBA, or CHS for old callers), READ/WRITE MULTIPLE, READ
//! VERIFY, FLUSH CACHE, SET FEATURES, INITIALIZE DEVICE PARAMETERS, power
//! management answers and diagnostics. Every address is checked against
//! the image: an out-of-range sector is IDNF, never a read outside it.
//!
//! It must not know about ports or the PCI function; it drives the
//! channel's PIO phases and queues DMA for the bus master.

use super::channel::{Dir, DmaOp, IdeChannel, Next};
use super::drive::*;
use super::identify::ata_identify;

/// Where a command's sectors start and how many there are.
struct Extent {
    lba: u64,
    sectors: u64,
}

impl IdeChannel {
    /// A command written to an ATA disk (the selected drive).
    pub(super) fn ata_command(&mut self, cmd: u8) {
        match cmd {
            0xec => {
                let id = match self.cur() {
                    Some(d) => ata_identify(d),
                    None => return,
                };
                self.start_pio(Dir::In, id.to_vec(), Next::Done, true);
            }
            // READ SECTORS (with/without retry), READ SECTORS EXT.
            0x20 | 0x21 | 0x24 => self.ata_pio_read(cmd == 0x24, false),
            0xc4 | 0x29 => self.ata_pio_read(cmd == 0x29, true),
            0x30 | 0x31 | 0x34 => self.ata_pio_write(cmd == 0x34, false),
            0xc5 | 0x39 => self.ata_pio_write(cmd == 0x39, true),
            0xc8 | 0xc9 | 0x25 => self.ata_dma(cmd == 0x25, false),
            0xca | 0xcb | 0x35 => self.ata_dma(cmd == 0x35, true),
            // READ VERIFY SECTORS (EXT): check the range, move nothing.
            0x40..=0x42 => {
                if self.extent(cmd == 0x42).is_some() {
                    self.complete();
                }
            }
            0xc6 => self.set_multiple(),
            0xe7 | 0xea => self.flush(),
            0xef => self.ata_set_features(),
            0x91 => self.initialize_device_parameters(),
            // RECALIBRATE, SEEK.
            0x10..=0x1f | 0x70 => self.complete(),
            // STANDBY IMMEDIATE, IDLE IMMEDIATE, STANDBY, IDLE, SLEEP.
            0xe0 | 0x94 | 0xe1 | 0x95 | 0xe2 | 0x96 | 0xe3 | 0x97 | 0xe6 | 0x99 => self.complete(),
            // CHECK POWER MODE: always active.
            0xe5 | 0x98 => {
                if let Some(d) = self.cur() {
                    d.regs.count = 0xff;
                }
                self.complete();
            }
            0x90 => self.execute_diagnostic(),
            _ => {
                self.warn(format_args!(
                    "ATA command {cmd:#04x} not supported, aborted"
                ));
                self.abort(ER_ABRT);
            }
        }
    }

    /// EXECUTE DEVICE DIAGNOSTIC: both devices answer with their signature,
    /// device 0 is selected, one interrupt.
    pub(super) fn execute_diagnostic(&mut self) {
        for d in self.drives.iter_mut().flatten() {
            d.reset();
            d.regs.device = 0xa0;
        }
        self.selected = 0;
        self.pio = None;
        self.dma = None;
        self.raise_irq();
    }

    /// The command's sectors from the task file, checked against the disk;
    /// a bad extent ends the command (IDNF) and gives None.
    fn extent(&mut self, lba48: bool) -> Option<Extent> {
        let d = self.cur()?;
        let r = d.regs;
        let (lba, sectors) = if lba48 {
            let lba = u64::from(r.lba_low)
                | u64::from(r.lba_mid) << 8
                | u64::from(r.lba_high) << 16
                | u64::from(r.hob_lba_low) << 24
                | u64::from(r.hob_lba_mid) << 32
                | u64::from(r.hob_lba_high) << 40;
            let n = u64::from(r.count) | u64::from(r.hob_count) << 8;
            (Some(lba), if n == 0 { 65536 } else { n })
        } else {
            let n = if r.count == 0 {
                256
            } else {
                u64::from(r.count)
            };
            let lba = if r.device & 0x40 != 0 {
                Some(
                    u64::from(r.lba_low)
                        | u64::from(r.lba_mid) << 8
                        | u64::from(r.lba_high) << 16
                        | u64::from(r.device & 0x0f) << 24,
                )
            } else {
                // CHS in the current geometry; sectors count from 1.
                let g = d.current;
                let cyl = u64::from(r.lba_mid) | u64::from(r.lba_high) << 8;
                let head = u64::from(r.device & 0x0f);
                let sect = u64::from(r.lba_low);
                if sect == 0 || sect > u64::from(g.sectors) || head >= u64::from(g.heads) {
                    None
                } else {
                    Some((cyl * u64::from(g.heads) + head) * u64::from(g.sectors) + sect - 1)
                }
            };
            (lba, n)
        };
        let total = d.sectors();
        match lba {
            Some(lba) if lba.checked_add(sectors).is_some_and(|end| end <= total) => {
                Some(Extent { lba, sectors })
            }
            _ => {
                self.warn(format_args!(
                    "sectors {lba:?}+{sectors} outside the {total}-sector disk"
                ));
                self.abort(ER_IDNF | ER_ABRT);
                None
            }
        }
    }

    /// Sectors per DRQ block for a command.
    fn per_block(&mut self, multiple: bool) -> Option<u64> {
        if !multiple {
            return Some(1);
        }
        let m = self.cur().map_or(0, |d| d.multiple);
        if m == 0 {
            // READ/WRITE MULTIPLE before SET MULTIPLE MODE.
            self.abort(ER_ABRT);
            return None;
        }
        Some(u64::from(m))
    }

    fn ata_pio_read(&mut self, lba48: bool, multiple: bool) {
        let Some(per_block) = self.per_block(multiple) else {
            return;
        };
        if let Some(e) = self.extent(lba48) {
            self.ata_read_block(e.lba, e.sectors, per_block);
        }
    }

    /// Load the next DRQ block of a PIO read and hand it to the host.
    pub(super) fn ata_read_block(&mut self, lba: u64, left: u64, per_block: u64) {
        if left == 0 {
            if let Some(d) = self.cur() {
                d.ok();
            }
            return;
        }
        let n = left.min(per_block);
        let mut buf = vec![0u8; (n * SECTOR) as usize];
        let result = match self.cur().and_then(|d| d.image.as_ref()) {
            Some(img) => img.read_at(lba * SECTOR, &mut buf),
            None => return,
        };
        if let Err(e) = result {
            crate::guest_warn!("ide: reading sector {lba} failed on the host: {e}");
            self.abort(ER_UNC);
            return;
        }
        let next = if left > n {
            Next::AtaRead {
                lba: lba + n,
                left: left - n,
                per_block,
            }
        } else {
            Next::Done
        };
        self.start_pio(Dir::In, buf, next, true);
    }

    fn readonly(&mut self) -> bool {
        let ro = self
            .cur()
            .and_then(|d| d.image.as_ref())
            .is_none_or(|i| i.is_readonly());
        if ro {
            self.warn(format_args!("write to a read-only disk refused"));
            self.abort(ER_ABRT);
        }
        ro
    }

    fn ata_pio_write(&mut self, lba48: bool, multiple: bool) {
        if self.readonly() {
            return;
        }
        let Some(per_block) = self.per_block(multiple) else {
            return;
        };
        if let Some(e) = self.extent(lba48) {
            let n = e.sectors.min(per_block);
            let next = Next::AtaWrite {
                lba: e.lba,
                left: e.sectors,
                per_block,
            };
            // The first block is asked for without an interrupt.
            self.start_pio(Dir::Out, vec![0u8; (n * SECTOR) as usize], next, false);
        }
    }

    /// The host filled a DRQ block of a PIO write: store it, ask for more.
    pub(super) fn ata_write_block(&mut self, buf: &[u8], lba: u64, left: u64, per_block: u64) {
        let Some(d) = self.cur() else { return };
        let write_through = !d.write_cache;
        let result = match d.image.as_ref() {
            Some(img) => img.write_at(lba * SECTOR, buf).and_then(|()| {
                if write_through {
                    img.flush()
                } else {
                    Ok(())
                }
            }),
            None => return,
        };
        if let Err(e) = result {
            crate::guest_warn!("ide: writing sector {lba} failed on the host: {e}");
            self.abort(ER_ABRT);
            return;
        }
        let done = buf.len() as u64 / SECTOR;
        let left = left.saturating_sub(done);
        if left == 0 {
            self.complete();
            return;
        }
        let n = left.min(per_block);
        let next = Next::AtaWrite {
            lba: lba + done,
            left,
            per_block,
        };
        self.start_pio(Dir::Out, vec![0u8; (n * SECTOR) as usize], next, true);
    }

    /// READ/WRITE DMA (EXT): check, then wait for the bus master.
    fn ata_dma(&mut self, lba48: bool, write: bool) {
        if write && self.readonly() {
            return;
        }
        let Some(e) = self.extent(lba48) else { return };
        self.dma = Some(if write {
            DmaOp::AtaWrite {
                lba: e.lba,
                sectors: e.sectors,
            }
        } else {
            DmaOp::AtaRead {
                lba: e.lba,
                sectors: e.sectors,
            }
        });
        if let Some(d) = self.cur() {
            d.regs.status = ST_DRDY | ST_DSC | ST_DRQ;
        }
        // The engine may already be running.
        self.run_dma();
    }

    fn set_multiple(&mut self) {
        let Some(d) = self.cur() else { return };
        let n = d.regs.count;
        if n > MAX_MULTIPLE || (n != 0 && !n.is_power_of_two()) {
            self.abort(ER_ABRT);
            return;
        }
        d.multiple = n;
        self.complete();
    }

    fn flush(&mut self) {
        let result = match self.cur().and_then(|d| d.image.as_ref()) {
            Some(img) => img.flush(),
            None => return,
        };
        match result {
            Ok(()) => self.complete(),
            Err(e) => {
                crate::guest_warn!("ide: flushing the disk failed on the host: {e}");
                self.abort(ER_ABRT);
            }
        }
    }

    fn ata_set_features(&mut self) {
        let Some(d) = self.cur() else { return };
        let (feature, count) = (d.regs.feature, d.regs.count);
        let ok = match feature {
            0x02 => {
                d.write_cache = true;
                true
            }
            0x82 => {
                d.write_cache = false;
                true
            }
            0x03 => set_transfer_mode(d, count),
            // Read look-ahead, reverting to defaults, and the like: accepted.
            0x55 | 0xaa | 0x66 | 0xcc => true,
            _ => false,
        };
        if ok {
            self.complete();
        } else {
            self.warn(format_args!(
                "SET FEATURES {feature:#04x}/{count:#04x} refused"
            ));
            self.abort(ER_ABRT);
        }
    }

    fn initialize_device_parameters(&mut self) {
        let Some(d) = self.cur() else { return };
        let sectors = d.regs.count;
        let heads = (d.regs.device & 0x0f) + 1;
        if sectors == 0 {
            self.abort(ER_ABRT);
            return;
        }
        let total = d.sectors().min(16383 * 16 * 63);
        let per_cyl = u64::from(heads) * u64::from(sectors);
        d.current = Chs {
            cylinders: (total / per_cyl).min(65535) as u16,
            heads,
            sectors,
        };
        self.complete();
    }
}

/// SET FEATURES 03h: PIO default/flow control, multiword DMA 0-2, UDMA 0-5.
pub(super) fn set_transfer_mode(d: &mut Drive, count: u8) -> bool {
    match count {
        0x00 | 0x01 | 0x08..=0x0c => true,
        0x20..=0x22 | 0x40..=0x45 => {
            d.dma_mode = count;
            true
        }
        _ => false,
    }
}
