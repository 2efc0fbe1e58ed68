//! Block requests through a queue in test memory against a temporary image.

use super::*;
use crate::virtio::chain::test_ring::*;
use std::fs::File;
use std::path::Path;
use vm_memory::{Bytes, GuestAddress};

const HDR: u64 = DATA;
const BUF: u64 = DATA + 0x1000;
const STATUS: u64 = DATA + 0x8000;

fn image(name: &str, sectors: u64) -> PathBuf {
    let p = std::env::temp_dir().join(format!("kite-blk-{}-{name}", std::process::id()));
    let f = File::create(&p).unwrap();
    f.set_len(sectors * SECTOR_SIZE).unwrap();
    p
}

fn open(path: &Path, readonly: bool) -> BlockDevice {
    BlockDevice::open(&BlockConfig {
        path: path.to_path_buf(),
        readonly,
    })
    .unwrap()
}

fn header(mem: &GuestMemoryMmap, t: u32, sector: u64) {
    mem.write_obj(t, GuestAddress(HDR)).unwrap();
    mem.write_obj(0u32, GuestAddress(HDR + 4)).unwrap();
    mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
    mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
}

/// header (readable), data of `len` (readable for writes, writable
/// otherwise), status: returns (status byte, used length).
fn request(
    dev: &mut BlockDevice,
    mem: &GuestMemoryMmap,
    t: u32,
    sector: u64,
    len: u32,
    data_writable: bool,
) -> (u8, u32) {
    let mut q = queue(mem, 16);
    header(mem, t, sector);
    desc(mem, 0, HDR, 16, F_NEXT, 1);
    let flags = if data_writable { F_WRITE } else { 0 };
    desc(mem, 1, BUF, len, F_NEXT | flags, 2);
    desc(mem, 2, STATUS, 1, F_WRITE, 0);
    publish(mem, 0, 0);
    assert!(dev.process_queue(0, &mut q, mem).unwrap());
    let (idx, id, used_len) = used(mem, 0);
    assert_eq!((idx, id), (1, 0));
    (mem.read_obj(GuestAddress(STATUS)).unwrap(), used_len)
}

