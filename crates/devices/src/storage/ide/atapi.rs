//! The ATAPI CD-ROM: the ATA commands a packet device takes (IDENTIFY
//! PACKET DEVICE, PACKET, DEVICE RESET, ...), the PACKET protocol (command
//! packet phase, data phases limited by the byte count in the cylinder
//! registers, interrupt reason in the sector count; or DMA), and the
//! SCSI/MMC commands SeaBIOS, ISOLINUX and Linux's sr driver use, with
//! sense data after every error. Reads stream from the image a DRQ block
//! at a time: a guest-given length never sizes an allocation.
//!
//! It must not know about ports or the PCI function.

use super::channel::{Dir, DmaOp, IdeChannel, Next};
use super::drive::*;
use super::identify::atapi_identify;
use crate::storage::DiskImage;

/// Interrupt reason (sector count) bits.
const IR_COD: u8 = 0x01;
const IR_IO: u8 = 0x02;

/// Additional sense codes.
const ASC_INVALID_OPCODE: u8 = 0x20;
const ASC_LBA_OUT_OF_RANGE: u8 = 0x21;
const ASC_INVALID_FIELD: u8 = 0x24;
const ASC_MEDIUM_MAY_HAVE_CHANGED: u8 = 0x28;
const ASC_SAVING_NOT_SUPPORTED: u8 = 0x39;
const ASC_MEDIUM_NOT_PRESENT: u8 = 0x3a;
const ASC_REMOVAL_PREVENTED: u8 = 0x53;

/// A disc above this many blocks is a DVD (an 80-minute CD holds 360000).
const CD_MAX_BLOCKS: u64 = 360_000;

/// Data an ATAPI command sends the host: bytes already made (a reply)
/// followed by blocks still on the disc.
pub struct AtapiData {
    pending: Vec<u8>,
    pos: usize,
    lba: u64,
    blocks: u64,
    /// Bytes the host has yet to receive.
    left: u64,
}

impl AtapiData {
    /// Its fields, for a snapshot: (pending, pos, lba, blocks, left).
    pub(super) fn parts(&self) -> (&[u8], usize, u64, u64, u64) {
        (&self.pending, self.pos, self.lba, self.blocks, self.left)
    }

    /// Rebuild from `parts`, refusing positions past the data and disc
    /// ranges no CD has.
    pub(super) fn from_parts(
        pending: Vec<u8>,
        pos: usize,
        lba: u64,
        blocks: u64,
        left: u64,
    ) -> Result<AtapiData, String> {
        if pos > pending.len() {
            return Err("ATAPI position past its data".into());
        }
        match lba.checked_add(blocks) {
            Some(end) if end <= CD_MAX_BLOCKS => {}
            _ => return Err(format!("ATAPI read of {blocks} blocks at {lba}")),
        }
        Ok(AtapiData {
            pending,
            pos,
            lba,
            blocks,
            left,
        })
    }

    /// A reply, cut to the host's allocation length.
    fn reply(mut bytes: Vec<u8>, alloc: usize) -> AtapiData {
        bytes.truncate(alloc);
        let left = bytes.len() as u64;
        AtapiData {
            pending: bytes,
            pos: 0,
            lba: 0,
            blocks: 0,
            left,
        }
    }

    /// `blocks` 2048-byte blocks from `lba` (checked by the caller).
    fn read(lba: u64, blocks: u64) -> AtapiData {
        AtapiData {
            pending: Vec::new(),
            pos: 0,
            lba,
            blocks,
            left: blocks * CD_BLOCK,
        }
    }

    /// Bytes the host has yet to receive.
    pub fn left(&self) -> u64 {
        self.left
    }

