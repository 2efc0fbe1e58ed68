//! The PC boots through its firmware, with no --kernel: SeaBIOS (Debian's
//! seabios package) runs on either engine, finds the disks Kite gives it,
//! loads their boot code and boots what they hold — a boot sector of the
//! test's own, and Debian's stock kernels through SYSLINUX on a FAT disk —
//! or says "No bootable device" and Kite exits with status 4.

mod common;

use std::time::Duration;

use common::{
    kite, kite_with_timeout, kvm_available, pc_image, temp_file, temp_path, KERNEL_TROUBLE,
};
use kite_testkernels as tk;

const BIOS: &str = "/usr/share/seabios/bios.bin";

fn have_bios() {
    assert!(
        std::path::Path::new(BIOS).is_file(),
        "SeaBIOS is missing: apt-get install seabios (the README's set-up installs it)"
    );
}

#[test]
fn no_bootable_device_ends_with_status_4_on_both_engines() {
    have_bios();
    let mut engines = vec!["emu"];
    if kvm_available("no bootable device on kvm") {
        engines.push("kvm");
    }
    for engine in engines {
        let log = temp_path(&format!("bios-{engine}.log"));
        let r = kite_with_timeout(
            &[
                "run",
                "--engine",
                engine,
                "--bios-log",
                &log.display().to_string(),
            ],
            b"",
            Duration::from_secs(120),
        );
        assert_eq!(r.status, Some(4), "{engine}: stderr {}", r.stderr);
        assert!(
            r.stdout.contains("SeaBIOS (version"),
            "{engine}: {}",
            r.stdout
        );
        assert!(
            r.stdout.contains("No bootable device"),
            "{engine}: {}",
            r.stdout
        );
        assert!(r.stderr.contains("no bootable device"), "{}", r.stderr);
        let fw = std::fs::read_to_string(&log).expect("firmware log");
        assert!(fw.contains("Running on QEMU (i440fx)"), "{fw}");
        assert!(fw.contains("QEMU fw_cfg DMA interface supported"), "{fw}");
    }
}

#[test]
fn firmware_runs_a_disks_boot_sector_on_both_engines() {
    have_bios();
    let disk = temp_file("bootsector.img", &tk::boot_disk(0x21));
    let mut engines = vec!["emu"];
    if kvm_available("boot sector on kvm") {
        engines.push("kvm");
    }
    for engine in engines {
        let r = kite_with_timeout(
            &["run", "--engine", engine, "--disk", &disk],
            b"",
            Duration::from_secs(120),
        );
        assert_eq!(
            r.status,
            Some(tk::debug_exit_status(0x21)),
            "{engine}: stdout {} stderr {}",
            r.stdout,
            r.stderr
        );
        assert!(
            r.stdout.contains(tk::BOOT_DISK_GREETING),
            "{engine}: {}",
            r.stdout
        );
    }
}

/// How the boot image reaches the guest.
#[derive(Clone, Copy)]
enum Media {
    /// A SYSLINUX disk on virtio-blk (/dev/vda).
    Virtio,
    /// A SYSLINUX disk as an ATA disk on IDE (/dev/sda).
    Ide,
    /// An ISOLINUX CD on the IDE secondary master (/dev/sr0).
    Cdrom,
}

