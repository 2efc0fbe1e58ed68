//! A raw disk image file as disk devices (virtio-blk, IDE) share it: opened
//! read-only or read-write, locked with flock(2) (shared for read-only,
//! exclusive otherwise) so two VMs cannot write one image, its size, and
//! positioned reads, writes, flushes and range deallocation.
//!
//! It must not know any guest protocol: callers check ranges in their own
//! units; every access here is still checked against the image's size.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DiskImageError {
    #[error("disk image {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("disk image {path} is in use by another process (locked); stop the other VM or add ,readonly to both")]
    Locked { path: PathBuf },
    #[error("disk image {path} is not a regular file or block device")]
    NotAFile { path: PathBuf },
}

/// An open, locked image.
pub struct DiskImage {
    file: File,
    path: PathBuf,
    readonly: bool,
    len: u64,
    /// A regular file (not a block device): hole punching may work.
    regular: bool,
}

/// Flock the image: shared for read-only disks, exclusive otherwise.
fn lock_image(file: &File, path: &Path, readonly: bool) -> Result<(), DiskImageError> {
    let op = if readonly {
        libc::LOCK_SH
    } else {
        libc::LOCK_EX
    } | libc::LOCK_NB;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let r = unsafe { libc::flock(file.as_raw_fd(), op) };
    if r == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err(DiskImageError::Locked {
            path: path.to_path_buf(),
        })
    } else {
        Err(DiskImageError::Open {
            path: path.to_path_buf(),
            source: err,
        })
    }
}

fn out_of_range() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "access outside the disk image",
    )
}

impl DiskImage {
    /// Open and lock the image at `path`.
    pub fn open(path: &Path, readonly: bool) -> Result<DiskImage, DiskImageError> {
        let open_err = |source| DiskImageError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!readonly)
            .open(path)
            .map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        if meta.is_dir() {
            return Err(DiskImageError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        lock_image(&file, path, readonly)?;
        let len = std::io::Seek::seek(&mut &file, std::io::SeekFrom::End(0)).map_err(open_err)?;
        Ok(DiskImage {
            file,
            path: path.to_path_buf(),
            readonly,
            len,
            regular: meta.is_file(),
        })
    }

    /// The image's size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the image is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_readonly(&self) -> bool {
        self.readonly
    }

