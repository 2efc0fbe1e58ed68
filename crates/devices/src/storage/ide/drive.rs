//! One IDE device (master or slave): its kind (ATA disk or ATAPI CD-ROM),
//! its image, the task-file registers it latched, and the per-device state
//! commands change (geometry, multiple count, transfer modes, write cache;
//! for the CD-ROM: sense data, lock, pending medium events).
//!
//! It must not know about ports, interrupts or the bus master.

use std::path::{Path, PathBuf};

use crate::storage::disk_image::{DiskImage, DiskImageError};

/// Status register bits.
pub const ST_ERR: u8 = 0x01;
pub const ST_DRQ: u8 = 0x08;
pub const ST_DSC: u8 = 0x10;
pub const ST_DF: u8 = 0x20;
pub const ST_DRDY: u8 = 0x40;
pub const ST_BSY: u8 = 0x80;

/// Error register bits.
pub const ER_ABRT: u8 = 0x04;
pub const ER_IDNF: u8 = 0x10;
pub const ER_UNC: u8 = 0x40;

/// ATA sector and CD-ROM block sizes.
pub const SECTOR: u64 = 512;
pub const CD_BLOCK: u64 = 2048;

/// What a drive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveKind {
    /// An ATA hard disk of 512-byte sectors.
    Disk,
    /// An ATAPI CD/DVD-ROM over a read-only ISO image (2048-byte blocks).
    Cdrom,
}

/// What the user asked for, for one drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdeDriveConfig {
    pub path: PathBuf,
    pub kind: DriveKind,
    /// Refuse writes (a CD-ROM is always read-only).
    pub readonly: bool,
}

impl IdeDriveConfig {
    /// Whether the image is opened read-only (a CD-ROM always is).
    pub fn opens_readonly(&self) -> bool {
        self.readonly || self.kind == DriveKind::Cdrom
    }
}

/// The command-block registers as one device latched them; `hob_*` hold
/// the previous write (the high-order bytes of 48-bit commands).
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskFile {
    pub feature: u8,
    pub hob_feature: u8,
    pub count: u8,
    pub hob_count: u8,
    pub lba_low: u8,
    pub hob_lba_low: u8,
    pub lba_mid: u8,
    pub hob_lba_mid: u8,
    pub lba_high: u8,
    pub hob_lba_high: u8,
    pub device: u8,
    pub status: u8,
    pub error: u8,
}

/// SCSI sense keys and what a CD-ROM reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

pub const SENSE_NONE: u8 = 0x00;
pub const SENSE_NOT_READY: u8 = 0x02;
pub const SENSE_ILLEGAL_REQUEST: u8 = 0x05;
pub const SENSE_UNIT_ATTENTION: u8 = 0x06;

/// A medium event the CD-ROM reports through GET EVENT STATUS NOTIFICATION.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaEvent {
    #[default]
    None,
    NewMedia,
    Removed,
}

/// CHS geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chs {
    pub cylinders: u16,
    pub heads: u8,
    pub sectors: u8,
}

/// One device on a channel.
pub struct Drive {
    pub kind: DriveKind,
    /// None: a CD-ROM drive with no disc.
    pub image: Option<DiskImage>,
    pub regs: TaskFile,
    pub serial: String,
    /// The default (identify) geometry, and the one INITIALIZE DEVICE
    /// PARAMETERS set.
    pub geometry: Chs,
    pub current: Chs,
    /// Sectors per DRQ block of READ/WRITE MULTIPLE; 0 = disabled.
    pub multiple: u8,
    pub write_cache: bool,
    /// The transfer mode SET FEATURES chose: (0x20 | mwdma) or (0x40 | udma).
    pub dma_mode: u8,
    pub sense: Sense,
    /// A medium change the host has not been told about (UNIT ATTENTION).
    pub unit_attention: bool,
    pub event: MediaEvent,
    /// PREVENT MEDIUM REMOVAL is in force.
    pub locked: bool,
}

/// The most sectors a READ/WRITE MULTIPLE block may have.
pub const MAX_MULTIPLE: u8 = 16;

fn default_geometry(sectors: u64) -> Chs {
    let cylinders = (sectors / (16 * 63)).clamp(1, 16383) as u16;
    Chs {
        cylinders,
        heads: 16,
        sectors: 63,
    }
}

impl Drive {
    /// Open `config`'s image (a CD-ROM read-only) as a drive.
    pub fn open(config: &IdeDriveConfig, index: usize) -> Result<Drive, DiskImageError> {
        let image = DiskImage::open(&config.path, config.opens_readonly())?;
        Ok(Drive::new(config.kind, Some(image), index))
    }

    /// A drive over `image` (None only for an empty CD-ROM drive).
    pub fn new(kind: DriveKind, image: Option<DiskImage>, index: usize) -> Drive {
        let sectors = image.as_ref().map_or(0, |i| i.len() / SECTOR);
        let geometry = default_geometry(sectors);
        let mut d = Drive {
            kind,
            image,
            regs: TaskFile::default(),
            serial: format!("KITE{:016}", index + 1),
            geometry,
            current: geometry,
            multiple: 0,
            write_cache: true,
            dma_mode: 0x22,
            sense: Sense::default(),
            unit_attention: false,
            event: MediaEvent::None,
            locked: false,
        };
        d.reset();
        d
    }

    /// A device of this path, for messages.
    pub fn path(&self) -> Option<&Path> {
        self.image.as_ref().map(|i| i.path())
    }

    /// 512-byte sectors of an ATA disk.
    pub fn sectors(&self) -> u64 {
        self.image.as_ref().map_or(0, |i| i.len() / SECTOR)
    }

    /// 2048-byte blocks of a CD-ROM's disc (0 without one).
    pub fn cd_blocks(&self) -> u64 {
        self.image.as_ref().map_or(0, |i| i.len() / CD_BLOCK)
    }

    /// Put the reset signature in the task file (disk 00/01/00/00 in
    /// error/count/mid/high plus lba low 1; ATAPI count 1, low 1, 14/EB).
    pub fn set_signature(&mut self) {
        let r = &mut self.regs;
        r.count = 1;
        r.lba_low = 1;
        r.device &= 0x10;
        match self.kind {
            DriveKind::Disk => {
                r.lba_mid = 0;
                r.lba_high = 0;
            }
            DriveKind::Cdrom => {
                r.lba_mid = 0x14;
                r.lba_high = 0xeb;
            }
        }
    }

    /// A hardware or software reset of this device.
    pub fn reset(&mut self) {
        self.set_signature();
        self.regs.error = 0x01;
        self.regs.status = match self.kind {
            DriveKind::Disk => ST_DRDY | ST_DSC,
            DriveKind::Cdrom => 0,
        };
        self.multiple = 0;
        self.current = self.geometry;
    }

    /// End a command well.
    pub fn ok(&mut self) {
        self.regs.status = ST_DRDY | ST_DSC;
        self.regs.error = 0;
    }

    /// End a command with `error` bits.
    pub fn fail(&mut self, error: u8) {
        self.regs.status = ST_DRDY | ST_ERR;
        self.regs.error = error;
    }

    /// Put a new disc in the CD-ROM drive (None: take it out); the host
    /// sees UNIT ATTENTION on its next command, and a media event.
    pub fn change_medium(&mut self, image: Option<DiskImage>) {
        self.event = if image.is_some() {
            MediaEvent::NewMedia
        } else {
            MediaEvent::Removed
        };
        self.image = image;
        self.unit_attention = true;
    }
}
