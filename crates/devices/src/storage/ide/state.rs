//! The IDE controller's snapshot state: the PCI function (configuration
//! space, timing registers) and both channels with their drives' registers,
//! any PIO phase or DMA command in progress, and the bus-master registers.
//!
//! Disk contents are not here (they live in the image files). Everything
//! read back is checked against the drives this machine has: the same kinds
//! in the same places, transfers inside the image, buffers no longer than a
//! transfer can make. It must not know the snapshot file's format.

use super::atapi::AtapiData;
use super::bus_master::BusMaster;
use super::channel::{Dir, DmaOp, IdeChannel, Next, Pio};
use super::controller::IdeController;
use super::drive::{Chs, Drive, DriveKind, MediaEvent, Sense, TaskFile, MAX_MULTIPLE};
use crate::state::{StateError, StateReader, StateWriter};

/// The longest PIO or ATAPI buffer a command makes (a CD reply or a
/// READ MULTIPLE block are far smaller).
const MAX_BUFFER: usize = 1 << 20;

fn invalid(msg: impl Into<String>) -> StateError {
    StateError::Invalid(format!("ide: {}", msg.into()))
}

impl IdeController {
    pub(super) fn save_channels(&self, w: &mut StateWriter) {
        for ch in &self.channels_ref() {
            crate::bus::lock(ch).save(w);
        }
    }

    pub(super) fn restore_channels(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        // Read both before changing either.
        let a = crate::bus::lock(&self.channels_ref()[0]).read(r)?;
        let b = crate::bus::lock(&self.channels_ref()[1]).read(r)?;
        crate::bus::lock(&self.channels_ref()[0]).apply(a);
        crate::bus::lock(&self.channels_ref()[1]).apply(b);
        Ok(())
    }
}

/// A channel's state as read back, checked, not yet applied.
pub(super) struct ChannelState {
    selected: usize,
    ctrl: u8,
    irq_pending: bool,
    bm: BusMaster,
    drives: [Option<DriveState>; 2],
    pio: Option<Pio>,
    dma: Option<DmaOp>,
}

struct DriveState {
    regs: TaskFile,
    current: Chs,
    multiple: u8,
    write_cache: bool,
    dma_mode: u8,
    sense: Sense,
    unit_attention: bool,
    event: MediaEvent,
    locked: bool,
}

impl IdeChannel {
    fn save(&self, w: &mut StateWriter) {
        let (ctrl, irq_pending) = self.irq_state();
        w.u8(self.selected as u8);
        w.u8(ctrl);
        w.bool(irq_pending);
        let (cmd, status, prd) = self.bm.registers();
        w.u8(cmd);
        w.u8(status);
        w.u32(prd);
        for d in &self.drives {
            match d {
                None => w.bool(false),
                Some(d) => {
                    w.bool(true);
                    save_drive(d, w);
                }
            }
        }
        match &self.pio {
            None => w.bool(false),
            Some(p) => {
                w.bool(true);
                w.u8(u8::from(p.dir == Dir::Out));
                w.bytes(&p.buf);
                w.u32(p.pos as u32);
                save_next(&p.next, w);
            }
        }
        match &self.dma {
            None => w.u8(0),
            Some(DmaOp::AtaRead { lba, sectors }) => {
                w.u8(1);
                w.u64(*lba);
                w.u64(*sectors);
            }
            Some(DmaOp::AtaWrite { lba, sectors }) => {
                w.u8(2);
                w.u64(*lba);
                w.u64(*sectors);
            }
            Some(DmaOp::Atapi(a)) => {
                w.u8(3);
                save_atapi(a, w);
            }
        }
    }