#[test]
fn write_then_read_back_and_flush() {
    let path = image("rw", 64);
    let mem = memory();
    let mut dev = open(&path, false);
    assert_eq!(dev.capacity_sectors(), 64);
    let data: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
    mem.write_slice(&data, GuestAddress(BUF)).unwrap();
    assert_eq!(
        request(&mut dev, &mem, VIRTIO_BLK_T_OUT, 3, 1024, false),
        (VIRTIO_BLK_S_OK as u8, 1)
    );
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(&on_disk[3 * 512..3 * 512 + 1024], &data[..]);
    mem.write_slice(&[0u8; 1024], GuestAddress(BUF)).unwrap();
    assert_eq!(
        request(&mut dev, &mem, VIRTIO_BLK_T_IN, 3, 1024, true),
        (VIRTIO_BLK_S_OK as u8, 1025)
    );
    let mut back = vec![0u8; 1024];
    mem.read_slice(&mut back, GuestAddress(BUF)).unwrap();
    assert_eq!(back, data);
    assert_eq!(
        request(&mut dev, &mem, VIRTIO_BLK_T_FLUSH, 0, 0, false).0,
        VIRTIO_BLK_S_OK as u8
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn out_of_range_and_unaligned_requests_fail_with_ioerr() {
    let path = image("range", 8);
    let mem = memory();
    let mut dev = open(&path, false);
    for (sector, len) in [(7u64, 1024u32), (8, 512), (u64::MAX / 2, 512), (0, 100)] {
        assert_eq!(
            request(&mut dev, &mem, VIRTIO_BLK_T_IN, sector, len, true).0,
            VIRTIO_BLK_S_IOERR as u8,
            "read {sector}+{len}"
        );
        assert_eq!(
            request(&mut dev, &mem, VIRTIO_BLK_T_OUT, sector, len, false).0,
            VIRTIO_BLK_S_IOERR as u8,
            "write {sector}+{len}"
        );
    }
    assert_eq!(
        request(&mut dev, &mem, 0x7777, 0, 512, true).0,
        VIRTIO_BLK_S_UNSUPP as u8
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn read_only_disks_refuse_writes_and_say_so() {
    let path = image("ro", 8);
    std::fs::write(&path, vec![0x5a; 8 * 512]).unwrap();
    let mem = memory();
    let mut dev = open(&path, true);
    assert_ne!(dev.features() & (1 << VIRTIO_BLK_F_RO), 0);
    assert_eq!(dev.features() & (1 << VIRTIO_BLK_F_DISCARD), 0);
    mem.write_slice(&[0u8; 512], GuestAddress(BUF)).unwrap();
    assert_eq!(
        request(&mut dev, &mem, VIRTIO_BLK_T_OUT, 0, 512, false).0,
        VIRTIO_BLK_S_IOERR as u8
    );
    assert_eq!(std::fs::read(&path).unwrap(), vec![0x5a; 8 * 512]);
    assert_eq!(
        request(&mut dev, &mem, VIRTIO_BLK_T_IN, 1, 512, true).0,
        VIRTIO_BLK_S_OK as u8
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn get_id_names_the_image() {
    let path = image("id", 8);
    let mem = memory();
    let mut dev = open(&path, false);
    assert_eq!(
        request(&mut dev, &mem, VIRTIO_BLK_T_GET_ID, 0, 20, true),
        (VIRTIO_BLK_S_OK as u8, 21)
    );
    let mut id = [0u8; 20];
    mem.read_slice(&mut id, GuestAddress(BUF)).unwrap();
    let want = path.file_name().unwrap().to_string_lossy().into_owned();
    let n = want.len().min(20);
    assert_eq!(&id[..n], &want.as_bytes()[..n]);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn discard_and_write_zeroes_clear_the_range() {
    let path = image("zero", 64);
    std::fs::write(&path, vec![0xaa; 64 * 512]).unwrap();
    let mem = memory();
    let mut dev = open(&path, false);
    for (t, start, count) in [
        (VIRTIO_BLK_T_WRITE_ZEROES, 8u64, 8u32),
        (VIRTIO_BLK_T_DISCARD, 32, 16),
    ] {
        mem.write_obj(start, GuestAddress(BUF)).unwrap();
        mem.write_obj(count, GuestAddress(BUF + 8)).unwrap();
        mem.write_obj(0u32, GuestAddress(BUF + 12)).unwrap();
        let (status, _) = request(&mut dev, &mem, t, 0, 16, false);
        let disk = std::fs::read(&path).unwrap();
        let range = start as usize * 512..(start as usize + count as usize) * 512;
        if status == VIRTIO_BLK_S_OK as u8 {
            assert!(disk[range.clone()].iter().all(|&b| b == 0), "type {t}");
        } else {
            // Only a host filesystem without hole punching may refuse discard.
            assert_eq!(
                (t, status),
                (VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_S_UNSUPP as u8)
            );
        }
        assert_eq!(disk[range.start - 1], 0xaa);
        assert_eq!(disk[range.end], 0xaa);
    }
    // A segment past the end of the disk.
    mem.write_obj(60u64, GuestAddress(BUF)).unwrap();
    mem.write_obj(8u32, GuestAddress(BUF + 8)).unwrap();
    assert_eq!(
        request(&mut dev, &mem, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false).0,
        VIRTIO_BLK_S_IOERR as u8
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn malformed_requests_are_errors_not_panics() {
    let path = image("bad", 8);
    let mem = memory();
    let mut dev = open(&path, false);
    let mut run = |descs: &[(u64, u32, u16)]| {
        let mut q = queue(&mem, 16);
        for (i, &(addr, len, flags)) in descs.iter().enumerate() {
            let next = if i + 1 < descs.len() { F_NEXT } else { 0 };
            desc(&mem, i as u16, addr, len, flags | next, i as u16 + 1);
        }
        header(&mem, VIRTIO_BLK_T_IN, 0);
        publish(&mem, 0, 0);
        dev.process_queue(0, &mut q, &mem)
    };
    // No status byte: everything readable.
    assert!(run(&[(HDR, 16, 0), (BUF, 512, 0)]).is_err());
    // A header shorter than 16 bytes.
    assert!(run(&[(HDR, 8, 0), (STATUS, 1, F_WRITE)]).is_err());
    // The header in a write-only buffer (no readable part at all).
    assert!(run(&[(HDR, 16, F_WRITE), (STATUS, 1, F_WRITE)]).is_err());
    // A zero-length status.
    assert!(run(&[(HDR, 16, 0), (STATUS, 0, F_WRITE)]).is_err());
    // A data buffer outside guest memory.
    assert!(run(&[(HDR, 16, 0), (1 << 40, 512, F_WRITE), (STATUS, 1, F_WRITE)]).is_err());
    // Data readable where the device must write, then status: the read
    // request sees only the status byte as writable, so it reads nothing.
    assert!(run(&[(HDR, 16, 0), (BUF, 512, 0), (STATUS, 1, F_WRITE)]).is_ok());
    let _ = std::fs::remove_file(&path);
}

#[test]
fn images_are_locked_against_a_second_writer() {
    let path = image("lock", 8);
    let first = open(&path, false);
    let again = BlockDevice::open(&BlockConfig {
        path: path.clone(),
        readonly: true,
    });
    assert!(matches!(again, Err(BlockOpenError::Locked { .. })));
    drop(first);
    let a = open(&path, true);
    let b = open(&path, true);
    assert!(matches!(
        BlockDevice::open(&BlockConfig {
            path: path.clone(),
            readonly: false
        }),
        Err(BlockOpenError::Locked { .. })
    ));
    drop((a, b));
    assert!(matches!(
        BlockDevice::open(&BlockConfig {
            path: PathBuf::from("/nonexistent/kite.img"),
            readonly: false
        }),
        Err(BlockOpenError::Open { .. })
    ));
    let _ = std::fs::remove_file(&path);
}
