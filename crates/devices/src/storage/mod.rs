//! Storage controllers and what they share: the raw disk image backend
//! (`disk_image`, also used by virtio-blk) and the PIIX3 IDE controller
//! with ATA disks and ATAPI CD-ROMs (`ide`).

pub mod disk_image;
pub mod ide;

pub use disk_image::{DiskImage, DiskImageError};