    fn read(&self, r: &mut StateReader<'_>) -> Result<ChannelState, StateError> {
        let selected = usize::from(r.u8_max(1, "IDE selected drive")?);
        let ctrl = r.u8("IDE device control")?;
        let irq_pending = r.bool("IDE interrupt pending")?;
        let bm = BusMaster::from_registers(
            r.u8("bus-master command")?,
            r.u8("bus-master status")?,
            r.u32("bus-master PRD address")?,
        );
        let mut drives = [None, None];
        for (i, slot) in drives.iter_mut().enumerate() {
            let present = r.bool("IDE drive present")?;
            match (&self.drives[i], present) {
                (None, false) => {}
                (Some(d), true) => *slot = Some(read_drive(d, r)?),
                (have, _) => {
                    return Err(invalid(format!(
                        "the snapshot has {} drive {i} on this channel, this machine {}",
                        if present { "a" } else { "no" },
                        if have.is_some() {
                            "has one"
                        } else {
                            "has none"
                        }
                    )))
                }
            }
        }
        let sectors = |i: usize| -> u64 {
            self.drives[i]
                .as_ref()
                .and_then(|d| d.image.as_ref())
                .map_or(0, |img| img.len() / super::drive::SECTOR)
        };
        let pio = if r.bool("IDE PIO phase")? {
            let dir = if r.u8_max(1, "PIO direction")? == 1 {
                Dir::Out
            } else {
                Dir::In
            };
            let buf = r.bytes(MAX_BUFFER, "PIO buffer")?.to_vec();
            let pos = r.u32("PIO position")? as usize;
            if pos > buf.len() {
                return Err(invalid("PIO position past its buffer"));
            }
            let next = read_next(r, sectors(selected))?;
            Some(Pio {
                dir,
                buf,
                pos,
                next,
            })
        } else {
            None
        };
        let dma = match r.u8_max(3, "IDE DMA command")? {
            0 => None,
            tag @ (1 | 2) => {
                let lba = r.u64("DMA LBA")?;
                let n = r.u64("DMA sectors")?;
                check_extent(lba, n, sectors(selected))?;
                Some(if tag == 1 {
                    DmaOp::AtaRead { lba, sectors: n }
                } else {
                    DmaOp::AtaWrite { lba, sectors: n }
                })
            }
            _ => Some(DmaOp::Atapi(read_atapi(r)?)),
        };
        Ok(ChannelState {
            selected,
            ctrl,
            irq_pending,
            bm,
            drives,
            pio,
            dma,
        })
    }

    fn apply(&mut self, s: ChannelState) {
        self.selected = s.selected;
        self.bm = s.bm;
        for (d, st) in self.drives.iter_mut().zip(s.drives) {
            if let (Some(d), Some(st)) = (d.as_mut(), st) {
                d.regs = st.regs;
                d.current = st.current;
                d.multiple = st.multiple;
                d.write_cache = st.write_cache;
                d.dma_mode = st.dma_mode;
                d.sense = st.sense;
                d.unit_attention = st.unit_attention;
                d.event = st.event;
                d.locked = st.locked;
            }
        }
        self.pio = s.pio;
        self.dma = s.dma;
        self.set_irq_state(s.ctrl, s.irq_pending);
    }
}

fn check_extent(lba: u64, n: u64, sectors: u64) -> Result<(), StateError> {
    match lba.checked_add(n) {
        Some(end) if end <= sectors => Ok(()),
        _ => Err(invalid(format!(
            "a transfer of {n} sectors at LBA {lba} runs past the disk's {sectors}"
        ))),
    }
}

fn save_drive(d: &Drive, w: &mut StateWriter) {
    w.u8(match d.kind {
        DriveKind::Disk => 0,
        DriveKind::Cdrom => 1,
    });
    let t = &d.regs;
    for b in [
        t.feature,
        t.hob_feature,
        t.count,
        t.hob_count,
        t.lba_low,
        t.hob_lba_low,
        t.lba_mid,
        t.hob_lba_mid,
        t.lba_high,
        t.hob_lba_high,
        t.device,
        t.status,
        t.error,
    ] {
        w.u8(b);
    }
    w.u16(d.current.cylinders);
    w.u8(d.current.heads);
    w.u8(d.current.sectors);
    w.u8(d.multiple);
    w.bool(d.write_cache);
    w.u8(d.dma_mode);
    w.u8(d.sense.key);
    w.u8(d.sense.asc);
    w.u8(d.sense.ascq);
    w.bool(d.unit_attention);
    w.u8(match d.event {
        MediaEvent::None => 0,
        MediaEvent::NewMedia => 1,
        MediaEvent::Removed => 2,
    });
    w.bool(d.locked);
}

