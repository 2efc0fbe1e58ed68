//! virtio-blk (type 2) over a raw image file: read, write, flush
//! (fdatasync), get-id, discard (punch hole) and write-zeroes (zero range,
//! or plain zeroes when the host filesystem cannot). A read-only disk
//! advertises VIRTIO_BLK_F_RO and fails writes with VIRTIO_BLK_S_IOERR.
//! The image is opened and locked (flock(2), so two VMs cannot write one
//! image) by `storage::disk_image`.

use std::path::PathBuf;

use virtio_bindings::virtio_blk::*;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, GuestMemoryMmap};

use super::chain::{read_regions, write_regions, ChainBuffers, ChainError, Region};
use super::{VirtioDevice, VirtioError};
use crate::storage::disk_image::DiskImage;

pub const SECTOR_SIZE: u64 = 512;
const QUEUE_SIZE: u16 = 256;
/// Data segments per request (queue size minus header and status).
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Limits advertised for discard and write-zeroes.
const MAX_DISCARD_SECTORS: u32 = 1 << 22;
const MAX_DISCARD_SEG: u32 = 1;
/// Bytes of a request header (type, reserved, sector).
const HEADER_LEN: u64 = 16;
/// Bytes of the device id string.
const ID_LEN: usize = 20;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockConfig {
    pub path: PathBuf,
    pub readonly: bool,
}

/// Why an image could not be opened (shared with the other disk devices).
pub use crate::storage::disk_image::DiskImageError as BlockOpenError;

/// The block device.
pub struct BlockDevice {
    image: DiskImage,
    readonly: bool,
    capacity_sectors: u64,
    id: [u8; ID_LEN],
    discard: bool,
}

impl BlockDevice {
    /// Open and lock the image in `config`.
    pub fn open(config: &BlockConfig) -> Result<BlockDevice, BlockOpenError> {
        let image = DiskImage::open(&config.path, config.readonly)?;
        let mut id = [0u8; ID_LEN];
        let name = image.file_name();
        let n = name.len().min(ID_LEN);
        id[..n].copy_from_slice(&name.as_bytes()[..n]);
        Ok(BlockDevice {
            capacity_sectors: image.len() / SECTOR_SIZE,
            discard: image.is_regular_file(),
            readonly: config.readonly,
            image,
            id,
        })
    }

    /// The disk's size in 512-byte sectors.
    pub fn capacity_sectors(&self) -> u64 {
        self.capacity_sectors
    }

    /// Whether `sectors` starting at `sector` lie inside the disk.
    fn in_range(&self, sector: u64, bytes: u64) -> bool {
        let Some(start) = sector.checked_mul(SECTOR_SIZE) else {
            return false;
        };
        start
            .checked_add(bytes)
            .is_some_and(|end| end <= self.capacity_sectors * SECTOR_SIZE)
    }

    fn fallocate(&self, mode: i32, offset: u64, len: u64) -> std::io::Result<()> {
        self.image.fallocate(mode, offset, len)
    }

    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> std::io::Result<()> {
        self.image.write_zeroes(offset, len, unmap)
    }