    /// A regular file rather than a block device.
    pub fn is_regular_file(&self) -> bool {
        self.regular
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's name, for device ids and serial numbers.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Whether `len` bytes at `offset` lie inside the image.
    pub fn in_range(&self, offset: u64, len: u64) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len)
    }

    /// Fill `buf` from `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if !self.in_range(offset, buf.len() as u64) {
            return Err(out_of_range());
        }
        self.file.read_exact_at(buf, offset)
    }

    /// Write `buf` at `offset`; fails on a read-only image.
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        if self.readonly {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the disk image is read-only",
            ));
        }
        if !self.in_range(offset, buf.len() as u64) {
            return Err(out_of_range());
        }
        self.file.write_all_at(buf, offset)
    }

    /// Put written data on stable storage (fdatasync); nothing to do when read-only.
    pub fn flush(&self) -> std::io::Result<()> {
        if self.readonly {
            return Ok(());
        }
        self.file.sync_data()
    }

    /// Hand the image to another process and back (the two ends of a live
    /// migration, as QEMU inactivates its images). `false`: written data
    /// goes to stable storage, then the lock is let go, and the caller must
    /// not write until it is active again. `true`: lock it again (refused
    /// while another process holds it).
    pub fn set_active(&self, active: bool) -> Result<(), DiskImageError> {
        if active {
            return lock_image(&self.file, &self.path, self.readonly);
        }
        let open_err = |source| DiskImageError::Open {
            path: self.path.clone(),
            source,
        };
        self.flush().map_err(open_err)?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) } != 0 {
            return Err(open_err(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// `set_active` on each image in turn, all or nothing when taking them
    /// back: if one is held elsewhere, those already locked are let go
    /// again and the error names the one that refused.
    pub fn set_all_active<'a>(
        images: impl IntoIterator<Item = &'a DiskImage>,
        active: bool,
    ) -> Result<(), DiskImageError> {
        let images: Vec<&DiskImage> = images.into_iter().collect();
        crate::state::activate_all(&images, active, |image, on| image.set_active(on))
            .map_err(|(_, e)| e)
    }

    /// Wait up to `timeout` until the image at `path` could be locked as
    /// `open` would lock it (a migration source lets it go, `set_active(false)`,
    /// once the destination has accepted the stream). Leaves it unlocked.
    pub fn wait_until_free(
        path: &Path,
        readonly: bool,
        timeout: std::time::Duration,
    ) -> Result<(), DiskImageError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match DiskImage::open(path, readonly) {
                Ok(_) => return Ok(()),
                Err(DiskImageError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// fallocate(2) over a range inside the image.
    pub fn fallocate(&self, mode: i32, offset: u64, len: u64) -> std::io::Result<()> {
        if self.readonly {
            return Err(std::io::Error::from_raw_os_error(libc::EROFS));
        }
        if !self.in_range(offset, len) {
            return Err(out_of_range());
        }
        // SAFETY: fallocate on a descriptor we own; offset and len lie inside
        // the image (checked above), so they fit an off_t.
        let r = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, offset as i64, len as i64) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Zero a range: punch a hole when `unmap` allows it, else zero the
    /// range in the filesystem, else write zeroes.
    pub fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> std::io::Result<()> {
        let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        if unmap && self.fallocate(punch, offset, len).is_ok() {
            return Ok(());
        }
        let zero_range = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
        if self.fallocate(zero_range, offset, len).is_ok() {
            return Ok(());
        }
        let zeroes = vec![0u8; 64 * 1024];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zeroes.len() as u64) as usize;
            self.write_at(offset + done, &zeroes[..n])?;
            done += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, len: u64) -> PathBuf {
        let p = std::env::temp_dir().join(format!("kite-img-{}-{name}", std::process::id()));
        let f = File::create(&p).unwrap();
        f.set_len(len).unwrap();
        p
    }

    #[test]
    fn reads_and_writes_stay_inside_the_image() {
        let p = image("range", 4096);
        let d = DiskImage::open(&p, false).unwrap();
        assert_eq!(d.len(), 4096);
        d.write_at(4000, &[7; 96]).unwrap();
        let mut b = [0u8; 96];
        d.read_at(4000, &mut b).unwrap();
        assert_eq!(b, [7; 96]);
        assert!(d.write_at(4001, &[7; 96]).is_err());
        assert!(d.read_at(u64::MAX - 1, &mut b).is_err());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 4096);
        drop(d);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn locks_and_readonly() {
        let p = image("lock", 1024);
        let rw = DiskImage::open(&p, false).unwrap();
        assert!(matches!(
            DiskImage::open(&p, true),
            Err(DiskImageError::Locked { .. })
        ));
        drop(rw);
        let ro = DiskImage::open(&p, true).unwrap();
        let ro2 = DiskImage::open(&p, true).unwrap();
        assert!(ro.write_at(0, &[1]).is_err());
        assert!(ro2.is_readonly());
        drop((ro, ro2));
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn a_released_image_is_free_for_another_process_until_taken_back() {
        let p = image("handover", 1024);
        let src = DiskImage::open(&p, false).unwrap();
        let short = std::time::Duration::from_millis(30);
        assert!(matches!(
            DiskImage::wait_until_free(&p, false, short),
            Err(DiskImageError::Locked { .. })
        ));
        src.write_at(0, &[9]).unwrap();
        src.set_active(false).unwrap();
        DiskImage::wait_until_free(&p, false, short).unwrap();
        let dst = DiskImage::open(&p, false).unwrap();
        let mut b = [0u8; 1];
        dst.read_at(0, &mut b).unwrap();
        assert_eq!(b, [9]);
        assert!(matches!(
            src.set_active(true),
            Err(DiskImageError::Locked { .. })
        ));
        drop(dst);
        src.set_active(true).unwrap();
        assert!(matches!(
            DiskImage::open(&p, true),
            Err(DiskImageError::Locked { .. })
        ));
        drop(src);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn taking_several_images_back_is_all_or_nothing() {
        let (pa, pb) = (image("all-a", 512), image("all-b", 512));
        let a = DiskImage::open(&pa, false).unwrap();
        let b = DiskImage::open(&pb, false).unwrap();
        DiskImage::set_all_active([&a, &b], false).unwrap();
        // Someone else holds the second one: the first is not kept either.
        let other = DiskImage::open(&pb, false).unwrap();
        assert!(matches!(
            DiskImage::set_all_active([&a, &b], true),
            Err(DiskImageError::Locked { .. })
        ));
        let short = std::time::Duration::from_millis(30);
        DiskImage::wait_until_free(&pa, false, short).unwrap();
        drop(other);
        DiskImage::set_all_active([&a, &b], true).unwrap();
        assert!(DiskImage::wait_until_free(&pa, false, short).is_err());
        assert!(DiskImage::wait_until_free(&pb, false, short).is_err());
        drop((a, b));
        std::fs::remove_file(pa).unwrap();
        std::fs::remove_file(pb).unwrap();
    }
}