fn read_drive(d: &Drive, r: &mut StateReader<'_>) -> Result<DriveState, StateError> {
    let kind = match r.u8_max(1, "IDE drive kind")? {
        0 => DriveKind::Disk,
        _ => DriveKind::Cdrom,
    };
    if kind != d.kind {
        return Err(invalid(format!(
            "the snapshot has a {kind:?} where this machine has a {:?}",
            d.kind
        )));
    }
    let mut b = [0u8; 13];
    for v in &mut b {
        *v = r.u8("IDE task file")?;
    }
    let regs = TaskFile {
        feature: b[0],
        hob_feature: b[1],
        count: b[2],
        hob_count: b[3],
        lba_low: b[4],
        hob_lba_low: b[5],
        lba_mid: b[6],
        hob_lba_mid: b[7],
        lba_high: b[8],
        hob_lba_high: b[9],
        device: b[10],
        status: b[11],
        error: b[12],
    };
    let current = Chs {
        cylinders: r.u16("CHS cylinders")?,
        heads: r.u8("CHS heads")?,
        sectors: r.u8("CHS sectors")?,
    };
    if current.cylinders == 0 || current.heads == 0 || current.heads > 16 || current.sectors == 0 {
        return Err(invalid("a CHS geometry no drive could have"));
    }
    let multiple = r.u8_max(MAX_MULTIPLE, "READ/WRITE MULTIPLE block")?;
    let write_cache = r.bool("write cache")?;
    let dma_mode = r.u8("DMA mode")?;
    let sense = Sense {
        key: r.u8_max(0x0f, "sense key")?,
        asc: r.u8("sense code")?,
        ascq: r.u8("sense qualifier")?,
    };
    let unit_attention = r.bool("unit attention")?;
    let event = match r.u8_max(2, "media event")? {
        0 => MediaEvent::None,
        1 => MediaEvent::NewMedia,
        _ => MediaEvent::Removed,
    };
    let locked = r.bool("medium lock")?;
    Ok(DriveState {
        regs,
        current,
        multiple,
        write_cache,
        dma_mode,
        sense,
        unit_attention,
        event,
        locked,
    })
}

fn save_next(n: &Next, w: &mut StateWriter) {
    match n {
        Next::Done => w.u8(0),
        Next::AtaRead {
            lba,
            left,
            per_block,
        } => {
            w.u8(1);
            w.u64(*lba);
            w.u64(*left);
            w.u64(*per_block);
        }
        Next::AtaWrite {
            lba,
            left,
            per_block,
        } => {
            w.u8(2);
            w.u64(*lba);
            w.u64(*left);
            w.u64(*per_block);
        }
        Next::Packet => w.u8(3),
        Next::Atapi(a) => {
            w.u8(4);
            save_atapi(a, w);
        }
    }
}

fn read_next(r: &mut StateReader<'_>, sectors: u64) -> Result<Next, StateError> {
    Ok(match r.u8_max(4, "PIO next step")? {
        0 => Next::Done,
        tag @ (1 | 2) => {
            let lba = r.u64("PIO LBA")?;
            let left = r.u64("PIO sectors left")?;
            let per_block = r.u64("PIO block sectors")?;
            if per_block == 0 || per_block > u64::from(MAX_MULTIPLE).max(1) {
                return Err(invalid(format!("a PIO block of {per_block} sectors")));
            }
            check_extent(lba, left, sectors)?;
            if tag == 1 {
                Next::AtaRead {
                    lba,
                    left,
                    per_block,
                }
            } else {
                Next::AtaWrite {
                    lba,
                    left,
                    per_block,
                }
            }
        }
        3 => Next::Packet,
        _ => Next::Atapi(read_atapi(r)?),
    })
}

fn save_atapi(a: &AtapiData, w: &mut StateWriter) {
    let (pending, pos, lba, blocks, left) = a.parts();
    w.bytes(pending);
    w.u32(pos as u32);
    w.u64(lba);
    w.u64(blocks);
    w.u64(left);
}

fn read_atapi(r: &mut StateReader<'_>) -> Result<AtapiData, StateError> {
    let pending = r.bytes(MAX_BUFFER, "ATAPI data")?.to_vec();
    let pos = r.u32("ATAPI position")? as usize;
    let lba = r.u64("ATAPI LBA")?;
    let blocks = r.u64("ATAPI blocks")?;
    let left = r.u64("ATAPI bytes left")?;
    AtapiData::from_parts(pending, pos, lba, blocks, left).map_err(invalid)
}