    /// The next `n` bytes (at most `left`).
    pub fn take(&mut self, image: Option<&DiskImage>, n: usize) -> std::io::Result<Vec<u8>> {
        let n = n.min(self.left as usize);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if self.pos < self.pending.len() {
                let k = (n - out.len()).min(self.pending.len() - self.pos);
                out.extend_from_slice(&self.pending[self.pos..self.pos + k]);
                self.pos += k;
                continue;
            }
            let img = image.ok_or_else(|| std::io::Error::other("the disc was removed"))?;
            if self.blocks == 0 {
                return Err(std::io::Error::other("no more data"));
            }
            // Whole blocks straight into the output, else one block buffered.
            let whole = (((n - out.len()) as u64) / CD_BLOCK).min(self.blocks);
            if whole > 0 {
                let at = out.len();
                out.resize(at + (whole * CD_BLOCK) as usize, 0);
                img.read_at(self.lba * CD_BLOCK, &mut out[at..])?;
                self.lba += whole;
                self.blocks -= whole;
            } else {
                self.pending.resize(CD_BLOCK as usize, 0);
                img.read_at(self.lba * CD_BLOCK, &mut self.pending)?;
                self.pos = 0;
                self.lba += 1;
                self.blocks -= 1;
            }
        }
        self.left -= n as u64;
        Ok(out)
    }
}

