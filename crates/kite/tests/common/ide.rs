//! Helpers for a whole-guest IDE test (crates/kite/tests/ide_guests.rs,
//! once the CLI has `--disk FILE,if=ide` and `--cdrom FILE`): a raw disk
//! image with a marker in sector 0, an ISO 9660 image made with xorriso,
//! the guest script that reads and writes the disk and mounts the CD, and
//! the checks on its output and on the image afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::temp_path;

/// What sector 0 of the test disk starts with.
pub const DISK_MARKER: &str = "KITE-IDE-SECTOR0";
/// What the guest writes to sector 5.
pub const GUEST_MARKER: &str = "WRITTEN-BY-GUEST";
/// The text of hello.txt on the test ISO.
pub const ISO_TEXT: &str = "hello from the iso";

/// A 64 MiB sparse raw disk whose sector 0 starts with `DISK_MARKER`.
pub fn ide_disk(name: &str) -> PathBuf {
    use std::os::unix::fs::FileExt;
    let p = temp_path(name);
    let f = std::fs::File::create(&p).expect("create the disk image");
    f.set_len(64 << 20).expect("size the disk image");
    f.write_all_at(DISK_MARKER.as_bytes(), 0)
        .expect("write the marker");
    p
}

/// An ISO 9660 image holding hello.txt (needs xorriso: `apt-get install -y xorriso`).
pub fn ide_iso(name: &str) -> PathBuf {
    let dir = temp_path(&format!("{name}-dir"));
    std::fs::create_dir_all(&dir).expect("make the ISO's directory");
    std::fs::write(dir.join("hello.txt"), format!("{ISO_TEXT}\n")).expect("write hello.txt");
    let iso = temp_path(name);
    let out = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-V", "KITETEST", "-o"])
        .arg(&iso)
        .arg(&dir)
        .output()
        .expect("xorriso is needed to build the test ISO (apt-get install -y xorriso)");
    assert!(
        out.status.success(),
        "xorriso failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    iso
}

/// The guest's commands (for kite_cmd="..."): show the devices, read the
/// disk's marker, write one to sector 5 and sync, mount the CD and cat its
/// file, read the whole CD, print the transfer mode.
pub fn ide_guest_script() -> String {
    format!(
        "ls /dev/sda /dev/sr0; head -c 16 /dev/sda; echo; \
         echo {GUEST_MARKER} | dd of=/dev/sda bs=512 seek=5 conv=sync,fsync 2>/dev/null; \
         mkdir -p /mnt/cd; mount -t iso9660 -o ro /dev/sr0 /mnt/cd && cat /mnt/cd/hello.txt; \
         dd if=/dev/sr0 of=/dev/null bs=64k 2>&1 | tail -1; \
         cat /sys/class/ata_device/dev1.0/xfer_mode"
    )
}

/// kite's arguments for the boot: the disk on the primary master, the CD
/// as the lead's `--cdrom` places it.
pub fn ide_guest_args(guest: &Path, disk: &Path, iso: &Path) -> Vec<String> {
    vec![
        "run".into(),
        "--engine".into(),
        "emu".into(),
        "--memory".into(),
        "256M".into(),
        "--kernel".into(),
        guest.join("vmlinuz").display().to_string(),
        "--initrd".into(),
        guest.join("initrd.gz").display().to_string(),
        "--disk".into(),
        format!("{},if=ide", disk.display()),
        "--cdrom".into(),
        iso.display().to_string(),
        "--cmdline".into(),
        format!(
            "console=ttyS0 panic=-1 quiet kite_cmd=\"{}\"",
            ide_guest_script()
        ),
    ]
}

/// Check the guest's console output and the disk image after the run.
pub fn check_ide_run(stdout: &str, disk: &Path) {
    for want in [
        "/dev/sda",
        "/dev/sr0",
        DISK_MARKER,
        ISO_TEXT,
        "records out",
        "XFER_MW_DMA_2",
        "kite-guest: done, status 0",
    ] {
        assert!(
            stdout.contains(want),
            "no {want:?} in the guest's output:\n{stdout}"
        );
    }
    let image = std::fs::read(disk).expect("read the disk image back");
    assert_eq!(
        &image[5 * 512..5 * 512 + GUEST_MARKER.len()],
        GUEST_MARKER.as_bytes(),
        "the guest's write is not in sector 5 of the image"
    );
}