    /// Carry out one request; returns (status, bytes written into the
    /// guest's data buffers). Errors are guest protocol violations.
    fn execute(
        &mut self,
        mem: &GuestMemoryMmap,
        req_type: u32,
        sector: u64,
        c: &ChainBuffers,
        data_in: &[Region],
        data_in_len: u64,
    ) -> Result<(u32, u32), ChainError> {
        // Driver-readable data starts after the header.
        let data_out = HEADER_LEN;
        let ioerr = |what: &str, e: std::io::Error| {
            crate::guest_warn!("virtio-blk: {what} failed on the host: {e}");
            VIRTIO_BLK_S_IOERR
        };
        match req_type {
            VIRTIO_BLK_T_IN => {
                if !data_in_len.is_multiple_of(SECTOR_SIZE) || !self.in_range(sector, data_in_len) {
                    return Ok((VIRTIO_BLK_S_IOERR, 0));
                }
                let mut pos = sector * SECTOR_SIZE;
                let mut buf = Vec::new();
                for r in data_in {
                    buf.resize(r.len as usize, 0);
                    if let Err(e) = self.image.read_at(pos, &mut buf) {
                        return Ok((ioerr("a read", e), 0));
                    }
                    write_regions(mem, std::slice::from_ref(r), 0, &buf)?;
                    pos += u64::from(r.len);
                }
                Ok((VIRTIO_BLK_S_OK, data_in_len as u32))
            }
            VIRTIO_BLK_T_OUT => {
                if self.readonly {
                    return Ok((VIRTIO_BLK_S_IOERR, 0));
                }
                let len = c.readable_len() - data_out;
                if !len.is_multiple_of(SECTOR_SIZE) || !self.in_range(sector, len) {
                    return Ok((VIRTIO_BLK_S_IOERR, 0));
                }
                let mut buf = vec![0u8; len as usize];
                read_regions(mem, &c.readable, data_out, &mut buf)?;
                match self.image.write_at(sector * SECTOR_SIZE, &buf) {
                    Ok(()) => Ok((VIRTIO_BLK_S_OK, 0)),
                    Err(e) => Ok((ioerr("a write", e), 0)),
                }
            }
            VIRTIO_BLK_T_FLUSH => {
                if self.readonly {
                    return Ok((VIRTIO_BLK_S_OK, 0));
                }
                match self.image.flush() {
                    Ok(()) => Ok((VIRTIO_BLK_S_OK, 0)),
                    Err(e) => Ok((ioerr("a flush", e), 0)),
                }
            }
            VIRTIO_BLK_T_GET_ID => {
                let n = (data_in_len as usize).min(ID_LEN);
                write_regions(mem, data_in, 0, &self.id[..n])?;
                Ok((VIRTIO_BLK_S_OK, n as u32))
            }
            VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES => {
                if self.readonly {
                    return Ok((VIRTIO_BLK_S_IOERR, 0));
                }
                if !self.discard {
                    return Ok((VIRTIO_BLK_S_UNSUPP, 0));
                }
                let len = c.readable_len() - data_out;
                if len == 0 || !len.is_multiple_of(16) || len / 16 > u64::from(MAX_DISCARD_SEG) {
                    return Ok((VIRTIO_BLK_S_IOERR, 0));
                }
                let mut seg = [0u8; 16];
                read_regions(mem, &c.readable, data_out, &mut seg)?;
                let seg_sector = u64::from_le_bytes(seg[0..8].try_into().unwrap_or_default());
                let num = u64::from(u32::from_le_bytes(
                    seg[8..12].try_into().unwrap_or_default(),
                ));
                let flags = u32::from_le_bytes(seg[12..16].try_into().unwrap_or_default());
                if num > u64::from(MAX_DISCARD_SECTORS)
                    || !self.in_range(seg_sector, num * SECTOR_SIZE)
                {
                    return Ok((VIRTIO_BLK_S_IOERR, 0));
                }
                let (off, bytes) = (seg_sector * SECTOR_SIZE, num * SECTOR_SIZE);
                let result = if req_type == VIRTIO_BLK_T_DISCARD {
                    self.fallocate(
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        off,
                        bytes,
                    )
                } else {
                    self.write_zeroes(off, bytes, flags & 1 != 0)
                };
                match result {
                    Ok(()) => Ok((VIRTIO_BLK_S_OK, 0)),
                    Err(e) if req_type == VIRTIO_BLK_T_DISCARD => {
                        log::debug!("virtio-blk: discard unsupported by the host: {e}");
                        Ok((VIRTIO_BLK_S_UNSUPP, 0))
                    }
                    Err(e) => Ok((ioerr("write-zeroes", e), 0)),
                }
            }
            _ => Ok((VIRTIO_BLK_S_UNSUPP, 0)),
        }
    }

    /// Handle one chain: header, data, status byte.
    fn handle(&mut self, mem: &GuestMemoryMmap, c: &ChainBuffers) -> Result<u32, ChainError> {
        let mut header = [0u8; HEADER_LEN as usize];
        read_regions(mem, &c.readable, 0, &mut header)
            .map_err(|_| ChainError::MissingBuffer("16-byte request header"))?;
        let req_type = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let sector = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        // The status byte is the last writable byte.
        let writable = c.writable_len();
        if writable == 0 {
            return Err(ChainError::MissingBuffer("status"));
        }
        let mut data_in: Vec<Region> = c.writable.clone();
        let mut status_at = None;
        while let Some(last) = data_in.pop() {
            if last.len > 0 {
                status_at = Some(Region {
                    addr: last.addr.unchecked_add(u64::from(last.len) - 1),
                    len: 1,
                });
                if last.len > 1 {
                    data_in.push(Region {
                        addr: last.addr,
                        len: last.len - 1,
                    });
                }
                break;
            }
        }
        let status_at = status_at.ok_or(ChainError::MissingBuffer("status"))?;
        let (status, written) = self.execute(mem, req_type, sector, c, &data_in, writable - 1)?;
        write_regions(mem, &[status_at], 0, &[status as u8])?;
        Ok(written + 1)
    }
}

impl VirtioDevice for BlockDevice {
    fn device_type(&self) -> u16 {
        virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK as u16
    }

    fn set_images_active(&mut self, active: bool) -> Result<(), String> {
        self.image.set_active(active).map_err(|e| e.to_string())
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        let mut f = (1u64 << VIRTIO_BLK_F_SEG_MAX) | (1 << VIRTIO_BLK_F_FLUSH);
        if self.readonly {
            f |= 1 << VIRTIO_BLK_F_RO;
        } else if self.discard {
            f |= (1 << VIRTIO_BLK_F_DISCARD) | (1 << VIRTIO_BLK_F_WRITE_ZEROES);
        }
        f
    }

    fn config_bytes(&self) -> Vec<u8> {
        let mut c = vec![0u8; 60];
        c[0..8].copy_from_slice(&self.capacity_sectors.to_le_bytes());
        c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        c[36..40].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        c[40..44].copy_from_slice(&MAX_DISCARD_SEG.to_le_bytes());
        c[44..48].copy_from_slice(&1u32.to_le_bytes());
        c[48..52].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        c[52..56].copy_from_slice(&MAX_DISCARD_SEG.to_le_bytes());
        c[56] = 1;
        c
    }

    fn process_queue(
        &mut self,
        _index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<bool, VirtioError> {
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let c = ChainBuffers::parse(chain, mem)?;
            let len = self.handle(mem, &c)?;
            queue
                .add_used(mem, c.head, len)
                .map_err(|_| VirtioError::BadRing)?;
            used = true;
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests;