fn be16(b: &[u8]) -> u64 {
    u64::from(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(b: &[u8]) -> u64 {
    u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// An address as MSF (minute, second, frame; 2 seconds of lead-in) or LBA.
fn address(lba: u64, msf: bool) -> [u8; 4] {
    if msf {
        let f = lba + 150;
        [
            0,
            (f / (75 * 60)).min(255) as u8,
            ((f / 75) % 60) as u8,
            (f % 75) as u8,
        ]
    } else {
        (lba as u32).to_be_bytes()
    }
}

/// What a packet command came to.
enum Reply {
    /// Good status, no data.
    Good,
    /// Data for the host.
    Data(AtapiData),
    /// CHECK CONDITION with this sense.
    Check(u8, u8),
}

use Reply::*;

impl IdeChannel {
    /// An ATA command written to the CD-ROM (the selected drive).
    pub(super) fn atapi_command(&mut self, cmd: u8) {
        match cmd {
            0xa1 => {
                let id = match self.cur() {
                    Some(d) => atapi_identify(d),
                    None => return,
                };
                self.start_pio(Dir::In, id.to_vec(), Next::Done, true);
            }
            0xa0 => {
                let Some(d) = self.cur() else { return };
                if d.regs.feature & 0x02 != 0 {
                    // Overlapped commands are not supported.
                    self.abort(ER_ABRT);
                    return;
                }
                d.regs.count = IR_COD;
                self.start_pio(Dir::Out, vec![0u8; 12], Next::Packet, false);
            }
            // DEVICE RESET: the signature, status 0, no interrupt.
            0x08 => {
                if let Some(d) = self.cur() {
                    d.reset();
                }
            }
            0x90 => self.execute_diagnostic(),
            // IDENTIFY DEVICE: abort with the signature so the host knows.
            0xec => {
                self.abort(ER_ABRT);
                if let Some(d) = self.cur() {
                    d.set_signature();
                }
            }
            0xef => {
                let Some(d) = self.cur() else { return };
                let (feature, count) = (d.regs.feature, d.regs.count);
                let ok = match feature {
                    0x03 => super::ata::set_transfer_mode(d, count),
                    0x02 | 0x82 | 0x55 | 0xaa | 0x66 | 0xcc => true,
                    _ => false,
                };
                if ok {
                    self.complete();
                } else {
                    self.abort(ER_ABRT);
                }
            }
            0xe0 | 0xe1 | 0xe6 | 0xe7 | 0xea => self.complete(),
            0xe5 => {
                if let Some(d) = self.cur() {
                    d.regs.count = 0xff;
                }
                self.complete();
            }
            _ => {
                self.warn(format_args!(
                    "ATA command {cmd:#04x} to the CD-ROM not supported, aborted"
                ));
                self.abort(ER_ABRT);
            }
        }
    }

    /// The host wrote the 12-byte packet: run it.
    pub(super) fn atapi_packet(&mut self, cdb: &[u8]) {
        let Some(d) = self.cur() else { return };
        let dma = d.regs.feature & 0x01 != 0;
        let reply = scsi_command(d, cdb);
        match reply {
            Good => self.atapi_done(),
            Check(key, asc) => self.atapi_check(key, asc),
            Data(data) if data.left() == 0 => self.atapi_done(),
            Data(data) if dma => {
                self.dma = Some(DmaOp::Atapi(data));
                if let Some(d) = self.cur() {
                    d.regs.status = ST_DRDY | ST_DSC | ST_DRQ;
                }
                self.run_dma();
            }
            Data(data) => self.atapi_send(data),
        }
    }

    /// Hand the host the next DRQ block of `data` (or end the command).
    pub(super) fn atapi_send(&mut self, mut data: AtapiData) {
        if data.left() == 0 {
            self.atapi_done();
            return;
        }
        let Some(d) = self.cur() else { return };
        let mut limit = be16(&[d.regs.lba_high, d.regs.lba_mid]) as usize;
        if limit == 0 || limit == 0xffff {
            limit = 0xfffe;
        }
        // A block that is not the last must be an even number of bytes.
        let mut n = limit.min(data.left() as usize);
        if (n as u64) < data.left() {
            n &= !1;
            n = n.max(2);
        }
        let chunk = match data.take(d.image.as_ref(), n) {
            Ok(c) => c,
            Err(e) => {
                crate::guest_warn!("ide: reading the CD image failed: {e}");
                self.atapi_check(SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT);
                return;
            }
        };
        d.regs.lba_mid = chunk.len() as u8;
        d.regs.lba_high = (chunk.len() >> 8) as u8;
        d.regs.count = IR_IO;
        self.start_pio(Dir::In, chunk, Next::Atapi(data), true);
    }

    /// Good status: interrupt reason I/O + C/D, with an interrupt.
    pub(super) fn atapi_done(&mut self) {
        self.pio = None;
        if let Some(d) = self.cur() {
            d.ok();
            d.regs.count = IR_IO | IR_COD;
        }
        self.raise_irq();
    }

    /// CHECK CONDITION: sense key in the error register, ERR in status.
    pub(super) fn atapi_check(&mut self, key: u8, asc: u8) {
        self.pio = None;
        self.dma = None;
        if let Some(d) = self.cur() {
            d.sense = Sense { key, asc, ascq: 0 };
            d.regs.status = ST_DRDY | ST_ERR;
            d.regs.error = key << 4;
            d.regs.count = IR_IO | IR_COD;
        }
        self.raise_irq();
    }
}

/// Run one SCSI/MMC command on the drive.
fn scsi_command(d: &mut Drive, cdb: &[u8]) -> Reply {
    let op = cdb[0];
    // A medium change is reported once, to any command but these.
    let informational = matches!(op, 0x03 | 0x12 | 0x46 | 0x4a);
    if d.unit_attention && !informational {
        d.unit_attention = false;
        return Check(SENSE_UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED);
    }
    let needs_medium = matches!(
        op,
        0x00 | 0x25 | 0x28 | 0xa8 | 0x43 | 0x51 | 0x42 | 0xbe | 0x2b
    );
    if needs_medium && d.image.is_none() {
        return Check(SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT);
    }
    let blocks = d.cd_blocks();
    match op {
        0x00 => Good,
        0x03 => {
            let mut s = vec![0u8; 18];
            s[0] = 0x70;
            s[2] = d.sense.key;
            s[7] = 10;
            s[12] = d.sense.asc;
            s[13] = d.sense.ascq;
            d.sense = Sense::default();
            Data(AtapiData::reply(s, cdb[4] as usize))
        }
        0x12 => {
            if cdb[1] & 1 != 0 {
                return Check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
            }
            let mut q = vec![0u8; 36];
            q[0] = 0x05; // CD/DVD device
            q[1] = 0x80; // removable
            q[2] = 0x00;
            q[3] = 0x21; // ATAPI, response data format 1
            q[4] = 31;
            q[8..16].copy_from_slice(b"KITE    ");
            q[16..32].copy_from_slice(b"KITE DVD-ROM    ");
            q[32..36].copy_from_slice(b"1.0 ");
            Data(AtapiData::reply(q, be16(&cdb[3..5]) as usize))
        }
        0x25 => {
            let mut c = Vec::with_capacity(8);
            c.extend_from_slice(
                &(blocks.saturating_sub(1).min(u64::from(u32::MAX)) as u32).to_be_bytes(),
            );
            c.extend_from_slice(&(CD_BLOCK as u32).to_be_bytes());
            Data(AtapiData::reply(c, 8))
        }
        0x28 | 0xa8 | 0xbe => {
            let lba = be32(&cdb[2..6]);
            let count = match op {
                0x28 => be16(&cdb[7..9]),
                0xa8 => be32(&cdb[6..10]),
                _ => be32(&[0, cdb[6], cdb[7], cdb[8]]),
            };
            if op == 0xbe {
                // READ CD: only user data of data sectors.
                if cdb[9] == 0 {
                    return Good;
                }
                if cdb[9] & 0xf8 != 0x10 {
                    return Check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
                }
            }
            if lba.checked_add(count).is_none_or(|end| end > blocks) {
                return Check(SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
            }
            Data(AtapiData::read(lba, count))
        }
        0x1a | 0x5a => mode_sense(d, cdb),
        0x43 => read_toc(blocks, cdb),
        0x46 => get_configuration(d, cdb),
        0x4a => {
            if cdb[1] & 1 == 0 {
                // Only polled operation.
                return Check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
            }
            let alloc = be16(&cdb[7..9]) as usize;
            if cdb[4] & 0x10 != 0 {
                let code = match std::mem::take(&mut d.event) {
                    MediaEvent::None => 0,
                    MediaEvent::NewMedia => 2,
                    MediaEvent::Removed => 3,
                };
                let present = u8::from(d.image.is_some()) << 1;
                Data(AtapiData::reply(
                    vec![0, 6, 0x04, 0x10, code, present, 0, 0],
                    alloc,
                ))
            } else {
                // No event of a class asked for (NEA).
                Data(AtapiData::reply(vec![0, 2, 0x80, 0x10], alloc))
            }
        }
        0x51 => {
            if cdb[1] & 7 != 0 {
                return Check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
            }
            let mut r = vec![0u8; 34];
            r[1] = 32;
            r[2] = 0x0e; // complete disc, complete last session
            r[3] = 1;
            r[4] = 1;
            r[5] = 1;
            r[6] = 1;
            r[7] = 0x20; // unrestricted use
            r[16..20].copy_from_slice(&[0xff; 4]);
            r[20..24].copy_from_slice(&[0xff; 4]);
            Data(AtapiData::reply(r, be16(&cdb[7..9]) as usize))
        }
        0x1e => {
            d.locked = cdb[4] & 1 != 0;
            Good
        }
        0x1b => {
            let (start, loej) = (cdb[4] & 1 != 0, cdb[4] & 2 != 0);
            if loej && !start {
                if d.locked {
                    return Check(SENSE_ILLEGAL_REQUEST, ASC_REMOVAL_PREVENTED);
                }
                if d.image.is_some() {
                    d.image = None;
                    d.event = MediaEvent::Removed;
                }
            }
            Good
        }
        0xbd => {
            let r = vec![0u8; 8];
            Data(AtapiData::reply(r, be16(&cdb[8..10]) as usize))
        }
        0xbb | 0x2b | 0x4e => Good,
        0x42 => {
            let alloc = be16(&cdb[7..9]) as usize;
            if cdb[2] & 0x40 == 0 {
                return Data(AtapiData::reply(vec![0, 0x15, 0, 0], alloc));
            }
            let mut r = vec![0u8; 16];
            r[1] = 0x15;
            r[3] = 12;
            r[4] = 1;
            r[5] = 0x14;
            r[6] = 1;
            r[7] = 1;
            Data(AtapiData::reply(r, alloc))
        }
        _ => {
            log::debug!("ide: ATAPI command {op:#04x} not supported");
            Check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE)
        }
    }
}

/// MODE SENSE (6) and (10): error recovery (01h) and capabilities (2Ah).
fn mode_sense(d: &Drive, cdb: &[u8]) -> Reply {
    let ten = cdb[0] == 0x5a;
    let page = cdb[2] & 0x3f;
    let control = cdb[2] >> 6;
    if control == 3 {
        return Check(SENSE_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED);
    }
    let changeable = control == 1;
    let error_recovery: Vec<u8> = if changeable {
        vec![0x01, 0x06, 0, 0, 0, 0, 0, 0]
    } else {
        vec![0x01, 0x06, 0x00, 0x05, 0, 0, 0, 0]
    };
    let mut caps = vec![0u8; 20];
    caps[0] = 0x2a;
    caps[1] = 0x12;
    if !changeable {
        caps[2] = 0x3b; // reads CD-R, CD-RW, method 2, DVD-ROM, DVD-R, DVD-RAM
        caps[4] = 0x71; // audio play, mode 2 form 1 and 2, multisession
        caps[5] = 0x7f; // CD-DA, accurate stream, R-W, C2 pointers, ISRC, UPC
        caps[6] = 0x29 | (u8::from(d.locked) << 1); // tray, eject, lock
        caps[7] = 0x03; // separate volume and mute
        caps[8..10].copy_from_slice(&(16 * 176u16).to_be_bytes());
        caps[10..12].copy_from_slice(&256u16.to_be_bytes());
        caps[12..14].copy_from_slice(&512u16.to_be_bytes());
        caps[14..16].copy_from_slice(&(16 * 176u16).to_be_bytes());
    }
    let pages: Vec<u8> = match page {
        0x01 => error_recovery,
        0x2a => caps,
        0x3f => [error_recovery, caps].concat(),
        _ => return Check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD),
    };
    // Medium type: 120 mm data disc, or door closed and no disc.
    let medium = if d.image.is_some() { 0x01 } else { 0x70 };
    let (mut out, alloc) = if ten {
        let len = (pages.len() + 6) as u16;
        let mut h = vec![0u8; 8];
        h[0..2].copy_from_slice(&len.to_be_bytes());
        h[2] = medium;
        (h, be16(&cdb[7..9]) as usize)
    } else {
        (vec![(pages.len() + 3) as u8, medium, 0, 0], cdb[4] as usize)
    };
    out.extend_from_slice(&pages);
    Data(AtapiData::reply(out, alloc))
}

/// READ TOC/PMA/ATIP formats 0 (TOC) and 1 (session info), one data track.
fn read_toc(blocks: u64, cdb: &[u8]) -> Reply {
    let msf = cdb[1] & 0x02 != 0;
    let mut format = cdb[2] & 0x0f;
    if format == 0 {
        // The old place for the format, as some hosts still use it.
        format = cdb[9] >> 6;
    }
    let start = cdb[6];
    let alloc = be16(&cdb[7..9]) as usize;
    let mut out = vec![0u8, 0, 1, 1];
    match format {
        0 => {
            if start > 1 && start != 0xaa {
                return Check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
            }
            if start <= 1 {
                out.extend_from_slice(&[0, 0x14, 1, 0]);
                out.extend_from_slice(&address(0, msf));
            }
            out.extend_from_slice(&[0, 0x16, 0xaa, 0]);
            out.extend_from_slice(&address(blocks, msf));
        }
        1 => {
            out.extend_from_slice(&[0, 0x14, 1, 0]);
            out.extend_from_slice(&address(0, msf));
        }
        _ => return Check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD),
    }
    let len = (out.len() - 2) as u16;
    out[0..2].copy_from_slice(&len.to_be_bytes());
    Data(AtapiData::reply(out, alloc))
}

/// GET CONFIGURATION: the profile list, core and removable-medium features.
fn get_configuration(d: &Drive, cdb: &[u8]) -> Reply {
    let rt = cdb[1] & 3;
    let first = be16(&cdb[2..4]) as u16;
    let alloc = be16(&cdb[7..9]) as usize;
    if rt == 3 {
        return Check(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
    }
    let blocks = d.cd_blocks();
    let current: u16 = match d.image {
        None => 0,
        Some(_) if blocks > CD_MAX_BLOCKS => 0x0010,
        Some(_) => 0x0008,
    };
    let profile = |p: u16| {
        let mut e = p.to_be_bytes().to_vec();
        e.extend_from_slice(&[u8::from(current == p), 0]);
        e
    };
    let features: Vec<(u16, Vec<u8>)> = vec![
        (
            0x0000,
            [vec![0, 0, 0x03, 8], profile(0x0010), profile(0x0008)].concat(),
        ),
        (0x0001, vec![0, 1, 0x0b, 8, 0, 0, 0, 2, 0, 0, 0, 0]),
        (0x0003, vec![0, 3, 0x03, 4, 0x29, 0, 0, 0]),
    ];
    let mut out = vec![0u8; 8];
    out[6..8].copy_from_slice(&current.to_be_bytes());
    for (code, body) in features {
        let wanted = match rt {
            2 => code == first,
            _ => code >= first,
        };
        if wanted {
            out.extend_from_slice(&body);
        }
    }
    let len = (out.len() - 4) as u32;
    out[0..4].copy_from_slice(&len.to_be_bytes());
    Data(AtapiData::reply(out, alloc))
}