fn firmware_linux_boot(flavour: &str, machine: &str, cpus: &str, media: Media) {
    have_bios();
    let (kind, dev, mount) = match media {
        Media::Virtio => ("disk", "vda", "vfat"),
        Media::Ide => ("disk", "sda", "vfat"),
        Media::Cdrom => ("iso", "sr0", "iso9660"),
    };
    // The guest reads its boot medium back: the kernel it booted is on it.
    let part = if matches!(media, Media::Cdrom) {
        dev.to_string()
    } else {
        format!("{dev}1")
    };
    let cmd = format!(
        "uname -m; grep -c ^processor /proc/cpuinfo; cat /sys/block/{dev}/size; \
         mount -t {mount} -o ro /dev/{part} /mnt && ls /mnt; \
         dmesg | grep -m1 -o 'ACPI: RSDP 0x[0-9A-F]*'; echo fw-guest-ok"
    );
    let image = pc_image(
        kind,
        flavour,
        &format!("console=ttyS0 panic=-1 kite_cmd=\"{cmd}\""),
    );
    let image_s = image.display().to_string();
    let sectors = std::fs::metadata(&image).expect("image").len() / 512;
    let mut args = vec!["run", "--engine", "emu", "--memory", "256M", "--cpus", cpus];
    let disk_ide = format!("{image_s},if=ide");
    match media {
        Media::Virtio => args.extend(["--disk", image_s.as_str()]),
        Media::Ide => args.extend(["--disk", disk_ide.as_str()]),
        Media::Cdrom => args.extend(["--cdrom", image_s.as_str(), "--boot", "d"]),
    }
    let r = kite_with_timeout(&args, b"", Duration::from_secs(300));
    let out = &r.stdout;
    assert_eq!(r.status, Some(0), "{flavour}: stderr {}\n{out}", r.stderr);
    let (booting, loader) = match media {
        Media::Cdrom => ("Booting from DVD/CD", "ISOLINUX"),
        _ => ("Booting from Hard Disk", "SYSLINUX"),
    };
    for want in [
        "SeaBIOS (version",
        booting,
        loader,
        machine,
        "vmlinuz",
        "fw-guest-ok",
        "ACPI: RSDP 0x",
        "reboot: Power down",
    ] {
        assert!(out.contains(want), "{flavour}: no {want:?} in\n{out}");
    }
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert!(
        lines.contains(&cpus),
        "{flavour}: the guest does not see {cpus} CPUs\n{out}"
    );
    // /sys/block/*/size counts 512-byte sectors for CDs too.
    assert!(
        lines.contains(&sectors.to_string().as_str()),
        "{flavour}: /dev/{dev} is not the {sectors}-sector image\n{out}"
    );
    for bad in KERNEL_TROUBLE {
        assert!(!out.contains(bad), "{flavour}: {bad:?} in\n{out}");
    }
}

#[test]
fn debian_x86_64_boots_from_a_syslinux_disk_on_virtio_through_seabios_with_two_cpus() {
    firmware_linux_boot("amd64", "x86_64", "2", Media::Virtio);
}

#[test]
fn debian_i686_boots_from_a_syslinux_disk_on_ide_through_seabios() {
    firmware_linux_boot("686", "i686", "1", Media::Ide);
}

#[test]
fn debian_i686_pae_boots_from_an_isolinux_cd_through_seabios() {
    firmware_linux_boot("686-pae", "i686", "1", Media::Cdrom);
}

#[test]
fn bad_firmware_and_boot_options_get_one_line_and_status_2() {
    have_bios();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--bios".into(), temp_file("small.rom", &[0u8; 1000])],
            "multiple of 64 KiB",
        ),
        (
            vec!["--bios".into(), "/nonexistent/bios.bin".into()],
            "/nonexistent/bios.bin",
        ),
        (vec!["--boot".into(), "x".into()], "not a device"),
        (vec!["--boot".into(), "cc".into()], "twice"),
        (vec!["--boot".into(), "c,menu=maybe".into()], "maybe"),
        (
            vec!["--initrd".into(), temp_file("i.img", &[1; 64])],
            "need --kernel",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["run".to_string(), "--engine".into(), "emu".into()];
        all.extend(args.iter().cloned());
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let r = kite(&refs, b"");
        assert_eq!(r.status, Some(2), "{args:?}: {}", r.stderr);
        let line = r.single_stderr_line();
        assert!(line.contains(want), "{args:?}: {line}");
    }
}

#[test]
fn the_firmware_runs_an_option_rom() {
    have_bios();
    let rom = temp_file("kite-test.rom", &tk::option_rom());
    let r = kite_with_timeout(
        &["run", "--engine", "emu", "--option-rom", &rom],
        b"",
        Duration::from_secs(60),
    );
    assert_eq!(r.status, Some(4), "{}", r.stderr);
    assert!(r.stdout.contains(tk::OPTION_ROM_GREETING), "{}", r.stdout);
    // Not an option ROM: one line, status 2.
    let junk = temp_file("junk.rom", &[0u8; 512]);
    let r = kite(&["run", "--engine", "emu", "--option-rom", &junk], b"");
    assert_eq!(r.status, Some(2));
    assert!(r.single_stderr_line().contains("0x55 0xAA"), "{}", r.stderr);
}
